from __future__ import annotations

from nameko.extensions import DependencyProvider
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.database import make_engine

from .matching import VolunteerIndex
from .models import VolunteerRow
from .people import to_volunteer


class Registry(DependencyProvider):
    """The in-memory matching index, built from this service's database at start.

    It is a cache: loads are read from `volunteers.load`, each decision is taken by the row
    (services/volunteer/loads.py) and the index is told what the row said, so any number of
    instances (and workers) can share one database. A volunteer registered, edited or deactivated
    over the API is proposed as they now are at once by the instance that took the change, and by
    every other within a tick of its registry timer (service.py, `relearn_registry`).
    """

    def setup(self) -> None:
        engine = make_engine(self.container.config["DB_URL"], pool_size=1)
        self.index = VolunteerIndex()
        with Session(engine) as s:
            fill_index(self.index, s)
        engine.dispose()

    def get_dependency(self, worker_ctx) -> VolunteerIndex:
        return self.index


def fill_index(index: VolunteerIndex, session) -> VolunteerIndex:
    """Add every active volunteer in the database to `index`, each with the load their row holds."""
    for row in session.scalars(select(VolunteerRow).where(VolunteerRow.active.is_(True)).order_by(VolunteerRow.id)):
        index.add(to_volunteer(row), load=row.load)
    return index


def relearn(index: VolunteerIndex, rows) -> None:
    """Rows registered, edited or deactivated since the index last looked: it proposes them as they are now."""
    for row in rows:
        index.forget(row.id)
        if row.active:
            index.add(to_volunteer(row), load=row.load)
