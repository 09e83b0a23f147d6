"""One resident across channels: the same phone number is the same person.

What a request says about its resident is not verified: it is kept with that request's
ticket (its contact), and never changes the resident record another request made.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select

from services.common.contacts import normalise_phone
from .models import Resident


def find_or_add(session, contact: dict, now: datetime) -> Resident:
    phone = normalise_phone(contact.get("phone"))
    resident = session.scalar(select(Resident).where(Resident.phone == phone)) if phone else None
    if resident is None:
        resident = Resident(id=str(uuid.uuid4()), phone=phone, name=contact.get("name"),
                            email=contact.get("email"), created_at=now)
        session.add(resident)
    return resident
