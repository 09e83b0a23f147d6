"""Demo volunteers, generated reproducibly from a seed and sized like the city.

Seeding only adds: a generated volunteer whose id is already registered is left as it is (its
load, service points and any edits kept), and nothing is ever deleted. Seeding twice adds nothing.
"""
from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from .matching import generate_volunteers
from .models import VolunteerRow

CHUNK = 5_000


def seed_volunteers(engine, villages: list[tuple[str, str]], count: int = 100_000, seed: int = 3413) -> int:
    """Register the first `count` demo volunteers that are not registered yet; how many were added."""
    with Session(engine) as s:
        known = set(s.scalars(select(VolunteerRow.id)))
    missing = [v for v in generate_volunteers(villages, seed=seed, volunteers=count) if v.id not in known]
    with Session(engine) as s, s.begin():
        for start in range(0, len(missing), CHUNK):
            s.execute(insert(VolunteerRow), [
                {"id": v.id, "name": v.name, "team_id": v.team_id, "village_code": v.village_code,
                 "town_code": v.town_code, "skills": ",".join(sorted(v.skills)), "max_load": v.max_load,
                 "service_points": 0, "load": 0} for v in missing[start:start + CHUNK]])
    return len(missing)
