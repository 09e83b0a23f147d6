"""Volunteers, neighbours and teams as people, pure: availability windows as stored and as matching reads them,
and who may keep the register.

- A volunteer (of a team) or a neighbour (亲帮亲/邻帮邻: registers the help they offer, in their own words and as
  skills matching can use) is registered, edited and deactivated by staff keeping the village (its duty cadres,
  dispatchers and admins above), never deleted; a volunteer edits their own phone, availability and offer.
- Availability: windows of days and local times (`{"days": [1, 2, 3, 4, 5], "from": "18:00", "to": "21:00"}`);
  none: any time. Matching passes over anyone not available when the offer is made (matching.available).
- A team: a name, a village, a leader who is one of its members; members join by naming the team.
"""
from __future__ import annotations

import json

from services.common.staff import ADMIN, COUNTY_DISPATCHER, TOWN_DISPATCHER, VILLAGE_CADRE, VOLUNTEER, Principal

from .matching import Volunteer, Window

KEEPS_PEOPLE = frozenset({VILLAGE_CADRE, TOWN_DISPATCHER, COUNTY_DISPATCHER, ADMIN})
SELF_EDITABLE = frozenset({"phone", "availability", "offers"})
KINDS = ("volunteer", "neighbour")


def may_keep(who: Principal, village_code: str) -> None:
    who.require(KEEPS_PEOPLE, village_code, "keep the register of volunteers")


def may_edit(who: Principal, volunteer_id: str, village_code: str, fields) -> None:
    """Staff of the village edit anything; a volunteer their own phone, availability and offer."""
    if who.role == VOLUNTEER and who.subject == volunteer_id and set(fields) <= SELF_EDITABLE:
        return
    may_keep(who, village_code)


def minutes(text: str) -> int:
    hours, _, mins = text.partition(":")
    return int(hours) * 60 + int(mins)


def windows_of(stored: str | None) -> tuple[Window, ...]:
    """The windows a row stores (JSON, as `stored_windows` wrote them)."""
    return tuple(Window(frozenset(w["days"]), minutes(w["from"]), minutes(w["to"])) for w in json.loads(stored or "[]"))


def stored_windows(windows: list[dict]) -> str:
    return json.dumps([{"days": sorted(set(w["days"])), "from": w["from"], "to": w["to"]} for w in windows])


def to_volunteer(row) -> Volunteer:
    """What matching knows of a row of `volunteers`."""
    return Volunteer(id=row.id, name=row.name, team_id=row.team_id, village_code=row.village_code,
                     town_code=row.town_code, skills=frozenset(row.skills.split(",")), max_load=row.max_load,
                     windows=windows_of(row.availability) if row.availability not in (None, "", "[]") else ())
