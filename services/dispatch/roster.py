"""Who answers for a place today (轮流值班, 定点定人定责): the grid's worker on duty, the village's duty
cadre (两委值班) and its proxy clerk (代办员), and the desks above them.

Staff are demo data derived from the area code alone, so every dispatch worker agrees on who
serves an area without a shared store; a real roster would replace `staff_of` and `cadres_of`
and keep `on_duty` and `village_duty`.

A desk is not a person: a town's dispatch desk (`town-<town>`), a county's dispatch centre
(`centre-<county>`) and a department's desk in a county (`dept-<department>-<county>`) are worked
by any dispatcher (or that department's staff) whose area holds them (access.py).
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
    area_code: str  # the grid (grid staff) or village (cadres) they answer for
    phone: str  # masked (e.g. 138****0427): demo data must not look dialable


def staff_of(grid: Grid) -> list[Worker]:
    """The three people answering for a grid, one per role, in rotation order."""
    return [_demo_worker(grid, slot, role) for slot, role in enumerate(ROLES, start=1)]


def on_duty(grid: Grid, at: datetime) -> Worker:
    """The worker on duty at `at`; the duty changes at local midnight in China, not at UTC midnight."""
    staff = staff_of(grid)
    return staff[_local_day(at) % len(staff)]


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


def cadres_of(village_code: str) -> list[Worker]:
    """The village's two duty cadres of the 两委, in rotation order."""
    return [_demo_cadre(f"V-{village_code}-{n}", village_code) for n in (1, 2)]


def village_duty(village_code: str, at: datetime) -> Worker:
    """The village's duty cadre at `at` (also its 回访员): they alternate at local midnight."""
    cadres = cadres_of(village_code)
    return cadres[_local_day(at) % len(cadres)]


def proxy_clerk(village_code: str) -> Worker:
    """The village service centre's proxy clerk (代办员): files residents' applications with departments."""
    return _demo_cadre(f"P-{village_code}", village_code)


@dataclass(frozen=True)
class Desk:
    kind: str  # town, centre, dept
    area_code: str  # the town or county it serves
    department: str | None = None


def desk_id(kind: str, area_code: str, department: str | None = None) -> str:
    return f"dept-{department}-{area_code}" if kind == "dept" else f"{kind}-{area_code}"


def desk_of(assignee_id: str | None) -> Desk | None:
    """The desk an assignee id names, or None for a person."""
    kind, _, rest = (assignee_id or "").partition("-")
    if kind in ("town", "centre") and rest.isdigit():
        return Desk(kind, rest)
    if kind == "dept" and "-" in rest:
        department, _, county = rest.rpartition("-")
        return Desk(kind, county, department)
    return None


def _local_day(at: datetime) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"the roster needs a timezone-aware datetime (UTC), got naive {at.isoformat()}")
    return (at.astimezone(CHINA_STANDARD_TIME).date() - ROTATION_START).days


def _demo_cadre(worker_id: str, village_code: str) -> Worker:
    digest = hashlib.sha256(worker_id.encode("utf-8")).digest()
    name = _SURNAMES[digest[0] % len(_SURNAMES)] + _GIVEN_NAME_CHARS[digest[1] % len(_GIVEN_NAME_CHARS)] \
        + _GIVEN_NAME_CHARS[digest[2] % len(_GIVEN_NAME_CHARS)]
    prefix = _MOBILE_PREFIXES[digest[4] % len(_MOBILE_PREFIXES)]
    tail = int.from_bytes(digest[5:7], "big") % 10_000
    return Worker(worker_id, name, "village_cadre", village_code, f"{prefix}****{tail:04d}")
