"""Volunteers' loads in the database: the truth every instance decides on.

The matching index (matching.py) is a cache in each instance's memory: it proposes, the row decides.
A place is taken with one guarded UPDATE (`load < max_load`) in the transaction that stores the offer,
and given back with one guarded UPDATE (`load > 0`) in the transaction that ends it. The UPDATE locks
the row: on PostgreSQL a second transaction after the same row waits for the first to commit and then
re-checks the condition on the row as committed (as `SELECT … FOR UPDATE` and a re-check would, in one
statement); SQLite has one writer at a time. So two instances, or two workers of one, never put a
volunteer past `max_load`, whatever their caches believe.
"""
from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select, update

from .matching import VolunteerIndex
from .models import VolunteerRow

volunteers = VolunteerRow.__table__


class Place(NamedTuple):
    """A place taken: who, for the event, and the load the row now holds."""
    name: str
    team_id: str
    load: int


def take_place(session, volunteer_id: str) -> Place | None:
    """One more ticket for the volunteer if the row says there is room; None when full (or gone)."""
    row = session.execute(update(volunteers)
                          .where(volunteers.c.id == volunteer_id, volunteers.c.load < volunteers.c.max_load,
                                 volunteers.c.active.is_(True))  # deactivated: whatever a stale index thinks
                          .values(load=volunteers.c.load + 1)
                          .returning(volunteers.c.name, volunteers.c.team_id, volunteers.c.load)).first()
    return None if row is None else Place(*row)


def give_back(session, volunteer_id: str) -> int | None:
    """One ticket fewer, never below 0; the load the row holds after, None for a volunteer no longer there."""
    row = session.execute(update(volunteers).where(volunteers.c.id == volunteer_id, volunteers.c.load > 0)
                          .values(load=volunteers.c.load - 1).returning(volunteers.c.load)).first()
    return row.load if row is not None else load_of(session, volunteer_id)


def load_of(session, volunteer_id: str) -> int | None:
    return session.scalar(select(volunteers.c.load).where(volunteers.c.id == volunteer_id))


def learn(index: VolunteerIndex, volunteer_id: str, load: int | None) -> None:
    """Tell the cache what a row says (None: the volunteer is gone)."""
    if load is None:
        index.forget(volunteer_id)
    else:
        index.set_load(volunteer_id, load)


def refresh_town(session, index: VolunteerIndex, town_code: str) -> None:
    """The cache learns the loads of everyone living in the town, as committed now."""
    for volunteer_id, load in session.execute(select(volunteers.c.id, volunteers.c.load)
                                              .where(volunteers.c.town_code == town_code)):
        index.set_load(volunteer_id, load)


def busy_loads(session) -> dict[str, int]:
    """Every volunteer holding at least one ticket, with their load (the rest hold none)."""
    return dict(session.execute(select(volunteers.c.id, volunteers.c.load).where(volunteers.c.load > 0)).all())
