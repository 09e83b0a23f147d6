"""Demo volunteers, generated reproducibly from a seed and sized like the city.

Seeding only adds: a generated volunteer whose id is already registered is left as it is (its
load, service points and any edits kept), and nothing is ever deleted. Seeding twice adds nothing.
"""
from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from datetime import datetime, timezone

from .matching import generate_volunteers
from .models import TeamRow, VolunteerRow

CHUNK = 5_000


def seed_volunteers(engine, villages: list[tuple[str, str]], count: int = 100_000, seed: int = 3413) -> int:
    """Register the first `count` demo volunteers that are not registered yet; how many were added."""
    with Session(engine) as s:
        known = set(s.scalars(select(VolunteerRow.id)))
        known_teams = set(s.scalars(select(TeamRow.id)))
    generated = generate_volunteers(villages, seed=seed, volunteers=count)
    missing = [v for v in generated if v.id not in known]
    now, teams = datetime.now(timezone.utc), {}
    for v in generated:  # a team's leader is its first member; its village, the leader's
        teams.setdefault(v.team_id, v)
    new_teams = [{"id": team_id, "name": f"第{int(team_id[1:])}志愿服务队", "leader_id": leader.id,
                  "village_code": leader.village_code, "active": True, "created_at": now, "updated_at": now}
                 for team_id, leader in teams.items() if team_id not in known_teams]
    with Session(engine) as s, s.begin():
        for start in range(0, len(new_teams), CHUNK):
            s.execute(insert(TeamRow), new_teams[start:start + CHUNK])
        for start in range(0, len(missing), CHUNK):
            s.execute(insert(VolunteerRow), [
                {"id": v.id, "name": v.name, "team_id": v.team_id, "village_code": v.village_code,
                 "town_code": v.town_code, "skills": ",".join(sorted(v.skills)), "max_load": v.max_load,
                 "service_points": 0, "load": 0} for v in missing[start:start + CHUNK]])
    return len(missing)
