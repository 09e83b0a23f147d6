"""Who may see what of a ticket in intake: pure rules over the caller's token (services/common/staff.py).

- the staff view (status, the contact masked): staff of the area the ticket lies in;
- the full contact: the people who call residents back (workers and dispatchers) of that area,
  with a reason, while the ticket is open and for `days_after_close` days after;
- the record of contact reads: supervisors and admins, of their area.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.common.staff import ADMIN, DISPATCHERS, STAFF, SUPERVISOR, WORKERS, Forbidden, Principal

CALLERS_BACK = WORKERS | DISPATCHERS
AUDITORS = frozenset({SUPERVISOR, ADMIN})


def location(ticket) -> str:
    """The most precise place a ticket is known by: its grid, else its village, else its county."""
    return ticket.grid_code or ticket.village_code or ticket.county_code


def may_read(who: Principal, ticket) -> None:
    who.require(STAFF, location(ticket), f"read ticket {ticket.id}")


def may_read_contact(who: Principal, ticket, now: datetime, days_after_close: float) -> None:
    who.require(CALLERS_BACK, location(ticket), "read the resident's contact")
    closed = ticket.closed_at
    if closed is not None and closed.tzinfo is None:  # SQLite gives back what it was given, in UTC, naive
        closed = closed.replace(tzinfo=timezone.utc)
    if closed is not None and now - closed > timedelta(days=days_after_close):
        raise Forbidden(f"ticket {ticket.id} was closed more than {days_after_close:g} days ago: "
                        "its contact is no longer given out")


def may_audit(who: Principal) -> None:
    who.require(AUDITORS, what="list contact reads")
