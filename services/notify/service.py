"""notify: tells residents what happens to their request, and asks how it went (回访)."""
from __future__ import annotations

from nameko.web.handlers import http
from sqlalchemy import event as sa_event, select

from services.common.database import Database
from services.common.envelope import Event, read_data, utcnow
from services.common.http import HttpError, json_api, json_response, read_json
from services.common.inbox import Inbox
from services.common.messaging import on_event
from services.common.outbox import Outbox

from .courier import Courier
from .events import SCHEMAS
from .models import Contact, Delivery, InboxRow, OutboxRow, Survey
from .schemas import Reply, TicketMergedIn, TicketReceivedIn, TicketResolvedIn
from .templates import render


class NotifyService:
    name = "notify"

    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS)
    inbox = Inbox(InboxRow)
    courier = Courier()

    @on_event("intake", "ticket_received")
    def acknowledge(self, envelope):
        data = read_data(envelope, TicketReceivedIn)
        resident, category = data["resident"], data["category"]
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            contact = Contact(ticket_id=envelope["ticket_id"], name=resident["name"],
                                      phone=resident["phone"], email=resident["email"],
                                      locale=resident["locale"], category_zh=category["name_zh"],
                                      category_en=category["name_en"])
            s.add(contact)  # the inbox guarantees this runs once per ticket
            self._queue(s, envelope, contact, "ack", category=_category_name(contact),
                        accept_within=category["accept_minutes"])

    @on_event("intake", "ticket_merged")
    def tell_merged(self, envelope):
        """A repeat report: tell that resident the number of the ticket already being handled."""
        data = read_data(envelope, TicketMergedIn)
        resident, category = data["resident"], data["category"]
        reporter = Contact(ticket_id=data["ticket_no"], name=resident["name"], phone=resident["phone"],
                           email=resident["email"], locale=resident["locale"],
                           category_zh=category["name_zh"], category_en=category["name_en"])
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            self._queue(s, envelope, reporter, "merged")  # not stored: the ticket keeps its own contact

    @on_event("dispatch", "ticket_resolved")
    def ask_for_follow_up(self, envelope):
        data = read_data(envelope, TicketResolvedIn)
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            contact = self._contact(s, envelope["ticket_id"])
            rounds = s.scalars(select(Survey.round).where(Survey.ticket_id == contact.ticket_id)).all()
            s.add(Survey(ticket_id=contact.ticket_id, round=max(rounds, default=0) + 1, asked_at=utcnow()))
            self._queue(s, envelope, contact, "survey", resolved_by=data["assignee_name"])

    @on_event("dispatch", "ticket_closed", "ticket_reopened")
    def tell_outcome(self, envelope):
        template = {"ticket_closed": "closed", "ticket_reopened": "reopened"}[envelope["event"]]
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            self._queue(s, envelope, self._contact(s, envelope["ticket_id"]), template)

    @http("POST", "/replies")
    @json_api
    def reply(self, request):
        form = read_json(request, Reply())
        satisfied = form["satisfied"] if form["satisfied"] is not None else form["answer"] == "1"
        with self.db.transaction() as s:
            survey = s.scalar(select(Survey).where(Survey.ticket_id == form["ticket_id"],
                                                   Survey.answered_at.is_(None)))
            if survey is None:
                raise HttpError(409, f"ticket {form['ticket_id']} has no follow-up waiting for an answer")
            survey.answered_at, survey.satisfied, survey.comment = utcnow(), satisfied, form["comment"]
            self.outbox.add(s, [Event("feedback_received", form["ticket_id"], {
                "satisfied": satisfied, "comment": form["comment"], "round": survey.round},
                correlation_id=form["ticket_id"])])
            return json_response({"ticket_id": form["ticket_id"], "round": survey.round,
                                  "satisfied": satisfied})

    @http("GET", "/deliveries/<string:ticket_id>")
    @json_api
    def deliveries(self, request, ticket_id):
        with self.db.transaction() as s:
            rows = s.scalars(select(Delivery).where(Delivery.ticket_id == ticket_id)
                             .order_by(Delivery.id)).all()
            return json_response([{"template": d.template, "channel": d.channel, "state": d.state,
                                   "attempts": d.attempts, "sent_at": d.sent_at, "error": d.error,
                                   "reference": d.reference} for d in rows])

    def _contact(self, s, ticket_id) -> Contact:
        contact = s.get(Contact, ticket_id)
        if contact is None:  # ticket_received not applied yet: retry later
            raise LookupError(f"no contact for ticket {ticket_id} yet")
        return contact

    def _queue(self, s, envelope, contact: Contact, template: str, **fields) -> None:
        channel = self.courier.channel
        address = channel.address_of({"phone": contact.phone, "email": contact.email})
        if address is None:
            return  # this resident cannot be reached on this channel; the hotline calls back
        subject, body = render(template, contact.locale, ticket_no=contact.ticket_id,
                               resident_name=contact.name, **fields)
        now = utcnow()
        s.add(Delivery(message_id=f"{envelope['event_id']}.{template}", ticket_id=contact.ticket_id,
                       template=template, channel=channel.kind, address=address, subject=subject,
                       body=body, state="pending", attempts=0, next_attempt_at=now, created_at=now))
        sa_event.listen(s, "after_commit", lambda _s: self.courier.wake(), once=True)


def _category_name(contact: Contact) -> str:
    return contact.category_en if contact.locale == "en" and contact.category_en else contact.category_zh
