"""Retention: dispatch keeps a resident's words and address only as long as they serve (RETENTION_DAYS).

Once a case has been closed longer than that, its address (where in the village the resident
lives) and the residents' own words in its history (their follow-up comments) are erased.
Who did what and when, and everything the ledger counts, stays.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from .models import Case, HistoryEntry

RESIDENT = "resident"


def forget(session, cutoff: datetime) -> int:
    expired = select(Case.id).where(Case.state == "closed", Case.updated_at < cutoff).scalar_subquery()
    erased = session.execute(update(Case).where(Case.id.in_(expired), Case.address != "").values(address="")
                             .execution_options(synchronize_session=False)).rowcount
    session.execute(update(HistoryEntry).where(HistoryEntry.ticket_id.in_(expired), HistoryEntry.actor == RESIDENT,
                                               HistoryEntry.note != "").values(note="")
                    .execution_options(synchronize_session=False))
    return erased
