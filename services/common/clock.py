"""Time, one way for every service: the clock rules read, and one knob that scales every deadline.

`SLA_SCALE` (env `SDJ_SLA_SCALE`, default 1) multiplies every span a service waits for: accept and
resolve deadlines, follow-up delays, offer expiry, reminders. `SDJ_SLA_SCALE=0.001` turns a 30-minute
deadline into 1.8 s, so the demo and the tests show a whole escalation in seconds. Pure rules take `now`
as an argument; services ask their `Time` dependency; tests use `ManualClock` and move it as they like.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from nameko.extensions import DependencyProvider

CHINA = timezone(timedelta(hours=8), "CST")  # China Standard Time: the calendar days of the ledger and of visits


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (every time we store is UTC): make them comparable with aware ones."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class Clock:
    def __init__(self, scale: float = 1.0):
        if not scale > 0:
            raise ValueError(f"SLA_SCALE must be a positive number, got {scale!r}")
        self.scale = scale

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def span(self, minutes: float) -> timedelta:
        """`minutes` of the rules (a deadline, a delay), as this deployment waits them."""
        return timedelta(minutes=minutes * self.scale)


class ManualClock(Clock):
    """A clock that moves only when told to: forwards, backwards, or by a jump."""

    def __init__(self, at: datetime, scale: float = 1.0):
        super().__init__(scale)
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta) -> datetime:
        self.at += timedelta(**delta)
        return self.at


class Time(DependencyProvider):
    """Injects the service's `Clock`, scaled by config `SLA_SCALE`."""

    def setup(self) -> None:
        self.clock = Clock(float(self.container.config.get("SLA_SCALE") or 1))

    def get_dependency(self, worker_ctx) -> Clock:
        return self.clock
