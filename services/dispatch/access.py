"""Who may do what with a case: pure rules over the caller's token (services/common/staff.py).

- work it (accept, start, resolve): only the person it is assigned to, signed in with a
  working role (grid worker, village duty cadre, department staff);
- place a request known only by its map point in a village: a dispatcher whose area holds it
  (the county's dispatch centre; a town dispatcher does not see county-level requests);
- read it, list a queue, read the ledger: staff of the area it lies in (a grid worker's area is
  their grid; department staff see their own department's cases), and its assignee.
"""
from __future__ import annotations

from services.common.staff import (DEPARTMENT_STAFF, DISPATCHERS, STAFF, WORKERS, Forbidden, Principal)


def location(case) -> str:
    """The most precise place a case is known by: its grid, else its village, else its county."""
    return case.grid_code or case.village_code or case.county_code


def may_work(who: Principal, case, what: str) -> None:
    who.require(WORKERS, what=what)
    if who.subject != case.assignee_id:
        raise Forbidden(f"{what}: ticket {case.id} is not assigned to you")


def may_place(who: Principal, case) -> None:
    who.require(DISPATCHERS, location(case), "place a request in a village")


def may_read(who: Principal, case) -> None:
    if who.subject == case.assignee_id and who.role in WORKERS:
        return
    who.require(STAFF, location(case), f"read ticket {case.id}")
    if who.role == DEPARTMENT_STAFF and who.department != case.department:
        raise Forbidden(f"read ticket {case.id}: not a case of your department")


def may_list(who: Principal, area_code: str) -> None:
    who.require(STAFF, area_code, "list this area")
