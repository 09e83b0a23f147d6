"""Demo volunteers, generated reproducibly from a seed and sized like the city."""
from __future__ import annotations

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from .matching import generate_volunteers
from .models import OPEN_STATES, Offer, VolunteerRow


def seed_volunteers(engine, villages: list[tuple[str, str]], count: int = 100_000, seed: int = 3413) -> int:
    with Session(engine) as s:
        if s.scalar(select(func.count()).select_from(VolunteerRow)) == count:
            return count  # already seeded: the generator is deterministic
    volunteers = generate_volunteers(villages, seed=seed, volunteers=count)
    with Session(engine) as s, s.begin():
        s.execute(delete(VolunteerRow))
        s.execute(insert(VolunteerRow), [
            {"id": v.id, "name": v.name, "team_id": v.team_id, "village_code": v.village_code,
             "town_code": v.town_code, "skills": ",".join(sorted(v.skills)), "max_load": v.max_load,
             "service_points": 0, "load": 0} for v in volunteers])
        # offers made before a re-seed still hold their places (the volunteer's load is what they say)
        open_offers = (select(func.count()).select_from(Offer)
                       .where(Offer.volunteer_id == VolunteerRow.id, Offer.state.in_(OPEN_STATES))
                       .scalar_subquery())
        s.execute(update(VolunteerRow).where(VolunteerRow.id.in_(
            select(Offer.volunteer_id).where(Offer.state.in_(OPEN_STATES)))).values(load=open_offers)
                  .execution_options(synchronize_session=False))
    return len(volunteers)
