"""The household register, pure: Suzhou's villages, key groups, and what a need found on a visit sends to intake.

A need found is a submission to intake's front door (`intake.submissions`, routing key `submit.grid_visit`),
published by this service's outbox like any outside system's (services/intake/submissions.py): the need's
id is the message id, so a need sent twice makes one ticket (and the ticket names the need by it). intake
answers on RECEIPTS: the ticket made (or joined), or why none was. The household is the resident: its
phone is acknowledged, and a household of a key group is vulnerable (shorter deadlines in dispatch).
"""
from __future__ import annotations

import csv
import json
import re
from functools import lru_cache
from pathlib import Path

DIVISIONS = Path(__file__).with_name("data") / "suzhou_3413_nbs2023.csv"
KEY_GROUPS = {  # 重点人群: whose daily necessities are guaranteed, and who are visited on a plan
    "hardship": ("困难群众", "hardship family"),
    "disabled": ("残障人士", "disabled person"),
    "elderly_alone": ("孤寡老人/独居老人", "elderly living alone"),
    "left_behind_child": ("留守儿童", "left-behind child"),
}
CONTACT_BY = ("phone", "door", "sms")
GRID_CODE = re.compile(r"^(3413\d{8})-G\d{2,3}$")
SUBMISSIONS_EXCHANGE = "intake.submissions"
RECEIPTS = "outreach.receipts"  # where intake answers: the ticket a need made, or why it made none


@lru_cache(maxsize=1)
def villages() -> dict[str, str]:
    """Village code → name, from the bundled division table (SOURCE.md beside it)."""
    with DIVISIONS.open(encoding="utf-8", newline="") as f:
        return {row["code"]: row["name"] for row in csv.DictReader(f) if row["level"] == "village"}


def village_problem(code: str) -> str | None:
    return None if code in villages() else "not a Suzhou (3413…) village code of the NBS 2023 table"


def grid_problem(grid_code: str, village_code: str | None) -> str | None:
    match = GRID_CODE.match(grid_code or "")
    if not match:
        return "a grid code: <12-digit village code>-G<number>, e.g. 341323104214-G10"
    if village_code is not None and match.group(1) != village_code:
        return f"grid {grid_code} is not in village {village_code}"
    return None


def place_and_committee(name: str) -> tuple[str, str]:
    """A village's place name and its committee's, from its division name: 杨东村委会 → 杨东村, 杨东村村民委员会;
    城东社区居委会 → 城东社区, 城东社区居民委员会."""
    if name.endswith("村委会"):
        return name[:-2], f"{name[:-2]}村民委员会"
    if name.endswith("居委会"):
        return name[:-3], f"{name[:-3]}居民委员会"
    return name, name


def talk_submission(need, talk, resident: dict | None, village_name: str) -> dict:
    """The body intake reads for what was raised at a night talk (channel night_talk): a need of the villager
    named (`resident`: name, phone, email), or a group's opinion (`resident` None), whose acknowledgement and
    回访 go to the village committee, at the contact the talk's record gives, not to any one villager."""
    place, committee = place_and_committee(village_name)
    contact = resident or {"name": committee, "phone": talk.village_phone, "email": talk.village_email}
    return {"channel": "night_talk", "category": need.category, "village_code": talk.village_code,
            "address": f"{place}（乡村夜话 {talk.held_on.isoformat()}）", "description": need.description,
            "submitted_at": need.found_at.isoformat(),
            "resident": {"name": contact.get("name"), "phone": contact.get("phone"), "email": contact.get("email"),
                         "vulnerable": False, "locale": "zh-CN"},
            "attributes": json.loads(need.attributes or "{}")}


def submission(need, household, channel: str = "grid_visit") -> dict:
    """The body intake reads (services/intake/submission.schema.json) for a need found at `household`. The
    ticket it makes remembers this service's broker login and the need's id (intake's publisher and
    message id): that is the link from ticket to need, visit and household."""
    return {"channel": channel, "category": need.category, "village_code": household.village_code,
            "address": household.address, "description": need.description,
            "submitted_at": need.found_at.isoformat(),
            "resident": {"phone": household.phone, "email": household.email, "vulnerable": bool(household.key_groups),
                         "locale": "zh-CN"},
            "attributes": json.loads(need.attributes or "{}")}
