"""Retention of the register's personal data, pure SQL over outreach's tables.

A household deactivated (moved away, passed away) more than RETENTION_DAYS ago keeps its id, village and grid (the
visits and the ledger still count it) and loses what could name or reach anyone: address, phone, email, key groups,
and its members' names, births and key groups (`forgotten_at` says when). A household head deactivated as long
ago keeps their name on the record of who visited, and loses their phone. Reads of the audit and the record of
changes are kept. Run hourly by every instance: idempotent (what is erased is not erased again).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from .models import Head, Household, Member

ERASED = ""


def forget(session, cutoff: datetime, now: datetime) -> int:
    """Erase what is no longer ours to keep; how many households lost their personal data."""
    gone = (Household.active.is_(False), Household.deactivated_at < cutoff, Household.forgotten_at.is_(None))
    members = select(Household.id).where(*gone).scalar_subquery()
    session.execute(update(Member).where(Member.household_id.in_(members))
                    .values(name=ERASED, born=None, key_groups=ERASED).execution_options(synchronize_session=False))
    erased = session.execute(update(Household).where(*gone)
                             .values(address=ERASED, phone=ERASED, email=None, key_groups=ERASED, forgotten_at=now)
                             .execution_options(synchronize_session=False)).rowcount
    session.execute(update(Head).where(Head.active.is_(False), Head.deactivated_at < cutoff,
                                       Head.phone != ERASED).values(phone=ERASED)
                    .execution_options(synchronize_session=False))
    return erased
