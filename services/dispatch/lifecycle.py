"""Pure rules of a ticket's life in dispatch: which transitions are allowed, and the events each causes.

Functions take a case (any object with the attributes of `models.Case`), change it,
and return the events they caused. No nameko, no SQLAlchemy here. How long each step may
take, and what a missed deadline does, is supervision.py's; who may act is access.py's.
"""
from __future__ import annotations

from datetime import datetime

from services.common.envelope import Event

from .routing import LEVELS, TOP, Assignment
from .supervision import Policy, as_utc

ALLOWED = {
    "received": {"routed", "cancelled"},
    "routed": {"offered", "cancelled"},
    "offered": {"accepted", "routed", "escalated", "returned", "cancelled"},
    "accepted": {"in_progress", "resolved", "returned", "filed", "routed", "cancelled"},
    "in_progress": {"resolved", "returned", "filed", "routed", "cancelled"},
    "filed": {"in_progress", "cancelled"},  # with a department (代办): back when it has decided
    "returned": {"routed", "escalated", "cancelled"},  # 退单: waiting for a dispatcher
    "escalated": {"routed"},
    "resolved": {"followed_up"},
    "followed_up": {"closed", "reopened"},
    "reopened": {"routed", "escalated"},  # reopened too often: to the town
    "closed": set(),
    "cancelled": set(),
}
OPEN_STATES = frozenset(s for s in ALLOWED if s not in ("closed", "cancelled"))
WORKING = ("accepted", "in_progress")


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


def _event(case, name: str, now: datetime, **data) -> Event:
    return Event(name, case.id, {"state": case.state, "ticket_version": case.version,
                                 "assignee_id": case.assignee_id, "assignee_name": case.assignee_name,
                                 **data}, correlation_id=case.id, occurred_at=now)


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value else None


def route(case, assignment: Assignment, now: datetime, policy: Policy) -> list[Event]:
    """Offer the case to whoever the assignment names; ask for a volunteer where the category needs one."""
    _move(case, "routed", now)
    case.grid_code = assignment.grid_code or case.grid_code
    case.work_key, case.level = assignment.work_key, assignment.level
    case.assignee_id, case.assignee_name = assignment.assignee_id, assignment.assignee_name
    routed = _event(case, "ticket_routed", now, grid_code=assignment.grid_code,
                    area_path=list(assignment.area_path))
    _move(case, "offered", now)
    case.accept_due_at = now + policy.accept_within(case)
    events = [routed, _event(case, "ticket_offered", now, grid_code=assignment.grid_code, work_key=case.work_key,
                             accept_due_at=_iso(case.accept_due_at), priority=case.priority,
                             category_code=case.category_code)]
    if (case.volunteer_skill and case.volunteer_id is None and case.village_code and assignment.level == 0
            and case.handling == "grid"):  # nearby help: needs the village
        events.append(Event("volunteer_requested", case.id, {
            "skill": case.volunteer_skill, "village_code": case.village_code,
            "town_code": case.village_code[:9], "priority": case.priority,
            "exclude": []}, correlation_id=case.id, occurred_at=now))
    return events


def place(case, village_code: str, assignment: Assignment, now: datetime, policy: Policy) -> list[Event]:
    """A county dispatch centre puts an unplaced request in its village: routed on to that grid."""
    if case.village_code is not None:
        raise AlreadyPlaced(f"ticket {case.id} is already in village {case.village_code}")
    case.village_code = village_code
    return route(case, assignment, now, policy)


def accept(case, now: datetime, policy: Policy) -> list[Event]:
    """签收: the assignee takes the ticket (who may: access.may_work)."""
    _move(case, "accepted", now)
    if case.accepted_on_time is None:  # the ledger counts the first acceptance
        case.accepted_on_time = not case.late and now <= as_utc(case.accept_due_at)
    case.accepted_at = case.accepted_at or now
    case.late = False  # a new step: resolving
    case.resolve_due_at = now + policy.resolve_within(case)
    return [_event(case, "ticket_accepted", now, resolve_due_at=_iso(case.resolve_due_at))]


def start(case, now: datetime) -> list[Event]:
    """The worker is on it (上门/办理中): residents asking see that someone is there."""
    _move(case, "in_progress", now)
    return [_event(case, "ticket_in_progress", now)]


def resolve(case, note: str, now: datetime) -> list[Event]:
    _move(case, "resolved", now)
    if case.resolved_on_time is None:
        case.resolved_on_time = not case.late and now <= as_utc(case.resolve_due_at)
    case.resolved_at = now
    return [_event(case, "ticket_resolved", now, note=note, resolved_at=now.isoformat(),
                   follow_up_hours=case.follow_up_hours)]


def record_follow_up(case, satisfied: bool, comment: str, now: datetime, how: str = "resident") -> list[Event]:
    """The answer to the follow-up (回访), the resident's own or taken on the 回访 call:
    satisfied closes, unsatisfied reopens (重办) and the caller routes it again."""
    _move(case, "followed_up", now)
    case.satisfied = satisfied
    if satisfied:
        return _close(case, now, how, comment)
    _move(case, "reopened", now)
    case.reopen_count += 1
    case.volunteer_id = None
    case.late = False
    return [_event(case, "ticket_reopened", now, comment=comment, reopen_count=case.reopen_count)]


def close_unreached(case, note: str, now: datetime) -> list[Event]:
    """The 回访员 could not reach the resident either: closed, and counted as not answered."""
    _move(case, "followed_up", now)
    return _close(case, now, "unreached", note)


