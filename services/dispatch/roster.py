"""Duty roster of a grid: who answers today (轮流值班, 定点定人定责).

Staff are demo data derived from the grid code alone, so every dispatch worker agrees on who
serves a grid without a shared store; a real roster would replace `staff_of` and keep `on_duty`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from services.dispatch.areas import Grid

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
ROTATION_START = date(2023, 1, 1)  # local day 0 of the rotation
ROLES = ("grid_worker", "village_cadre", "group_leader")  # 网格员, 村干部, 村民组长

_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"
_GIVEN_NAME_CHARS = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉德"
_MOBILE_PREFIXES = ("133", "138", "139", "150", "151", "155", "158", "177", "180", "187", "189", "199")


@dataclass(frozen=True)
class Worker:
    id: str
    name: str
    role: str  # one of ROLES
    grid_code: str
    phone: str  # masked (e.g. 138****0427): demo data must not look dialable


def staff_of(grid: Grid) -> list[Worker]:
    """The three people answering for a grid, one per role, in rotation order."""
    return [_demo_worker(grid, slot, role) for slot, role in enumerate(ROLES, start=1)]


def on_duty(grid: Grid, at: datetime) -> Worker:
    """The worker on duty at `at`; the duty changes at local midnight in China, not at UTC midnight."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"on_duty needs a timezone-aware datetime (UTC), got naive {at.isoformat()}")
    staff = staff_of(grid)
    local_day = at.astimezone(CHINA_STANDARD_TIME).date()
    return staff[(local_day - ROTATION_START).days % len(staff)]


def _demo_worker(grid: Grid, slot: int, role: str) -> Worker:
    worker_id = f"W-{grid.code}-{slot}"
    # sha256 of the id: stable across processes and Python versions, unlike hash() or random.
    digest = hashlib.sha256(worker_id.encode("utf-8")).digest()
    surname = _SURNAMES[digest[0] % len(_SURNAMES)]
    given_length = 1 + digest[3] % 2  # given names have one or two characters
    given = "".join(_GIVEN_NAME_CHARS[b % len(_GIVEN_NAME_CHARS)] for b in digest[1:1 + given_length])
    prefix = _MOBILE_PREFIXES[digest[4] % len(_MOBILE_PREFIXES)]
    tail = int.from_bytes(digest[5:7], "big") % 10_000
    return Worker(worker_id, surname + given, role, grid.code, f"{prefix}****{tail:04d}")
