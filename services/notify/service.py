"""notify: tells residents what happens to their request, and asks how it went (回访)."""
from __future__ import annotations

import logging
from datetime import timedelta

from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import event as sa_event, select
from sqlalchemy.exc import IntegrityError

from services.common.database import Database
from services.common.envelope import Event, read_data, utcnow
from services.common.http import HttpError, api, http, json_response, read_json
from services.common.inbox import Inbox
from services.common.messaging import on_event
from services.common.openapi import document
from services.common.outbox import Outbox
from services.common.staff import STAFF, Forbidden, Unauthenticated
from services.common.tokens import StaffTokens

from . import replies, retention
from .courier import Courier
from services.common.gateways import ForgedCall, Gateways, verify_gateway
from .events import SCHEMAS
from .models import Contact, Delivery, GatewayCall, InboxRow, OutboxRow, ReplyAttempt, Survey
from .schemas import DeliveryView, Reply, ReplyView, TicketMergedIn, TicketReceivedIn, TicketResolvedIn
from .templates import render

log = logging.getLogger(__name__)


class NotifyService:
    name = "notify"

    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS)
    inbox = Inbox(InboxRow)
    courier = Courier()
    staff = StaffTokens()
    gateways = Gateways()
    config = Config()

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
                              category_en=category["name_en"],
                              area_code=data["village_code"] or data["county_code"])
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
            code = replies.new_survey_code()
            s.add(Survey(ticket_id=contact.ticket_id, round=max(rounds, default=0) + 1, code=code,
                         asked_at=utcnow()))
            self._queue(s, envelope, contact, "survey", resolved_by=data["assignee_name"], survey_code=code)

    @on_event("dispatch", "ticket_closed", "ticket_reopened")
    def tell_outcome(self, envelope):
        template = {"ticket_closed": "closed", "ticket_reopened": "reopened"}[envelope["event"]]
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            contact = self._contact(s, envelope["ticket_id"])
            contact.closed_at = envelope["occurred_at"] if template == "closed" else None
            self._queue(s, envelope, contact, template)

    @timer(interval=3600, eager=True)
    def forget_old_contacts(self):
        """Retention, hourly: what was sent to residents of tickets closed more than RETENTION_DAYS ago."""
        now = utcnow()
        cutoff = now - timedelta(days=float(self.config.get("RETENTION_DAYS", 180)))
        with self.db.transaction() as s:
            return retention.forget(s, cutoff, now)

    @http("POST", "/replies")
    @api("A resident's answer to the follow-up (回访), forwarded and signed by a gateway", auth="gateway",
         body=Reply, answers={200: ReplyView, 409: None})
    def reply(self, request):
        """Counted only when a gateway we trust signed it, and it carries that survey's code and comes from
        the ticket's contact (see replies.py). Every attempt is recorded, counted or not."""
        now, raw = utcnow(), request.get_data(cache=True)
        attempt = ReplyAttempt(at=now, remote=(request.remote_addr or "")[:64],
                               gateway=(request.headers.get("X-Sdj-Gateway") or "")[:40])
        try:
            gateway, signature = verify_gateway(request.headers, raw, self.gateways, now)
            self._first_call(gateway, signature, now)
            form = read_json(request, Reply())
            attempt.ticket_id = form["ticket_id"]
            answer = self._record_answer(form, now, attempt)
        except ForgedCall as exc:
            self._refused(attempt, "forged", exc)
            raise Unauthenticated(str(exc)) from None
        except replies.NotTheResident as exc:
            self._refused(attempt, "refused", exc)
            raise Forbidden(str(exc)) from None
        except HttpError as exc:
            self._refused(attempt, "unexpected" if exc.status == 409 else "invalid", exc)
            raise
        return json_response(answer)

    @http("GET", "/deliveries/<string:ticket_id>")
    @api("What was sent to a ticket's resident and how it went: staff of the ticket's area",
         answers={200: DeliveryView}, many=True)
    def deliveries(self, request, ticket_id):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            contact = s.get(Contact, ticket_id[:32])
            if contact is None:
                raise HttpError(404, f"no deliveries for ticket {ticket_id[:32]}")
            who.require(STAFF, contact.area_code or "", f"read the deliveries of ticket {contact.ticket_id}")
            rows = s.scalars(select(Delivery).where(Delivery.ticket_id == contact.ticket_id)
                             .order_by(Delivery.id)).all()
            return json_response([{"template": d.template, "channel": d.channel, "state": d.state,
                                   "attempts": d.attempts, "sent_at": d.sent_at and d.sent_at.isoformat(),
                                   "error": d.error, "reference": d.reference} for d in rows])

    @http("GET", "/openapi.json")
    @api("This API, described (OpenAPI 3.1)", answers={200: {"type": "object"}}, auth=None)
    def openapi(self, request):
        return json_response(OPENAPI)

    def _first_call(self, gateway: str, signature: str, now) -> None:
        """Remember an authentic call; the same signature a second time is a replay."""
        try:
            with self.db.transaction() as s:
                s.add(GatewayCall(signature=signature, gateway=gateway, at=now))
        except IntegrityError:
            raise ForgedCall("X-Sdj-Signature: this call was made before (a replay)") from None

    def _record_answer(self, form: dict, now, attempt: ReplyAttempt) -> dict:
        satisfied = form["answer"] == "1"
        with self.db.transaction() as s:
            survey = s.scalar(select(Survey).where(Survey.ticket_id == form["ticket_id"],
                                                   Survey.answered_at.is_(None)))
            if survey is None:
                raise HttpError(409, f"ticket {form['ticket_id']} has no follow-up waiting for an answer")
            replies.check_reply(survey, self._contact(s, survey.ticket_id), form["survey_code"], form["sender"])
            survey.answered_at, survey.satisfied, survey.comment = now, satisfied, form["comment"]
            self.outbox.add(s, [Event("feedback_received", form["ticket_id"], {
                "satisfied": satisfied, "comment": form["comment"], "round": survey.round},
                correlation_id=form["ticket_id"])])
            attempt.outcome = "counted"
            s.add(attempt)
            return {"ticket_id": form["ticket_id"], "round": survey.round, "satisfied": satisfied}

    def _refused(self, attempt: ReplyAttempt, outcome: str, exc: Exception) -> None:
        attempt.outcome, attempt.reason = outcome, str(exc)[:300]
        log.warning("reply refused (%s) from %s via %r for %r: %s", outcome, attempt.remote, attempt.gateway,
                    attempt.ticket_id, attempt.reason)
        with self.db.transaction() as s:
            s.add(attempt)

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


OPENAPI = document(NotifyService, "送到家 notify: residents' answers and the delivery log",
                   "Gateways forward residents' answers to the follow-up, signed (see /replies); staff read what "
                   "was sent to a ticket's resident with `Authorization: Bearer <JWT>`.")
