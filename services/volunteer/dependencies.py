from __future__ import annotations

from nameko.extensions import DependencyProvider
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.database import make_engine

from .matching import Volunteer, VolunteerIndex
from .models import VolunteerRow


class Registry(DependencyProvider):
    """The in-memory matching index, built from this service's database at start.

    It is a cache: loads are read from `volunteers.load`, each decision is taken by the row
    (services/volunteer/loads.py) and the index is told what the row said, so any number of
    instances (and workers) can share one database. A volunteer added to the registry later is
    seen after a restart.
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
    """Add every volunteer in the database to `index`, each with the load their row holds."""
    for row in session.scalars(select(VolunteerRow).order_by(VolunteerRow.id)):
        index.add(to_volunteer(row), load=row.load)
    return index


def to_volunteer(row: VolunteerRow) -> Volunteer:
    return Volunteer(id=row.id, name=row.name, team_id=row.team_id, village_code=row.village_code,
                     town_code=row.town_code, skills=frozenset(row.skills.split(",")),
                     max_load=row.max_load)
