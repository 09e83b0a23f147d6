"""Pure intake rules: phone numbers, ticket numbers, priority, and the event a new ticket causes."""
from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone

from services.common.envelope import Event, MalformedEvent

from .catalogue import Catalogue, Category

CST = timezone(timedelta(hours=8))
_TICKET_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud on the phone


def normalise_phone(raw: str | None) -> str | None:
    """One form per number, as dialled inside China: 13812345678, 05571234567.

    +86 / 0086 prefixes and separators are dropped; a landline written
    internationally (+86 557 1234567) gets back the trunk 0 of its area code.
    """
    if not raw:
        return None
    digits = re.sub(r"[^\d+]", "", raw)
    international = False
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits, international = digits[len(prefix):], True
    digits = digits.lstrip("+")
    if international and digits and not digits.startswith(("1", "0")):
        digits = "0" + digits  # landline: area code 557 is dialled 0557 at home
    return digits


def new_ticket_number(now: datetime) -> str:
    day = now.astimezone(CST).strftime("%y%m%d")
    return f"SDJ-{day}-" + "".join(secrets.choice(_TICKET_ALPHABET) for _ in range(8))


def category_for(code: str, catalogue: Catalogue) -> Category:
    category = catalogue.get(code)
    if category is None:
        raise MalformedEvent(f"category: {code!r} is not in the service catalogue")
    return category


def priority_of(category: Category, vulnerable: bool) -> int:
    """Vulnerable households (elderly alone, disabled, hardship) move up one level."""
    return max(1, category.priority - 1) if vulnerable else category.priority


def category_info(category: Category) -> dict:
    return {"code": category.code, "name_zh": category.name_zh, "name_en": category.name_en,
            "department": category.department, "group": category.group,
            "priority": category.priority, "accept_minutes": category.accept_minutes,
            "resolve_hours": category.resolve_hours, "follow_up_hours": category.follow_up_hours,
            "volunteer_skill": category.volunteer_skill, "proxy": category.proxy}


def resident_info(resident, contact: dict) -> dict:
    return {"id": resident.id, "name": resident.name, "phone": resident.phone, "email": resident.email,
            "locale": contact["locale"], "vulnerable": contact["vulnerable"]}


def ticket_received(ticket, resident, category: Category, contact: dict) -> Event:
    return Event("ticket_received", ticket.id, {
        "ticket_no": ticket.id,
        "channel": ticket.channel,
        "category": category_info(category),
        "priority": priority_of(category, contact["vulnerable"]),
        "village_code": ticket.village_code,  # None: the county's dispatch centre places it
        "county_code": ticket.county_code,
        "address": ticket.address,
        "lat": ticket.lat, "long": ticket.long,
        "description": ticket.description,
        "submitted_at": ticket.submitted_at.isoformat(),
        "received_at": ticket.received_at.isoformat(),
        "resident": resident_info(resident, contact),
    })


def receipt(ticket, message_id: str) -> Event:
    """What the publisher of a submission hears back (on its reply_to queue)."""
    number = ticket.merged_into or ticket.id
    return Event("submission_receipt", number, {
        "message_id": message_id, "ticket_no": number,
        "status": "merged" if ticket.merged_into else "received"}, correlation_id=message_id)


def rejection(message_id: str, reason: str) -> Event:
    """The receipt of a submission that made no ticket (it was dead-lettered): why, in the dead letter's words."""
    return Event("submission_receipt", "", {
        "message_id": message_id, "ticket_no": None, "status": "rejected", "reason": reason},
        correlation_id=message_id)


def ticket_merged(report, original, resident, category: Category, contact: dict) -> Event:
    return Event("ticket_merged", original.id, {
        "ticket_no": original.id, "report_no": report.id, "channel": report.channel,
        "category": category_info(category), "village_code": report.village_code,
        "resident": resident_info(resident, contact),
    }, correlation_id=original.id)
