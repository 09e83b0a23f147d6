"""One resident across channels: the same phone number is the same person.

What a request says about its resident is not verified: it is kept with that request's
ticket (its contact), and never changes the resident record another request made.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, insert, select

from services.common.contacts import normalise_phone
from .models import Resident

# on the acknowledgement's path: prebuilt Core statements (an ORM query and a flush cost more than the rows)
_residents = Resident.__table__
FIND = select(_residents.c.id).where(_residents.c.phone == bindparam("phone"))
ADD = insert(_residents)


def find_or_add(session, contact: dict, now: datetime) -> str:
    """The id of the resident with the contact's phone number, recorded now if there is none."""
    phone = normalise_phone(contact.get("phone"))
    found = session.execute(FIND, {"phone": phone}).scalar() if phone else None
    if found is not None:
        return found
    resident_id = str(uuid.uuid4())
    session.execute(ADD, {"id": resident_id, "phone": phone, "name": contact.get("name"),
                          "email": contact.get("email"), "created_at": now})
    return resident_id
