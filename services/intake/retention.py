"""Retention: residents' contact data is kept only as long as it serves them (config RETENTION_DAYS).

Once a ticket has ended (closed, or cancelled: `closed_at` says when, see status.py) longer ago than
that, its contact (name, phone, email) is erased, and so is that of every repeat merged into it; its
address shrinks to its village and its map point to the village's precision (0.01°). A resident record keeps its phone, name and email only
while one of its tickets still may: after that it is an empty shell, counted but not reachable.
What the ledger needs (category, village, dates, states) stays; so does the record of who read
a contact (it names staff, not residents), and the record of withdrawal attempts (it names no-one).
Signatures of gateway calls are kept only while a replay of them could still be in time.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Numeric, cast, delete, exists, func, or_, select, update

from services.common.gateways import WINDOW

from .models import GatewayCall, Resident, Ticket

ERASED_ADDRESS = ""


def forget(session, cutoff: datetime, now: datetime) -> int:
    """Erase what retention says is no longer ours to keep; return how many tickets lost their contact."""
    expired = select(Ticket.id).where(Ticket.closed_at < cutoff).scalar_subquery()
    erased = session.execute(
        update(Ticket).where(or_(Ticket.id.in_(expired), Ticket.merged_into.in_(expired)),
                             or_(Ticket.contact_name.is_not(None), Ticket.contact_phone.is_not(None),
                                 Ticket.contact_email.is_not(None), Ticket.address != ERASED_ADDRESS))
        .values(contact_name=None, contact_phone=None, contact_email=None, address=ERASED_ADDRESS,
                lat=func.round(cast(Ticket.lat, Numeric), 2), long=func.round(cast(Ticket.long, Numeric), 2))
        .execution_options(synchronize_session=False)).rowcount
    still_reachable = exists().where(Ticket.resident_id == Resident.id, or_(
        Ticket.contact_phone.is_not(None), Ticket.contact_email.is_not(None), Ticket.contact_name.is_not(None)))
    session.execute(update(Resident).where(~still_reachable, or_(
        Resident.phone.is_not(None), Resident.name.is_not(None), Resident.email.is_not(None)))
        .values(phone=None, name=None, email=None).execution_options(synchronize_session=False))
    session.execute(delete(GatewayCall).where(GatewayCall.at < now - 2 * WINDOW))  # too old to replay anyway
    return erased
