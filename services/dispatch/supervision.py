"""Supervision (定责), pure rules: how long each step may take, which timers watch it, what a missed one does.

Deadlines
- To accept (签收) and to resolve (办结): the category's own (catalogue `deadlines`), halved for a
  vulnerable resident (elderly alone, disabled, hardship), never below a floor. Priority orders the
  queues; the catalogue already gives urgent categories short deadlines (goods delivery: 30 minutes).
- A department deciding a filed proxy item: `decision_hours`; the resolve clock stops meanwhile
  (the catalogue's resolve time excludes the department's own approval time).
- Each level of the escalation ladder has its own time to act (`ladder_minutes`).
- Call tasks: the callback of a hotline request and the call to a resident no message reached
  (`callback_minutes`), the 回访 call (`follow_up_call_hours`).
Every span is scaled by the deployment's SLA_SCALE (services/common/clock.py).

Timers: each deadline gets a `due_soon` warning at `due_soon_share` of its time and an `overdue`
timer at the deadline (models.Deadline). A timer is moot when what it watches has moved on: the
case's deadline for that step is no longer the one the timer was set for.

A missed deadline (`ticket_overdue`, which stays on the record) climbs the ladder
grid worker → village duty cadre (两委) → town dispatch desk → county dispatch centre:
- not accepted (an offer, or a returned ticket nobody re-assigned): **reassign**: the ticket is
  offered to the next level, which must accept within its own time;
- not resolved, or not decided by the department: **supervise**: the assignee keeps the work, the
  next level is named supervisor (督办) and a new deadline of that level's length runs;
- a call task not made: the task moves to the next level.
At the county centre there is no level above: the overdue is recorded and the centre keeps it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.common.clock import as_utc
from services.common.envelope import Event

from .routing import LEVELS, TOP

WATCHED = {  # what a deadline watches: the case states in which it runs, and the case's due-time field
    "accept": (("offered", "returned"), "accept_due_at"),
    "resolve": (("accepted", "in_progress"), "resolve_due_at"),
    "decision": (("filed",), "decision_due_at"),
}
CALL_OUTCOMES = {"callback": ("reached", "not_reached", "need_confirmed"),
                 "follow_up": ("satisfied", "unsatisfied", "unreachable"),
                 "reach": ("reached", "unreached")}


@dataclass(frozen=True)
class Policy:
    scale: float = 1.0
    due_soon_share: float = 0.8
    vulnerable_factor: float = 0.5
    min_accept_minutes: float = 5
    min_resolve_minutes: float = 30
    decision_hours: float = 72
    callback_minutes: float = 5
    follow_up_call_hours: float = 24
    max_reopens: int = 2
    ladder_minutes: dict = field(default_factory=lambda: {"village": 30, "town": 60, "county": 120})

    @classmethod
    def from_config(cls, config: dict, scale: float) -> "Policy":
        given = dict(config.get("SUPERVISION") or {})
        known = {k: v for k, v in given.items() if k in cls.__dataclass_fields__}
        if unknown := set(given) - set(known):
            raise ValueError(f"SUPERVISION: unknown settings {sorted(unknown)}")
        policy = cls(scale=scale, **known)
        if not 0 < policy.due_soon_share < 1:
            raise ValueError("SUPERVISION.due_soon_share: a share of the time, between 0 and 1")
        if set(policy.ladder_minutes) != set(LEVELS[1:]):
            raise ValueError(f"SUPERVISION.ladder_minutes: one entry for each of {LEVELS[1:]}")
        return policy

    def span(self, minutes: float) -> timedelta:
        return timedelta(minutes=minutes * self.scale)

    def accept_within(self, case) -> timedelta:
        if case.level > 0:
            return self.level_time(case.level)
        return self.span(max(self.min_accept_minutes, case.accept_minutes * self._factor(case)))

    def resolve_within(self, case) -> timedelta:
        minutes = case.resolve_minutes or case.resolve_hours * 60
        return self.span(max(self.min_resolve_minutes, minutes * self._factor(case)))

    def decision_within(self) -> timedelta:
        return self.span(self.decision_hours * 60)

    def level_time(self, level: int) -> timedelta:
        return self.span(self.ladder_minutes[LEVELS[min(level, TOP)]])

    def call_within(self, kind: str) -> timedelta:
        return self.span(self.callback_minutes if kind in ("callback", "reach") else self.follow_up_call_hours * 60)

    def _factor(self, case) -> float:
        return self.vulnerable_factor if case.vulnerable else 1.0


def timers_for(event: Event, case, policy: Policy, now: datetime) -> list[dict]:
    """The timers a new deadline in `event` starts: a warning and the deadline itself."""
    data = event.data
    if event.name == "ticket_offered":
        what, deadline = "accept", data["accept_due_at"]
    elif event.name == "ticket_returned":
        what, deadline = "accept", data["reassign_due_at"]
    elif event.name == "ticket_accepted":
        what, deadline = "resolve", data["resolve_due_at"]
    elif event.name == "ticket_decided":
        what, deadline = "resolve", data["resolve_due_at"]
    elif event.name == "ticket_filed":
        what, deadline = "decision", data["decision_due_at"]
    elif event.name == "ticket_escalated" and data["mode"] == "supervise" and data["due_at"]:
        what, deadline = data["what"], data["due_at"]
    elif event.name == "task_assigned":
        what, deadline = "task", data["due_at"]
    else:
        return []
    deadline = datetime.fromisoformat(deadline)
    warn = now + (deadline - now) * policy.due_soon_share
    common = {"ticket_id": case.id, "what": what, "level": case.level, "deadline_at": deadline,
              "task_id": data.get("task_id")}
    return [{**common, "kind": "due_soon", "due_at": warn}, {**common, "kind": "overdue", "due_at": deadline}]


def still_watching(deadline, case, task=None) -> bool:
    """Is the deadline this timer was set for still the one in force? Else the timer is moot."""
    if deadline.what == "task":
        return task is not None and task.done_at is None and as_utc(task.due_at) == as_utc(deadline.deadline_at)
    states, due_field = WATCHED[deadline.what]
    return case.state in states and as_utc(getattr(case, due_field)) == as_utc(deadline.deadline_at)
