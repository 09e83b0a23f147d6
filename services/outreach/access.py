"""Who may do what with households, household heads and visits: pure, on a `Principal` (services/common/staff.py).

- The register of household heads (联户长) is the village's: its duty cadres, and dispatchers and admins of an
  area holding the village, register, edit and deactivate heads.
- A household is its grid's: the grid worker registers and edits it, and so may the village's cadres and the
  dispatchers and admins above. Reading one (personal data: names, phones, who is vulnerable) is for staff
  whose area holds its grid, and for its own head; every read is recorded (`household_reads`).
- A visit is recorded by whoever answers for it (visits.py) or anyone on a rung above it in its place:
  its head (only their own, at the first rung), the grid's worker, the village's cadres. Supervisors,
  dispatchers and admins read visits of their area and record none.
Refusals name no-one (staff.Forbidden).
"""
from __future__ import annotations

from services.common.staff import (ADMIN, COUNTY_DISPATCHER, GRID_WORKER, HOUSEHOLD_HEAD, STAFF, TOWN_DISPATCHER,
                                   VILLAGE_CADRE, Forbidden, Principal)

from .visits import HEAD

KEEPS_HEADS = frozenset({VILLAGE_CADRE, TOWN_DISPATCHER, COUNTY_DISPATCHER, ADMIN})
KEEPS_HOUSEHOLDS = KEEPS_HEADS | {GRID_WORKER}
RECORDS_VISITS = frozenset({HOUSEHOLD_HEAD, GRID_WORKER, VILLAGE_CADRE})


def may_keep_heads(who: Principal, village_code: str) -> None:
    who.require(KEEPS_HEADS, village_code, "keep the register of household heads")


def may_record_talk(who: Principal, village_code: str) -> None:
    """A night talk is the village's: its cadres record it (or dispatchers and admins above)."""
    who.require(KEEPS_HEADS, village_code, "record a night talk")


def may_keep_household(who: Principal, grid_code: str) -> None:
    who.require(KEEPS_HOUSEHOLDS, grid_code, "register or edit a household")


def may_read_household(who: Principal, household) -> None:
    if who.role == HOUSEHOLD_HEAD:
        if household.head_id != who.subject:
            raise Forbidden("a household head reads only the households they look after")
        return
    who.require(STAFF, household.grid_code, "read this household")


def may_record(who: Principal, visit) -> None:
    if who.role == HOUSEHOLD_HEAD:
        if visit.level != HEAD or visit.responsible_id != who.subject:
            raise Forbidden("a household head records only the visits they answer for")
        return
    who.require(RECORDS_VISITS, visit.grid_code, "record this visit")


def may_read_visits(who: Principal, area: str | None) -> str:
    """The area a list of visits may cover: a head's own visits need none (they are filtered by person)."""
    if who.role == HOUSEHOLD_HEAD:
        return ""
    area = area or who.area
    who.require(STAFF, area, "read the visits of this area")
    return area