def _close(case, now: datetime, how: str, comment: str) -> list[Event]:
    _move(case, "closed", now)
    case.closed_at, case.closed_how = now, how
    return [_event(case, "ticket_closed", now, satisfied=case.satisfied if how != "unreached" else None,
                   comment=comment, how=how)]


def too_often_reopened(case, policy: Policy) -> bool:
    return case.reopen_count > policy.max_reopens


def return_ticket(case, reason: str, desk: Assignment, now: datetime, policy: Policy) -> list[Event]:
    """退单: the assignee gives it back with a reason; it waits at the desk above for a dispatcher to
    reassign it, within that level's time (a missed one climbs the ladder like an offer)."""
    _move(case, "returned", now)
    case.return_count += 1
    returned_by = case.assignee_id
    case.assignee_id, case.assignee_name = desk.assignee_id, desk.assignee_name
    case.work_key, case.level = desk.work_key, desk.level
    case.accept_due_at = now + policy.level_time(desk.level)
    return [_event(case, "ticket_returned", now, reason=reason, returned_by=returned_by, work_key=desk.work_key,
                   reassign_due_at=_iso(case.accept_due_at))]


def reassign(case, assignment: Assignment, reason: str, now: datetime, policy: Policy) -> list[Event]:
    """A dispatcher gives the case to another worker or grid (or, transfer, a department's desk)."""
    if case.state not in ("offered", "returned", *WORKING):
        raise InvalidTransition(case.id, case.state, "routed")
    case.reassign_count += 1
    return route(case, assignment, now, policy)


def transfer(case, department: str, assignment: Assignment, reason: str, now: datetime,
             policy: Policy) -> list[Event]:
    """转办: the case belongs to a department; its staff in the county take it from their own queue."""
    case.department, case.handling = department, "department"
    return reassign(case, assignment, reason, now, policy)


def file_with_department(case, note: str, now: datetime, policy: Policy, work_key: str) -> list[Event]:
    """The proxy clerk has filed the resident's application with the department (代办): it decides."""
    _move(case, "filed", now)
    case.filed_at = now
    case.decision_due_at = now + policy.decision_within()
    return [_event(case, "ticket_filed", now, department=case.department, note=note, work_key=work_key,
                   decision_due_at=_iso(case.decision_due_at))]


def decide(case, approved: bool, decision: str, now: datetime) -> list[Event]:
    """The department's decision, recorded by its staff: back to the clerk to tell the resident and resolve.
    The department's time does not count against the village's resolve deadline."""
    _move(case, "in_progress", now)
    case.approved, case.decision = approved, decision
    if case.resolve_due_at is not None and case.filed_at is not None:
        case.resolve_due_at = as_utc(case.resolve_due_at) + (now - as_utc(case.filed_at))
    return [_event(case, "ticket_decided", now, department=case.department, approved=approved, decision=decision,
                   resolve_due_at=_iso(case.resolve_due_at))]


def cancel(case, by: str, reason: str, now: datetime) -> list[Event]:
    """The resident withdrew, or a dispatcher cancelled with a reason: the ticket leaves the loop."""
    if case.state in ("resolved", "followed_up"):  # done: the follow-up decides what happens now
        raise InvalidTransition(case.id, case.state, "cancelled")
    _move(case, "cancelled", now)
    case.closed_at, case.closed_how = now, f"cancelled by {by}"
    return [_event(case, "ticket_cancelled", now, by=by, reason=reason)]


def due_soon(case, what: str, deadline: datetime, now: datetime) -> list[Event]:
    return [_event(case, "ticket_due_soon", now, what=what, due_at=_iso(deadline), level=case.level)]


def overdue(case, what: str, deadline: datetime, now: datetime) -> list[Event]:
    """A deadline passed: on the record for good, whatever happens next."""
    case.late = True
    case.overdue_count += 1
    return [_event(case, "ticket_overdue", now, what=what, due_at=_iso(deadline), level=case.level)]


def overdue_task(case, kind: str, deadline: datetime, now: datetime) -> Event:
    """A call task not made in time: on the record; the task moves up (calls.move_up)."""
    return _event(case, "ticket_overdue", now, what="task", due_at=_iso(deadline), level=case.level)


def escalate(case, what: str, up: Assignment, now: datetime, policy: Policy) -> list[Event]:
    """One level up the ladder (supervision.py says when): an offer is reassigned there; work under way
    gets that level as supervisor and a new deadline of that level's length."""
    case.escalation_count += 1
    if what in ("accept", "reopened"):
        _move(case, "escalated", now)
        escalated = _event(case, "ticket_escalated", now, what=what, mode="reassign", level=up.level,
                           level_name=_level_name(up.level), supervisor_id=case.supervisor_id,
                           supervisor_name=case.supervisor_name, due_at=None, work_key=up.work_key,
                           assignee_id=up.assignee_id, assignee_name=up.assignee_name)  # who is told: the new one
        events = route(case, up, now, policy)
        return [escalated, *events]
    case.supervisor_id, case.supervisor_name, case.level = up.assignee_id, up.assignee_name, up.level
    due = now + policy.level_time(up.level)
    setattr(case, "decision_due_at" if what == "decision" else "resolve_due_at", due)
    return [_event(case, "ticket_escalated", now, what=what, mode="supervise", level=up.level,
                   level_name=_level_name(up.level), supervisor_id=up.assignee_id,
                   supervisor_name=up.assignee_name, due_at=_iso(due), work_key=up.work_key)]


def at_top(case) -> bool:
    return case.level >= TOP


def _level_name(level: int) -> str:
    return LEVELS[min(level, TOP)]


def record_volunteer(case, volunteer_id: str) -> None:
    case.volunteer_id = volunteer_id
