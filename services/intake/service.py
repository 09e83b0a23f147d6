"""intake: the front door. Outside systems publish submissions; residents get a ticket."""
from __future__ import annotations

import json

from nameko.web.handlers import http
from sqlalchemy import select

from services.common.database import Database
from services.common.envelope import read_data, utcnow
from services.common.inbox import Inbox
from services.common.messaging import on_event
from services.common.outbox import Outbox

from . import events
from .dependencies import CatalogueProvider
from .intake import category_for, new_ticket_number, ticket_received
from .models import InboxRow, OutboxRow, Resident, Ticket
from .residents import find_or_add, mask_phone
from .schemas import Submission, TicketStatusChange
from .submissions import on_submission

# what a resident asking "where is my request?" needs; offers follow routing at once
LIFECYCLE_EVENTS = ("ticket_routed", "ticket_accepted", "ticket_resolved", "ticket_closed",
                    "ticket_reopened")


class IntakeService:
    name = "intake"

    db = Database()
    outbox = Outbox(OutboxRow, events.SCHEMAS)
    inbox = Inbox(InboxRow)
    catalogue = CatalogueProvider()

    @on_submission()
    def receive_submission(self, body: dict, message_id: str):
        form = Submission().load(body)
        category = category_for(form["category"], self.catalogue)
        now = utcnow()
        with self.db.transaction() as s:
            if s.scalar(select(Ticket.id).where(Ticket.message_id == message_id)):
                return  # the same message again: it already made its ticket
            resident = find_or_add(s, form["resident"], now)
            ticket = Ticket(id=new_ticket_number(now), message_id=message_id, channel=form["channel"],
                            category=category.code, village_code=form["village_code"],
                            address=form["address"], description=form["description"],
                            resident_id=resident.id, submitted_at=form["submitted_at"], received_at=now)
            s.add(ticket)
            s.flush()
            self.outbox.add(s, [ticket_received(ticket, resident, category, form["resident"])])

    @on_event("dispatch", *LIFECYCLE_EVENTS)
    def track_status(self, envelope: dict):
        change = read_data(envelope, TicketStatusChange)
        with self.db.transaction() as s:
            ticket = s.get(Ticket, envelope["ticket_id"])
            if ticket is None or change["ticket_version"] <= ticket.status_version:
                return  # unknown here, or older than what we know: arrival order is not event order
            ticket.status, ticket.status_version = change["state"], change["ticket_version"]
            ticket.assignee_name = change.get("assignee_name") or ticket.assignee_name

    @http("GET", "/tickets/<string:ticket_no>")
    def get_ticket(self, request, ticket_no: str):
        with self.db.transaction() as s:
            ticket = s.get(Ticket, ticket_no)
            if ticket is None:
                return _json({"error": f"ticket {ticket_no} not found"}, status=404)
            resident = s.get(Resident, ticket.resident_id)
            return _json({
                "ticket_no": ticket.id, "status": ticket.status, "category": ticket.category,
                "channel": ticket.channel, "village_code": ticket.village_code,
                "submitted_at": ticket.submitted_at.isoformat(), "assignee_name": ticket.assignee_name,
                "resident_phone": mask_phone(resident.phone),
            })


def _json(value, status: int = 200) -> tuple[int, dict, str]:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(value, ensure_ascii=False)
