"""When a household is to be visited, pure: visit plans, the days they fall on, and each visit's deadline.

A plan says how a household is looked in on: by `phone` or at the `door`, every `every_days` days (1: daily,
7: weekly, 30: monthly) from `starts_on`, done by `due_minutes` after the local midnight of its day (600:
by 10:00; more than 1,440 runs past midnight into the next morning: a visit of the evening). Days are
China Standard Time calendar days, whatever the server's zone: a day of visits begins at 16:00 UTC.

A day is *opened* once (service.py: by the timer as soon as the day has begun, or ahead by an operator):
every active plan falling on it makes a visit for the person responsible for its household then
(visits.py). A visit's deadline runs from the later of its day's midnight and the moment the day was
opened, scaled by SLA_SCALE (services/common/clock.py): at scale 1 a day opened on time gives a daily call
due at 10:00 exactly; a day opened late (the service was down at midnight) still gives the whole window;
a scaled demo's day opened now is due `due_minutes` × scale from now.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from services.common.clock import CHINA

KINDS = ("phone", "door")  # 电话问候, 上门走访
EVERY = (1, 7, 14, 30)  # daily, weekly, fortnightly, monthly
MAX_DUE_MINUTES = 2 * 24 * 60  # a visit is done by the end of the next day at the latest


class BadPlan(ValueError):
    """A plan that cannot be kept: names the field and why."""

    def __init__(self, field: str, why: str):
        super().__init__(f"{field}: {why}")
        self.field, self.why = field, why


@dataclass(frozen=True)
class Plan:
    kind: str
    every_days: int
    due_minutes: int
    starts_on: date

    def check(self) -> "Plan":
        if self.kind not in KINDS:
            raise BadPlan("kind", f"one of {', '.join(KINDS)}")
        if self.every_days not in EVERY:
            raise BadPlan("every_days", f"one of {', '.join(map(str, EVERY))} (daily, weekly, fortnightly, monthly)")
        if not 0 < self.due_minutes <= MAX_DUE_MINUTES:
            raise BadPlan("due_minutes", f"minutes after the local midnight of the visit's day, 1 to {MAX_DUE_MINUTES}")
        return self


def local_day(moment: datetime) -> date:
    """The China calendar day `moment` falls on."""
    return moment.astimezone(CHINA).date()


def day_begins(day: date) -> datetime:
    """Local midnight of `day`, as an aware datetime (16:00 UTC the day before)."""
    return datetime.combine(day, time.min, CHINA)


def falls_on(plan: Plan, day: date) -> bool:
    """Does the plan make a visit on `day`?"""
    return day >= plan.starts_on and (day - plan.starts_on).days % plan.every_days == 0


def due_at(plan: Plan, day: date, opened_at: datetime, span) -> datetime:
    """The deadline of the plan's visit on `day`, the day opened at `opened_at`; `span(minutes)` is the
    deployment's scaled time (Clock.span)."""
    return max(day_begins(day), opened_at) + span(plan.due_minutes)


def next_visit_day(plan: Plan, after: date) -> date:
    """The first day after `after` on which the plan makes a visit."""
    if after < plan.starts_on:
        return plan.starts_on
    gone = (after - plan.starts_on).days
    return plan.starts_on + timedelta(days=(gone // plan.every_days + 1) * plan.every_days)
