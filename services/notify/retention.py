"""Retention: what notify knows of a resident is kept only as long as it serves them (RETENTION_DAYS).

Once a ticket has been closed longer than that, its contact (name, phone, email), the address,
subject and body of every message sent about it (and the addresses kept with it for a fallback),
and the resident's comments on the follow-up are erased. What was sent when, on which channel and
how it went stays (the delivery log).
Signatures of gateway calls are kept only as long as a replay could still be attempted.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, or_, select, update

from .models import Contact, Delivery, GatewayCall, Survey
from services.common.gateways import WINDOW

ERASED = "(erased: retention)"


def forget(session, cutoff: datetime, now: datetime) -> int:
    expired = select(Contact.ticket_id).where(Contact.closed_at < cutoff).scalar_subquery()
    erased = session.execute(update(Contact).where(Contact.closed_at < cutoff, Contact.phone.is_not(None)
                                                   | Contact.email.is_not(None) | Contact.name.is_not(None))
                             .values(name=None, phone=None, email=None)
                             .execution_options(synchronize_session=False)).rowcount
    session.execute(update(Delivery).where(Delivery.ticket_id.in_(expired), Delivery.body != ERASED)
                    .values(address="", subject=ERASED, body=ERASED, contact=None)
                    .execution_options(synchronize_session=False))
    unsent = or_(Delivery.state == "pending",  # or claimed by a courier that died sending it
                 and_(Delivery.state == "sending", Delivery.claimed_until < now))
    session.execute(update(Delivery).where(Delivery.ticket_id.in_(expired), unsent)
                    .values(state="failed", error="erased by retention before it could be sent", claimed_until=None)
                    .execution_options(synchronize_session=False))
    session.execute(update(Survey).where(Survey.ticket_id.in_(expired), Survey.comment != "")
                    .values(comment="").execution_options(synchronize_session=False))
    session.execute(delete(GatewayCall).where(GatewayCall.at < now - 2 * WINDOW))
    return erased
