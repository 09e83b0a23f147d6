"""Pure intake rules: what makes a request acceptable, ticket numbers, priority, and the events a
new ticket causes. Both ways in (Open311 and AMQP submissions) use them; an InvalidRequest names
the field and why, and each way in answers it its own way (HTTP 400, or a dead letter).
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from services.common.envelope import Event

from .catalogue import Catalogue, Category

CST = timezone(timedelta(hours=8))
_TICKET_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud on the phone
CHANNELS = ("hotline", "wechat", "miniprogram", "counter", "grid_visit", "night_talk")
ROUTING_KEY_PREFIX = "submit."
FUTURE_TOLERANCE = timedelta(minutes=5)  # clocks of outside systems drift a little, not more


class InvalidRequest(ValueError):
    """A request that can never be accepted as it is: the field, and why."""

    def __init__(self, field: str, why: str):
        super().__init__(f"{field}: {why}")
        self.field, self.why = field, why


def new_ticket_number(now: datetime) -> str:
    day = now.astimezone(CST).strftime("%y%m%d")
    return f"SDJ-{day}-" + "".join(secrets.choice(_TICKET_ALPHABET) for _ in range(8))


def category_for(code: str, catalogue: Catalogue) -> Category:
    category = catalogue.get(code)
    if category is None:
        raise InvalidRequest("category", f"{code!r} is not in the service catalogue")
    return category


def channel_of(routing_key: str, said: str) -> str:
    """The channel a submission's routing key names, which must be one we know and the one its body says."""
    channel = routing_key[len(ROUTING_KEY_PREFIX):] if routing_key.startswith(ROUTING_KEY_PREFIX) else ""
    if channel not in CHANNELS:
        raise InvalidRequest("routing key", f"{routing_key[:60]!r} is not submit.<channel> with a channel "
                                            f"among {', '.join(CHANNELS)}")
    if channel != said:
        raise InvalidRequest("channel", f"{said!r} in the body, but the routing key says {channel!r}")
    return channel


def check_submitted_at(submitted_at: datetime, now: datetime) -> datetime:
    if submitted_at > now + FUTURE_TOLERANCE:
        raise InvalidRequest("submitted_at", f"{submitted_at.isoformat()} is in the future")
    return submitted_at


def new_ticket(form: dict, category: Category, resident_id: str, original, *, publisher: str, message_id: str,
               channel: str, now: datetime, **more) -> dict:
    """The fields of a ticket for a request: a repeat of `original` (an open ticket) is recorded merged."""
    contact = form["resident"]
    return dict(id=new_ticket_number(now), publisher=publisher, message_id=message_id, channel=channel,
                category=category.code, village_code=form["village_code"],
                county_code=form.get("county_code") or form["village_code"][:6],
                address=form["address"], description=form["description"], resident_id=resident_id,
                contact_name=contact.get("name"), contact_phone=contact.get("phone"),
                contact_email=contact.get("email"),
                submitted_at=form.get("submitted_at") or now, received_at=now,
                status="merged" if original else "received", merged_into=original.id if original else None,
                **more)


def priority_of(category: Category, vulnerable: bool) -> int:
    """Vulnerable households (elderly alone, disabled, hardship) move up one level."""
    return max(1, category.priority - 1) if vulnerable else category.priority


def category_info(category: Category) -> dict:
    return {"code": category.code, "name_zh": category.name_zh, "name_en": category.name_en,
            "department": category.department, "group": category.group,
            "priority": category.priority, "accept_minutes": category.accept_minutes,
            "resolve_hours": category.resolve_hours, "follow_up_hours": category.follow_up_hours,
            "volunteer_skill": category.volunteer_skill, "proxy": category.proxy}


def resident_info(ticket, contact: dict) -> dict:
    """Who asked and how to reach them: the contact given with this ticket, never another request's."""
    return {"id": ticket.resident_id, "name": ticket.contact_name, "phone": ticket.contact_phone,
            "email": ticket.contact_email, "locale": contact["locale"], "vulnerable": contact["vulnerable"]}


def ticket_received(ticket, category: Category, contact: dict) -> Event:
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
        "resident": resident_info(ticket, contact),
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


def ticket_merged(report, original, category: Category, contact: dict) -> Event:
    return Event("ticket_merged", original.id, {
        "ticket_no": original.id, "report_no": report.id, "channel": report.channel,
        "category": category_info(category), "village_code": report.village_code,
        "resident": resident_info(report, contact),
    }, correlation_id=original.id)
