"""Who may do what with a case: pure rules over the caller's token (services/common/staff.py).

- work it (accept, start, resolve, return, file with a department): the person it is assigned to,
  signed in with a working role (grid worker, village duty cadre, department staff); a case at a
  desk (a town's dispatch desk, a county's centre: roster.py) is worked by a dispatcher whose area
  holds the desk, and a case at a department's desk by that department's staff in the county;
- place a request known only by its map point, reassign, transfer to a department, cancel: a
  dispatcher whose area holds it (the county's dispatch centre; a town dispatcher for its town);
- decide a filed proxy item: staff of that department whose area holds it;
- make a call task (callback, 回访): its assignee, by the same rule as working a case;
- read it, list a queue, read the ledger: staff of the area it lies in (a grid worker's area is
  their grid; department staff see their own department's cases), its assignee and supervisor.
"""
from __future__ import annotations

from services.common.staff import DEPARTMENT_STAFF, DISPATCHERS, STAFF, WORKERS, Forbidden, Principal

from .roster import desk_of


def location(case) -> str:
    """The most precise place a case is known by: its grid, else its village, else its county."""
    return case.grid_code or case.village_code or case.county_code


def _may_act_for(who: Principal, assignee_id: str | None, what: str, ticket_id: str) -> None:
    desk = desk_of(assignee_id)
    if desk is None:
        who.require(WORKERS, what=what)
        if who.subject != assignee_id:
            raise Forbidden(f"{what}: ticket {ticket_id} is not assigned to you")
    elif desk.kind == "dept":
        who.require({DEPARTMENT_STAFF}, desk.area_code, what)
        if who.department != desk.department:
            raise Forbidden(f"{what}: ticket {ticket_id} is not with your department")
    else:
        who.require(DISPATCHERS, desk.area_code, what)


def may_work(who: Principal, case, what: str) -> None:
    _may_act_for(who, case.assignee_id, what, case.id)


def may_call(who: Principal, task) -> None:
    _may_act_for(who, task.assignee_id, "record this call", task.ticket_id)


def may_place(who: Principal, case) -> None:
    who.require(DISPATCHERS, location(case), "place a request in a village")


def may_dispatch(who: Principal, case, what: str) -> None:
    """Reassign, transfer or cancel: a dispatcher of the case's area."""
    who.require(DISPATCHERS, location(case), what)


def may_decide(who: Principal, case) -> None:
    who.require({DEPARTMENT_STAFF}, case.county_code, "record a department's decision")
    if who.department != case.department:
        raise Forbidden(f"record a department's decision: ticket {case.id} is not your department's")


def may_read(who: Principal, case) -> None:
    if who.subject in (case.assignee_id, case.supervisor_id) and who.role in WORKERS:
        return
    desk = desk_of(case.assignee_id)
    if who.role == DEPARTMENT_STAFF and desk is not None and desk.kind == "dept":
        return _may_act_for(who, case.assignee_id, f"read ticket {case.id}", case.id)
    who.require(STAFF, location(case), f"read ticket {case.id}")
    if who.role == DEPARTMENT_STAFF and who.department != case.department:
        raise Forbidden(f"read ticket {case.id}: not a case of your department")


def may_list(who: Principal, area_code: str) -> None:
    who.require(STAFF, area_code, "list this area")
