"""Demo households and household heads, generated reproducibly and sized like the city (SEED.md: 37,900
households of key groups; one village's 81 household heads each looking after about ten households).

Households are spread over the grids given (the caller's grid layout: dispatch's areas in the demo), each in
one or more key groups; in the villages that have household heads (HEAD_VILLAGES_SHARE of them) one head
looks after every HOUSEHOLDS_PER_HEAD households of a village. Only the households of `visited_town` get
visit plans (a daily call for someone living alone, a weekly door visit for the rest): the demo runs one
town's day of visits, not the city's. Seeding only adds: ids already registered are left as they are.
"""
from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, datetime, timezone

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from .models import Head, Household, Member, PlanRow
from .register import KEY_GROUPS

HOUSEHOLDS = 37_900
HOUSEHOLDS_PER_HEAD = 10
HEAD_VILLAGES_SHARE = 0.3
CHUNK = 5_000
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"
_GIVEN = "秀兰桂英玉珍凤霞建国志强德明春华淑芬国庆"
_MOBILE = ("133", "138", "139", "150", "151", "155", "158", "177", "180", "187", "189", "199")
SEEDED_BY = "seed"


def _name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))


def _phone(rng: random.Random) -> str:
    return rng.choice(_MOBILE) + f"{rng.randrange(10 ** 8):08d}"


def generate(grids: list[tuple[str, str, str]], count: int = HOUSEHOLDS, seed: int = 3413,
             visited_town: str | None = None, starts_on: date | None = None):
    """(heads, households, members, plans) as rows; `grids`: (grid code, village code, town code)."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    starts_on = starts_on or now.date()
    by_village: dict[str, list[dict]] = defaultdict(list)
    households, members, plans = [], [], []
    for n in range(1, count + 1):
        grid, village, town = grids[rng.randrange(len(grids))]
        groups = sorted(set(rng.choices(list(KEY_GROUPS), weights=(5, 3, 4, 2), k=rng.choice((1, 1, 1, 2)))))
        home = {"id": f"HH{n:08d}", "village_code": village, "grid_code": grid,
                "address": f"{rng.randint(1, 12)}组{rng.randint(1, 60)}号", "phone": _phone(rng),
                "email": f"household-{n:08d}@example.cn",  # the demo's mail server stands in for SMS
                "contact_by": rng.choice(("phone", "phone", "door", "sms")), "key_groups": ",".join(groups),
                "grid_worker_id": f"W-{grid}-1", "head_id": None, "active": True, "registered_at": now,
                "updated_at": now, "deactivated_at": None, "version": 1}
        households.append(home)
        by_village[village].append(home)
        born = rng.randint(1935, 1955) if "elderly_alone" in groups else rng.randint(1960, 2015)
        members.append({"household_id": home["id"], "name": _name(rng), "relation": "户主", "born": born,
                        "key_groups": home["key_groups"]})
        if visited_town and town == visited_town:
            daily = "elderly_alone" in groups
            plans.append({"household_id": home["id"], "kind": "phone" if daily else "door",
                          "every_days": 1 if daily else 7, "due_minutes": 600 if daily else 1080,
                          "starts_on": starts_on, "active": True, "created_at": now})
    heads = []
    for village in sorted(by_village):
        if rng.random() >= HEAD_VILLAGES_SHARE and not (visited_town and village.startswith(visited_town)):
            continue  # this village has no household heads (the visited town's all have)
        homes = by_village[village]
        for start in range(0, len(homes), HOUSEHOLDS_PER_HEAD):
            head = {"id": f"H{village}{start // HOUSEHOLDS_PER_HEAD:03d}", "name": _name(rng),
                    "phone": _phone(rng), "village_code": village, "party_member": rng.random() < 0.4,
                    "active": True, "registered_at": now, "registered_by": SEEDED_BY, "updated_at": now,
                    "deactivated_at": None, "deactivated_by": None}
            heads.append(head)
            for home in homes[start:start + HOUSEHOLDS_PER_HEAD]:
                home["head_id"] = head["id"]
    return heads, households, members, plans


def seed_households(engine, grids: list[tuple[str, str, str]], count: int = HOUSEHOLDS, seed: int = 3413,
                    visited_town: str | None = None) -> int:
    """Register the demo's heads, households, members and plans not registered yet; how many households."""
    heads, households, members, plans = generate(grids, count, seed, visited_town)
    with Session(engine) as s:
        known = set(s.scalars(select(Household.id)))
        known_heads = set(s.scalars(select(Head.id)))
    fresh = {h["id"] for h in households} - known
    with Session(engine) as s, s.begin():
        for table, rows in ((Head, [h for h in heads if h["id"] not in known_heads]),
                            (Household, [h for h in households if h["id"] in fresh]),
                            (Member, [m for m in members if m["household_id"] in fresh]),
                            (PlanRow, [p for p in plans if p["household_id"] in fresh])):
            for start in range(0, len(rows), CHUNK):
                s.execute(insert(table), rows[start:start + CHUNK])
    return len(fresh)
