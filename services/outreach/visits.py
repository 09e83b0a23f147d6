"""Pure rules of a visit's life: who answers for it, what a missed deadline does, what recording it does.

Functions take a visit and its household (any objects with the attributes of `models.Visit` and
`models.Household`), change the visit, and return the events they caused. No nameko, no SQLAlchemy.
When a visit falls is schedules.py's; who may record or read one is access.py's.

Who answers for a visit climbs the same ladder as a ticket's deadline (定责), one rung per miss:
household head (联户长) → the household's grid worker (网格员) → the village (两委值班: any duty cadre of it).
- A household with no active head starts at its grid worker.
- Missed (`visit_escalated`, which stays on the record): the next rung has its own time (`Ladder`, minutes
  before SLA_SCALE); at the village there is no rung above: the overdue is recorded, the village keeps it.
- On time means done by the first deadline, whoever did it; a visit done after escalating counts as done.
- The household moved grid, or its head was deactivated or changed: an open visit goes to whoever answers
  for that rung now (a head's visit with no head left goes to the grid worker), its deadline unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.clock import as_utc
from services.common.envelope import Event

LEVELS = ("household_head", "grid_worker", "village")
HEAD, GRID_WORKER, VILLAGE = range(3)
TOP = VILLAGE


class VisitClosed(Exception):
    """The visit is no longer open (done, or cancelled): HTTP 409."""

    def __init__(self, visit_id: str, state: str):
        super().__init__(f"visit {visit_id} is {state}; it cannot be recorded again")


@dataclass(frozen=True)
class Ladder:
    """Minutes each rung above the first has to do a missed visit (config VISIT_LADDER_MINUTES)."""
    grid_worker: float = 240
    village: float = 1440

    @classmethod
    def from_config(cls, given: dict | None) -> "Ladder":
        given = dict(given or {})
        if unknown := set(given) - set(cls.__dataclass_fields__):
            raise ValueError(f"VISIT_LADDER_MINUTES: unknown rungs {sorted(unknown)}; "
                             "the rungs are grid_worker, village")
        ladder = cls(**{k: float(v) for k, v in given.items()})
        if min(ladder.grid_worker, ladder.village) <= 0:
            raise ValueError("VISIT_LADDER_MINUTES: each rung needs a positive number of minutes")
        return ladder

    def minutes(self, level: int) -> float:
        return self.grid_worker if level == GRID_WORKER else self.village


def answering(household, level: int) -> tuple[int, str]:
    """The rung and the person (or, at the village, the village code) answering for `household` at `level`
    or, when that rung is empty (no active head), the first rung above it that is not."""
    if level <= HEAD and household.head_id:
        return HEAD, household.head_id
    if level <= GRID_WORKER:
        return GRID_WORKER, household.grid_worker_id
    return VILLAGE, household.village_code


def new_visit(household, plan, day, due_at: datetime) -> dict:
    """The fields of the visit `plan` makes for `household` on `day`."""
    level, who = answering(household, HEAD)
    return {"plan_id": plan.id, "household_id": household.id, "day": day, "kind": plan.kind,
            "village_code": household.village_code, "grid_code": household.grid_code, "level": level,
            "responsible_id": who, "assigned_to": who, "state": "due", "first_due_at": due_at, "due_at": due_at}


def escalate(visit, household, now: datetime, ladder: Ladder, span) -> list[Event]:
    """A visit not done by its deadline climbs a rung, with that rung's time from `ladder` (`span`: the
    deployment's scaled minutes); at the village it stays there, overdue, with no deadline left."""
    missed = as_utc(visit.due_at)
    if visit.state != "due" or missed is None or now < missed:
        return []
    visit.missed = True
    before = visit.level
    if before >= TOP:
        visit.due_at = None  # nobody above the village: recorded, and the village keeps it
    else:
        visit.level, visit.responsible_id = answering(household, before + 1)
        visit.due_at = now + span(ladder.minutes(visit.level))
    return [_event("visit_escalated", visit, now, {
        "from_level": LEVELS[before], "missed_at": missed.isoformat(),
        "due_at": visit.due_at.isoformat() if visit.due_at else None})]


def record(visit, by: str, contact_made: bool, needs: int, now: datetime) -> list[Event]:
    """The visit was made (or tried: `contact_made` false, nobody answered the door or the phone)."""
    if visit.state != "due":
        raise VisitClosed(visit.id, visit.state)
    visit.state, visit.done_at, visit.done_by, visit.contact_made = "done", now, by, contact_made
    visit.on_time = now <= as_utc(visit.first_due_at)
    visit.due_at = None
    return [_event("visit_recorded", visit, now, {"done_by": by, "contact_made": contact_made,
                                                  "on_time": visit.on_time, "needs_found": needs})]


def reassign(visit, household) -> bool:
    """After the household moved grid, or its head changed: the open visit goes to whoever answers for its
    rung now, in the household's grid and village; the deadline stays. True when anything changed."""
    if visit.state != "due":
        return False
    before = (visit.level, visit.responsible_id, visit.grid_code, visit.village_code)
    visit.level, visit.responsible_id = answering(household, visit.level)
    visit.grid_code, visit.village_code = household.grid_code, household.village_code
    return before != (visit.level, visit.responsible_id, visit.grid_code, visit.village_code)


def cancel(visit) -> bool:
    """The household left the register (deactivated): its open visits are not due any more."""
    if visit.state != "due":
        return False
    visit.state, visit.due_at = "cancelled", None
    return True


def _event(name: str, visit, now: datetime, data: dict) -> Event:
    # the envelope's ticket_id names what the event is about: here the visit
    return Event(name, visit.id, {"household_id": visit.household_id, "day": visit.day.isoformat(),
                                  "kind": visit.kind, "village_code": visit.village_code,
                                  "grid_code": visit.grid_code, "level": LEVELS[visit.level],
                                  "responsible_id": visit.responsible_id, **data}, occurred_at=now)

