"""One resident across channels: the same phone number is the same person.

What a request says about its resident is not verified: it is kept with that request's
ticket (its contact), and never changes the resident record another request made.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from services.common.contacts import normalise_phone
from .models import Resident

# on the acknowledgement's path: prebuilt Core statements (an ORM query and a flush cost more than the rows)
_residents = Resident.__table__
FIND = select(_residents.c.id).where(_residents.c.phone == bindparam("phone"))
# two requests from one new number at once (two workers, two instances): the first insert wins, the other waits for
# its commit and adds nothing, then finds it (a plain insert failed on the unique phone, and the retry reordered the
# two requests)
ADD = {"postgresql": postgresql.insert(_residents).on_conflict_do_nothing(index_elements=["phone"]),
       "sqlite": sqlite.insert(_residents).on_conflict_do_nothing(index_elements=["phone"])}


def find_or_add(session, contact: dict, now: datetime) -> str:
    """The id of the resident with the contact's phone number, recorded now if there is none."""
    phone = normalise_phone(contact.get("phone"))
    found = session.execute(FIND, {"phone": phone}).scalar() if phone else None
    if found is not None:
        return found
    resident_id = str(uuid.uuid4())
    added = session.execute(ADD[session.get_bind().dialect.name], {
        "id": resident_id, "phone": phone, "name": contact.get("name"), "email": contact.get("email"),
        "created_at": now}).rowcount
    return resident_id if added else session.execute(FIND, {"phone": phone}).scalar_one()
