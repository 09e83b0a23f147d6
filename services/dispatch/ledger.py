"""The ledger (台账): what came in to an area, where it stands, per county and per category."""
from __future__ import annotations

from sqlalchemy import func, select

from .models import Case


def ledger_of(session, area: str) -> dict:
    def count_by(column):
        return dict(session.execute(select(column, func.count()).where(inside).group_by(column)).all())
    inside = Case.in_area(area)
    by_state = count_by(Case.state)
    reopened = session.scalar(select(func.count()).where(inside, Case.reopen_count > 0))
    unplaced = session.scalar(select(func.count()).where(inside, Case.village_code.is_(None)))
    return {"area": area, "total": sum(by_state.values()), "by_state": by_state,
            "by_county": count_by(Case.county_code), "by_category": count_by(Case.category_code),
            "reopened": reopened, "unplaced": unplaced}
