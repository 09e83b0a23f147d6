"""The ledger (台账): what came in, where it stands, per county and per category."""
from __future__ import annotations

from sqlalchemy import func, select

from .models import Case


def ledger_of(session) -> dict:
    by_state = dict(session.execute(select(Case.state, func.count()).group_by(Case.state)).all())
    by_county = dict(session.execute(select(Case.county_code, func.count()).group_by(Case.county_code)).all())
    by_category = dict(session.execute(
        select(Case.category_code, func.count()).group_by(Case.category_code)).all())
    reopened = session.scalar(select(func.count()).where(Case.reopen_count > 0))
    unplaced = session.scalar(select(func.count()).where(Case.village_code.is_(None)))
    return {"total": sum(by_state.values()), "by_state": by_state, "by_county": by_county,
            "by_category": by_category, "reopened": reopened, "unplaced": unplaced}
