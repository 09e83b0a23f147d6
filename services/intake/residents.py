"""One resident across channels: the same phone number is the same person."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select

from .intake import normalise_phone
from .models import Resident


def find_or_add(session, contact: dict, now: datetime) -> Resident:
    phone = normalise_phone(contact.get("phone"))
    resident = session.scalar(select(Resident).where(Resident.phone == phone)) if phone else None
    if resident is None:
        resident = Resident(id=str(uuid.uuid4()), phone=phone, created_at=now)
        session.add(resident)
    resident.name = contact.get("name") or resident.name
    resident.email = contact.get("email") or resident.email
    return resident


def mask_phone(phone: str | None) -> str | None:
    if not phone or len(phone) < 7:
        return phone
    return phone[:3] + "****" + phone[-4:]


def mask_name(name: str | None) -> str | None:
    """王秀英 → 王**: enough to greet, not enough to identify."""
    return name[0] + "*" * (len(name) - 1) if name else name
