"""Pure rules of a ticket's life in dispatch: which transitions are allowed, and the events each causes.

Functions take a case (any object with the attributes of `models.Case`), change it,
and return the events they caused. No nameko, no SQLAlchemy here.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from services.common.envelope import Event

from .routing import Assignment

ALLOWED = {
    "received": {"routed", "cancelled"},
    "routed": {"offered", "cancelled"},
    "offered": {"accepted", "routed", "escalated", "cancelled"},
    "accepted": {"in_progress", "resolved", "returned", "escalated", "cancelled"},
    "in_progress": {"resolved", "returned", "escalated", "cancelled"},
    "returned": {"routed"},
    "escalated": {"routed"},
    "resolved": {"followed_up"},
    "followed_up": {"closed", "reopened"},
    "reopened": {"routed"},
    "closed": set(),
    "cancelled": set(),
}
OPEN_STATES = frozenset(s for s in ALLOWED if s not in ("closed", "cancelled"))


class InvalidTransition(Exception):
    def __init__(self, ticket_id: str, state: str, target: str):
        super().__init__(f"ticket {ticket_id} is {state}; it cannot become {target}")
        self.state, self.target = state, target


class AlreadyPlaced(Exception):
    pass


def _move(case, target: str, now: datetime) -> None:
    if target not in ALLOWED[case.state]:
        raise InvalidTransition(case.id, case.state, target)
    case.state = target
    case.version += 1
    case.updated_at = now


def _event(case, name: str, **data) -> Event:
    return Event(name, case.id, {"state": case.state, "ticket_version": case.version,
                                 "assignee_id": case.assignee_id, "assignee_name": case.assignee_name,
                                 **data}, correlation_id=case.id)


def route(case, assignment: Assignment, now: datetime) -> list[Event]:
    """Route to the grid and offer to the worker on duty; ask for a volunteer where the category needs one."""
    _move(case, "routed", now)
    case.grid_code, case.work_key = assignment.grid_code, assignment.work_key
    case.assignee_id, case.assignee_name = assignment.assignee_id, assignment.assignee_name
    routed = _event(case, "ticket_routed", grid_code=case.grid_code, area_path=list(assignment.area_path))
    _move(case, "offered", now)
    case.accept_due_at = now + timedelta(minutes=case.accept_minutes)
    events = [routed, _event(case, "ticket_offered", grid_code=case.grid_code, work_key=case.work_key,
                             accept_due_at=case.accept_due_at.isoformat(), priority=case.priority,
                             category_code=case.category_code)]
    if case.volunteer_skill and case.volunteer_id is None and case.village_code:  # nearby: needs the village
        events.append(Event("volunteer_requested", case.id, {
            "skill": case.volunteer_skill, "village_code": case.village_code,
            "town_code": case.village_code[:9], "priority": case.priority,
            "exclude": []}, correlation_id=case.id))
    return events


def place(case, village_code: str, assignment: Assignment, now: datetime) -> list[Event]:
    """A county dispatch centre puts an unplaced request in its village: routed on to that grid."""
    if case.village_code is not None:
        raise AlreadyPlaced(f"ticket {case.id} is already in village {case.village_code}")
    case.village_code = village_code
    return route(case, assignment, now)


def accept(case, now: datetime) -> list[Event]:
    """签收: the assignee takes the ticket (who may: access.may_work)."""
    _move(case, "accepted", now)
    case.resolve_due_at = now + timedelta(hours=case.resolve_hours)
    return [_event(case, "ticket_accepted", resolve_due_at=case.resolve_due_at.isoformat())]


def start(case, now: datetime) -> list[Event]:
    """The worker is on it (上门/办理中): residents asking see that someone is there."""
    _move(case, "in_progress", now)
    return [_event(case, "ticket_in_progress")]


def resolve(case, note: str, now: datetime) -> list[Event]:
    _move(case, "resolved", now)
    case.resolved_at = now
    return [_event(case, "ticket_resolved", note=note, resolved_at=now.isoformat(),
                   follow_up_hours=case.follow_up_hours)]


def record_follow_up(case, satisfied: bool, comment: str, now: datetime) -> list[Event]:
    """The resident's answer to the follow-up (回访): satisfied closes, unsatisfied reopens (重办)."""
    _move(case, "followed_up", now)
    if satisfied:
        _move(case, "closed", now)
        return [_event(case, "ticket_closed", satisfied=True, comment=comment)]
    _move(case, "reopened", now)
    case.reopen_count += 1
    case.volunteer_id = None
    return [_event(case, "ticket_reopened", comment=comment, reopen_count=case.reopen_count)]


def record_volunteer(case, volunteer_id: str) -> None:
    case.volunteer_id = volunteer_id
