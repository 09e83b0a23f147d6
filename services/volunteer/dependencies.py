from __future__ import annotations

from nameko.extensions import DependencyProvider
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.common.database import make_engine

from .matching import Volunteer, VolunteerIndex
from .models import OPEN_STATES, Offer, VolunteerRow


class Registry(DependencyProvider):
    """The in-memory matching index, built from this service's database at start.

    Loads (open offers per volunteer) are rebuilt from the offers table, so a
    restart loses nothing; one instance per database keeps them consistent.
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
    """Add every volunteer in the database to `index`, each loaded with their open (offered or accepted) offers."""
    for row in session.scalars(select(VolunteerRow).order_by(VolunteerRow.id)):
        index.add(to_volunteer(row))
    open_offers = session.execute(select(Offer.volunteer_id, func.count()).where(
        Offer.state.in_(OPEN_STATES)).group_by(Offer.volunteer_id)).all()
    for volunteer_id, count in open_offers:
        for _ in range(count):
            index.take(volunteer_id)
    return index


def to_volunteer(row: VolunteerRow) -> Volunteer:
    return Volunteer(id=row.id, name=row.name, team_id=row.team_id, village_code=row.village_code,
                     town_code=row.town_code, skills=frozenset(row.skills.split(",")),
                     max_load=row.max_load)
