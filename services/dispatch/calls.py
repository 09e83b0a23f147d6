"""Call tasks, pure rules: the callback of a hotline request (10 秒回拨), the 回访 call, and the call to a
resident no message reached.

- A hotline request gets, as it is routed, a `callback` task for whoever it was offered to, due
  within `callback_minutes`: they ring the resident back, asking what exactly is needed. Outcome:
  reached, not_reached, need_confirmed.
- A follow-up the resident never answered (notify reminded them, then gave up) becomes a
  `follow_up` task for the village's duty cadre as 回访员. Outcome: satisfied (closes),
  unsatisfied (reopens, 重办), unreachable (closes as not reached): no ticket stays resolved.
- A message to the ticket's resident that notify could deliver on none of its channels (each tried for
  hours, `notification_failed`) becomes a `reach` task: a person phones the resident and tells them
  what the message said (the ticket's history names it). For whoever has the case while it is being
  handled, else (resolved, closed, cancelled, unplaced) for the village's duty cadre, as the 回访 call;
  due within `callback_minutes`. One task per failed message (`about`: its message id); while one is
  open for the ticket, a further failure is only noted in the history. Outcome: reached, unreached.
- A task not done in time moves one level up the ladder (supervision.py).
"""
from __future__ import annotations

from datetime import datetime

from services.common.envelope import Event

from .lifecycle import OPEN_STATES
from .routing import Assignment
from .supervision import CALL_OUTCOMES, Policy, as_utc

HANDLED = OPEN_STATES - {"received", "resolved", "followed_up"}  # someone has the case in hand


class TaskDone(Exception):
    """The task was done already (HTTP 409)."""


class BadOutcome(ValueError):
    """Not an outcome of this kind of task (HTTP 400)."""


def new_task(task_cls, case, kind: str, who: Assignment, now: datetime, policy: Policy, about: str | None = None):
    return task_cls(ticket_id=case.id, kind=kind, assignee_id=who.assignee_id, assignee_name=who.assignee_name,
                    level=who.level, area_code=case.grid_code or case.village_code or case.county_code,
                    work_key=who.work_key, created_at=now, due_at=now + policy.call_within(kind), note="",
                    overdue=False, about=about)


def reach_holder(case) -> Assignment | None:
    """Who phones a resident no message reached: whoever has the case in hand; None when nobody has (resolved,
    closed, cancelled, or an unplaced map point): then the village's duty cadre (the county centre), as for 回访."""
    if case.state not in HANDLED or not case.assignee_id or not case.work_key or case.work_key.endswith(".unplaced"):
        return None
    return Assignment(case.grid_code, case.assignee_id, case.assignee_name or case.assignee_id, (), case.work_key,
                      case.level)


def assigned(task, now: datetime) -> Event:
    return Event("task_assigned", task.ticket_id, {
        "task_id": task.id, "kind": task.kind, "task_assignee_id": task.assignee_id,
        "task_assignee_name": task.assignee_name, "due_at": as_utc(task.due_at).isoformat(),
        "work_key": task.work_key}, correlation_id=task.ticket_id, occurred_at=now)


def complete(task, outcome: str, note: str, by: str, now: datetime) -> Event:
    if task.done_at is not None:
        raise TaskDone(f"task {task.id} was done at {as_utc(task.done_at).isoformat()} ({task.outcome})")
    if outcome not in CALL_OUTCOMES[task.kind]:
        raise BadOutcome(f"outcome: a {task.kind} task ends {', '.join(CALL_OUTCOMES[task.kind])}")
    task.done_at, task.done_by, task.outcome, task.note = now, by, outcome, note
    return Event("task_done", task.ticket_id, {"task_id": task.id, "kind": task.kind, "outcome": outcome,
                                               "note": note}, correlation_id=task.ticket_id, occurred_at=now)


def move_up(task, up: Assignment, now: datetime, policy: Policy) -> None:
    """Not done in time: the next level makes the call, within its own time."""
    task.overdue = True
    task.assignee_id, task.assignee_name, task.level, task.work_key = (up.assignee_id, up.assignee_name, up.level,
                                                                        up.work_key)
    task.due_at = now + policy.level_time(up.level)
