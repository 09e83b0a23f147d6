"""A ticket's rules in intake: what makes a request acceptable, ticket numbers and priority, when a
request repeats an open ticket, when its resident may withdraw it, and the events a ticket causes.

Pure: functions over plain objects (a ticket is anything with the attributes of `models.Ticket`;
the catalogue and the places are passed in), no nameko, no SQLAlchemy. Both ways in (Open311 and
AMQP submissions) use them; an InvalidRequest names the field and why, and each way in answers it
its own way (HTTP 400, or a dead letter). Where a ticket stands is status.py's.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from services.common.envelope import Event
from services.common.gateways import same_sender

from . import attributes
from .catalogue import Catalogue, Category
from .duplicates import duplicate_of, window_start
from .errors import InvalidRequest
from .status import DONE, ENDED

CST = timezone(timedelta(hours=8))
_TICKET_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud on the phone
CHANNELS = ("hotline", "wechat", "miniprogram", "counter", "grid_visit", "night_talk")
ROUTING_KEY_PREFIX = "submit."
FUTURE_TOLERANCE = timedelta(minutes=5)  # clocks of outside systems drift a little, not more
REASON_LIMIT = 500  # what a resident may say when withdrawing a request
NO_REASON = "群众主动撤回诉求（未说明原因）"  # the event always says why: the resident gave no reason


class NotTheResident(Exception):
    """From a gateway, but not from the ticket's resident: HTTP 403. Names no-one."""


class CannotWithdraw(Exception):
    """The ticket is past withdrawing (a repeat of another, or its work done): HTTP 409."""


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


def check_submission(form: dict, routing_key: str, catalogue: Catalogue, places, now: datetime) -> tuple[str, Category]:
    """An AMQP submission (as schemas.Submission loaded it) is acceptable: its channel (the routing key
    agrees with the body), its time, its category, its attributes (form["attributes"] becomes the
    checked values) and its village. InvalidRequest names the first problem."""
    channel = channel_of(routing_key, form["channel"])
    check_submitted_at(form["submitted_at"], now)
    category = category_for(form["category"], catalogue)
    form["attributes"] = attributes.of_submission(form["attributes"], category)
    if places.village(form["village_code"]) is None:
        raise InvalidRequest("village_code", f"{form['village_code']!r} is not a village of Suzhou (NBS 2023)")
    return channel, category


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at  # SQLite gives back naive UTC


def may_join(ticket, category_code: str, village_code: str | None, now: datetime) -> bool:
    """Whether a new request of this category and village may join `ticket` as its repeat: a ticket of its
    own (not itself a repeat), of the same category and village, not ended, received within the window.
    (The service's query narrows the candidates the same way; this says what the rule is.)"""
    return (village_code is not None and ticket.village_code == village_code and ticket.category == category_code
            and ticket.merged_into is None and ticket.status not in ENDED
            and _aware(ticket.received_at) >= window_start(now))


def original_of(form: dict, category: Category, resident_id: str, candidates, now: datetime):
    """The open ticket a request repeats (it joins it: ticket_merged), or None (a ticket of its own).
    A point alone has no village yet: it is never a repeat."""
    if not form.get("village_code"):
        return None
    joinable = [t for t in candidates if may_join(t, category.code, form["village_code"], now)]
    return duplicate_of(resident_id, form["description"], joinable)


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


def withdraw(ticket, sender: str, reason: str, now: datetime) -> list[Event]:
    """A resident withdraws a request (撤单) through a gateway that proved the call. Only the ticket's own
    contact may (NotTheResident, naming no-one), and only while there is something to withdraw
    (CannotWithdraw: a repeat withdraws nothing, and names the ticket it joined; a ticket whose work is
    done, or that ended, neither). Dispatch is told once (ticket_cancelled); asking again changes nothing."""
    if not same_sender(sender, ticket.contact_phone, ticket.contact_email):
        raise NotTheResident(f"sender: not the contact of ticket {ticket.id}")
    if ticket.merged_into:
        raise CannotWithdraw(f"ticket {ticket.id} joined ticket {ticket.merged_into}, which others reported "
                             "too: a repeat withdraws nothing; call the hotline about that ticket")
    if ticket.status in DONE:
        raise CannotWithdraw(f"ticket {ticket.id} is {ticket.status}: there is nothing left to withdraw")
    if ticket.cancel_requested_at is not None:
        return []  # dispatch has been told already
    ticket.cancel_requested_at = now
    return [ticket_cancelled(ticket, reason)]


def category_info(category: Category) -> dict:
    """The category as events carry it. resolve_minutes is the resolve deadline; resolve_hours (whole
    hours, rounded up) stays for consumers that read hours only."""
    return {"code": category.code, "name_zh": category.name_zh, "name_en": category.name_en,
            "department": category.department, "group": category.group,
            "priority": category.priority, "accept_minutes": category.accept_minutes,
            "resolve_hours": category.resolve_hours, "resolve_minutes": category.resolve_minutes,
            "follow_up_hours": category.follow_up_hours,
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


def ticket_cancelled(ticket, reason: str) -> Event:
    """The resident withdrew the request (proved by a gateway-signed call): dispatch cancels the case."""
    return Event("ticket_cancelled", ticket.id, {
        "ticket_no": ticket.id, "by": "resident", "reason": reason.strip()[:REASON_LIMIT] or NO_REASON,
    }, correlation_id=ticket.id)
