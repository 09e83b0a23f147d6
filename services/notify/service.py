"""notify: tells residents what happens to their request, and asks how it went (回访).

The follow-up cannot be skipped: a resolved ticket's survey is a durable timer (a `Survey` row, see
models.py) that sends the survey follow_up_hours after resolution, a reminder REMIND_AFTER_HOURS later,
and GIVE_UP_AFTER_HOURS after that publishes `survey_unanswered` (dispatch then has a village cadre
call). Each step marks the row and writes its delivery or event in one transaction: it fires once,
whichever instance claims it (`claim_due`), and after a restart. A ticket that is closed, reopened or
cancelled stops its pending survey.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from nameko.dependency_providers import Config
from sqlalchemy import bindparam, event as sa_event, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.common.clock import Time
from services.common.database import Database
from services.common.envelope import Event, read_data, utcnow
from services.common.http import HttpError, api, http, json_response, read_json
from services.common.inbox import Inbox
from services.common.logs import LogContext
from services.common.messaging import on_event
from services.common.openapi import document
from services.common.operations import Operations
from services.common.outbox import Outbox
from services.common.schedule import TICK_SECONDS, claim_due, timer
from services.common.staff import STAFF, Forbidden, Unauthenticated
from services.common.tokens import StaffTokens

from . import replies, retention
from .courier import Courier
from .delivery_rules import first_channel, is_urgent
from services.common.gateways import ForgedCall, Gateways, verify_gateway
from .events import DIGESTS, SCHEMAS
from .models import Contact, Delivery, GatewayCall, InboxRow, OutboxRow, ReplyAttempt, Survey
from .schemas import (DeliveryView, Reply, ReplyView, TicketCancelledIn, TicketEscalatedIn, TicketMergedIn,
                      TicketOutcomeIn, TicketReceivedIn, TicketResolvedIn)
from .templates import DEFAULT_LOCALE, render

log = logging.getLogger(__name__)

STAFF_MAIL = "<subject>@staff.songdaojia.local"  # config STAFF_MAIL: how a staff member's id becomes an address
_STAFF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # what may stand for <subject> in an address
BEIJING = timezone(timedelta(hours=8))
DELIVERY_INSERT = insert(Delivery.__table__).returning(Delivery.__table__.c.id)
CONTACT_COLUMNS = ("ticket_id", "name", "phone", "email", "locale", "category_zh", "category_en", "area_code",
                   "closed_at", "outcome_version")
# a ticket's contact, written, read and changed on the hot paths as a row (the ORM's get and flush cost more)
_contacts = Contact.__table__
CONTACT_INSERT = insert(_contacts)
READ_CONTACT = select(_contacts).where(_contacts.c.ticket_id == bindparam("ticket"))
WRITE_OUTCOME = (update(_contacts).where(_contacts.c.ticket_id == bindparam("ticket"))
                 .values(closed_at=bindparam("closed_at"), outcome_version=bindparam("outcome_version")))
_surveys = Survey.__table__
# a ticket's pending surveys closed (it moved on): all of them, or those about resolutions before a version
STOP_SURVEYS = (update(_surveys).where(_surveys.c.ticket_id == bindparam("ticket"), _surveys.c.answered_at.is_(None),
                                       _surveys.c.closed_at.is_(None)).values(closed_at=bindparam("now"), due_at=None))
STOP_SURVEYS_BEFORE = STOP_SURVEYS.where(or_(_surveys.c.ticket_version.is_(None),
                                             _surveys.c.ticket_version < bindparam("version")))


class NotifyService(Operations):
    name = "notify"

    log_context = LogContext()
    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS, digests=DIGESTS)
    inbox = Inbox(InboxRow)
    courier = Courier()
    staff = StaffTokens()
    gateways = Gateways()
    config = Config()
    clock = Time()

    @on_event("intake", "ticket_received", urgent=True)  # first, whatever else waits (common/lanes.py)
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
            # the inbox guarantees this runs once per ticket; a Core insert (the acknowledgement's path is hot)
            s.execute(CONTACT_INSERT, {c: getattr(contact, c) for c in CONTACT_COLUMNS})
            self._queue(s, f"{envelope['event_id']}.ack", contact, "ack", category=_category_name(contact),
                        accept_within=category["accept_minutes"])

    @on_event("intake", "ticket_merged", urgent=True)
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
            # the reporter is not stored: the ticket keeps its own contact
            self._queue(s, f"{envelope['event_id']}.merged", reporter, "merged")

    @on_event("dispatch", "ticket_resolved", digest="lifecycle")
    def ask_for_follow_up(self, envelopes: list[dict]):
        """Not asked now: the survey is due follow_up_hours after resolution (sent by `chase_follow_ups`). A relay
        round's resolutions in one message and one transaction (dispatch's lifecycle digest: common/digests.py)."""
        resolutions = [(envelope, read_data(envelope, TicketResolvedIn)) for envelope in envelopes]
        now = self.clock.now()
        with self.db.transaction() as s:
            for envelope, data in resolutions:
                if self.inbox.first_delivery(s, envelope):
                    self._survey_later(s, envelope, data, now)

    def _survey_later(self, s, envelope: dict, data: dict, now: datetime) -> None:
        contact = self._contact(s, envelope["ticket_id"])
        version = data["ticket_version"]
        self._stop_surveys(s, contact.ticket_id, version, now)  # an earlier round still waiting is stale
        rounds = s.scalars(select(Survey.round).where(Survey.ticket_id == contact.ticket_id)).all()
        resolved_at = (data["resolved_at"] or envelope["occurred_at"]).astimezone(timezone.utc)
        survey = Survey(ticket_id=contact.ticket_id, round=max(rounds, default=0) + 1,
                        code=replies.new_survey_code(), ticket_version=version,
                        resolved_by=(data["assignee_name"] or "")[:50] or None,
                        due_at=resolved_at + self.clock.span(max(data["follow_up_hours"], 0) * 60))
        if _older(version, contact.outcome_version):  # closed, reopened or cancelled since: never asked
            survey.due_at, survey.closed_at = None, now
        s.add(survey)
        s.flush()  # written now: a later resolution in the same round stops it with a Core update, which does not flush

    @timer(interval=TICK_SECONDS)
    def chase_follow_ups(self):
        """Take each survey whose next step is due one step on: ask, remind, give up. Not while an acknowledgement
        is in hand (a surge): a survey waits a tick (PATIENCE seconds at most), a resident waiting to hear does
        not."""
        if not self.courier.follow_ups_may_run():
            return 0
        now = self.clock.now()
        remind_after = self.clock.span(float(self.config.get("REMIND_AFTER_HOURS", 24)) * 60)
        give_up_after = self.clock.span(float(self.config.get("GIVE_UP_AFTER_HOURS", 24)) * 60)
        with self.db.transaction() as s:
            due = claim_due(s, select(Survey).where(
                Survey.due_at <= now, Survey.answered_at.is_(None), Survey.closed_at.is_(None),
                Survey.given_up_at.is_(None)).order_by(Survey.due_at, Survey.id))
            for survey in due:
                self._follow_up_step(s, survey, now, remind_after, give_up_after)
            return len(due)

    def _follow_up_step(self, s, survey: Survey, now: datetime, remind_after: timedelta,
                        give_up_after: timedelta) -> None:
        contact = _read_contact(s, survey.ticket_id)
        key = f"survey-{survey.ticket_id}-{survey.round}"
        if survey.asked_at is None:
            survey.asked_at, survey.due_at = now, now + remind_after
            if contact is not None:
                self._queue(s, f"{key}.survey", contact, "survey", resolved_by=survey.resolved_by,
                            survey_code=survey.code)
        elif survey.reminded_at is None:
            survey.reminded_at, survey.due_at = now, now + give_up_after
            if contact is not None:
                self._queue(s, f"{key}.reminder", contact, "survey_reminder", survey_code=survey.code)
        else:
            survey.given_up_at, survey.due_at = now, None
            self.outbox.add(s, [Event("survey_unanswered", survey.ticket_id, {
                "round": survey.round, "asked_at": _iso(survey.asked_at), "reminded_at": _iso(survey.reminded_at)},
                correlation_id=survey.ticket_id, occurred_at=now)])

    @on_event("dispatch", "ticket_closed", "ticket_reopened", digest="lifecycle")
    def tell_outcome(self, envelopes: list[dict]):
        """Closed or reopened: the resident hears it. A relay round's outcomes in one message and one transaction
        (dispatch's lifecycle digest), in the order dispatch sent them."""
        outcomes = [(envelope, read_data(envelope, TicketOutcomeIn)) for envelope in envelopes]
        with self.db.transaction() as s:
            for envelope, data in outcomes:
                if self.inbox.first_delivery(s, envelope):
                    self._tell_outcome(s, envelope, data)

    def _tell_outcome(self, s, envelope: dict, data: dict) -> None:
        template = {"ticket_closed": "closed", "ticket_reopened": "reopened"}[envelope["event"]]
        contact = self._contact(s, envelope["ticket_id"])
        self._moved_on(s, contact, data["ticket_version"],
                       closed_at=envelope["occurred_at"] if template == "closed" else None)
        self._queue(s, f"{envelope['event_id']}.{template}", contact, template, how=data["how"])

    @on_event("dispatch", "ticket_cancelled")
    def tell_cancelled(self, envelope):
        """Withdrawn by the resident (confirmed) or cancelled by a dispatcher (with the reason)."""
        data = read_data(envelope, TicketCancelledIn)
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            contact = self._contact(s, envelope["ticket_id"])
            # out of the loop: retention counts from here
            self._moved_on(s, contact, data["ticket_version"], closed_at=envelope["occurred_at"])
            self._queue(s, f"{envelope['event_id']}.cancelled", contact, "cancelled", by=data["by"],
                        cancel_reason=None if data["by"] == "resident" else data["reason"])

    @on_event("dispatch", "ticket_escalated")
    def tell_escalated(self, envelope):
        """The resident hears "已督办" once per level; the new responsible person is written to (email only)."""
        data = read_data(envelope, TicketEscalatedIn)
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            contact = self._contact(s, envelope["ticket_id"])
            once = f"escalated-{contact.ticket_id}-{data['level']}.escalated"
            if s.scalar(select(Delivery.id).where(Delivery.message_id == once)) is None:
                self._queue(s, once, contact, "escalated", level_name=data["level_name"])
            self._tell_staff(s, envelope, contact, data)

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
                                   "error": d.error, "reference": d.reference, "answer": d.answer} for d in rows])

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
            survey = s.scalar(select(Survey).where(Survey.ticket_id == form["ticket_id"], Survey.asked_at.is_not(None),
                                                   Survey.answered_at.is_(None))
                              .order_by(Survey.round.desc()).limit(1))
            if survey is None or survey.closed_at is not None:
                raise HttpError(409, f"ticket {form['ticket_id']} has no follow-up waiting for an answer")
            if survey.given_up_at is not None:  # survey_unanswered is out: the 回访 call decides now
                raise HttpError(409, f"ticket {form['ticket_id']}: the follow-up went unanswered; "
                                     "a call from the village decides now")
            replies.check_reply(survey, self._contact(s, survey.ticket_id), form["survey_code"], form["sender"])
            survey.answered_at, survey.satisfied, survey.comment = now, satisfied, form["comment"]
            survey.due_at = None  # no reminder, no giving up
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

    def _contact(self, s, ticket_id) -> SimpleNamespace:
        contact = _read_contact(s, ticket_id)
        if contact is None:  # ticket_received not applied yet: retry later
            raise LookupError(f"no contact for ticket {ticket_id} yet")
        return contact

    def _moved_on(self, s, contact: SimpleNamespace, version: int | None, closed_at: datetime | None) -> None:
        """Closed (`closed_at`), reopened (None) or cancelled: stored with the contact; and no survey, reminder
        or giving up for resolutions before `version`."""
        if version is not None:
            contact.outcome_version = max(contact.outcome_version or 0, version)
        contact.closed_at = closed_at
        s.execute(WRITE_OUTCOME, {"ticket": contact.ticket_id, "closed_at": closed_at,
                                  "outcome_version": contact.outcome_version})
        self._stop_surveys(s, contact.ticket_id, version, self.clock.now())

    def _stop_surveys(self, s, ticket_id: str, version: int | None, now: datetime) -> None:
        """Close the ticket's pending surveys about resolutions older than `version` (all when None). A prebuilt
        Core statement: no survey is loaded in the session by then, so there is nothing for the ORM to keep in
        step (its "fetch" sync had cost a select per call)."""
        if version is None:
            s.execute(STOP_SURVEYS, {"ticket": ticket_id, "now": now})
        else:
            s.execute(STOP_SURVEYS_BEFORE, {"ticket": ticket_id, "now": now, "version": version})

    def _tell_staff(self, s, envelope, contact: Contact, data: dict) -> None:
        """Write to whoever is responsible now: the new assignee (reassign) or the supervisor (supervise)."""
        ticket = contact.ticket_id
        if data["mode"] == "reassign":
            who, name = data["assignee_id"], data["assignee_name"]
        else:
            who, name = data["supervisor_id"], data["supervisor_name"]
        if "email" not in self.courier.channels:
            log.warning("ticket %s escalated to level %s: %s not told, staff are reached by email only "
                        "(the channels are %s)", ticket, data["level"], who or "nobody named",
                        ", ".join(self.courier.channels))
            return
        address = staff_address(str(self.config.get("STAFF_MAIL") or STAFF_MAIL), who)
        if address is None:
            log.warning("ticket %s escalated to level %s (%s): no staff address for %r", ticket, data["level"],
                        data["mode"], who)
            return
        due = data["due_at"] and data["due_at"].astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
        subject, body = render("staff_escalated", DEFAULT_LOCALE, ticket_no=ticket, category=contact.category_zh,
                               level_name=data["level_name"], what=data["what"], mode=data["mode"], staff_name=name,
                               assignee_name=None if data["mode"] == "reassign" else data["assignee_name"],
                               due_local=due)
        self._deliver(s, f"{envelope['event_id']}.staff_escalated", ticket, "staff_escalated", "email", address,
                      subject, body)

    def _queue(self, s, message_id: str, contact: Contact, template: str, **fields) -> None:
        """A message to the ticket's resident, sent by the courier once this transaction commits: on the first
        of the channels (CHANNELS) the resident has an address for; should it fail there, the courier goes
        on with the next one (delivery_rules.py), to the addresses kept with the delivery."""
        reachable = {"phone": contact.phone, "email": contact.email}
        chosen = first_channel(self.courier.channels, reachable)
        if chosen is None:
            return  # this resident cannot be reached on any of our channels; the hotline calls back
        subject, body = render(template, contact.locale, ticket_no=contact.ticket_id,
                               resident_name=contact.name, **fields)
        self._deliver(s, message_id, contact.ticket_id, template, *chosen, subject, body,
                      contact=json.dumps(reachable, ensure_ascii=False))

    def _deliver(self, s, message_id: str, ticket_id: str, template: str, channel: str, address: str,
                 subject: str, body: str, contact: str | None = None) -> None:
        now = self.clock.now()
        row = {"message_id": message_id, "ticket_id": ticket_id, "template": template, "channel": channel,
               "address": address, "subject": subject, "body": body, "state": "pending", "attempts": 0,
               "next_attempt_at": now, "created_at": now, "contact": contact, "urgent": is_urgent(template),
               "first_tried_at": None, "fallback_of": None, "claimed_by": None, "claimed_until": None}
        claim = self.courier.claimed_at_once() if row["urgent"] else None
        if claim is not None:  # its slot is held until the transaction ends
            sa_event.listen(s, "after_soft_rollback", lambda _s, _t: self.courier.not_claimed(), once=True)
        row.update(claim or {})  # an acknowledgement: written claimed and sent once committed, no claim round
        # a Core insert: the ORM's unit of work cost more than the rest of writing a delivery
        delivery = SimpleNamespace(id=s.execute(DELIVERY_INSERT, row).scalar_one(), **row)
        if claim is not None:
            sa_event.listen(s, "after_commit", lambda _s: self.courier.send_claimed(delivery), once=True)
        else:
            sa_event.listen(s, "after_commit", lambda _s: self.courier.wake(), once=True)


def staff_address(pattern: str, subject: str | None) -> str | None:
    """The mail address of staff member `subject` (config STAFF_MAIL, e.g. `<subject>@staff.example.cn`)."""
    if not subject or not _STAFF_ID.match(subject):
        return None
    return pattern.replace("<subject>", subject).replace("{subject}", subject)


def _older(version: int | None, than: int | None) -> bool:
    return version is not None and than is not None and version < than


def _iso(at: datetime) -> str:
    """SQLite gives back naive datetimes: every time stored here is UTC."""
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()


def _category_name(contact: Contact) -> str:
    return contact.category_en if contact.locale == "en" and contact.category_en else contact.category_zh


OPENAPI = document(NotifyService, "送到家 notify: residents' answers and the delivery log",
                   "Gateways forward residents' answers to the follow-up, signed (see /replies); staff read what "
                   "was sent to a ticket's resident with `Authorization: Bearer <JWT>`.")


def _read_contact(s, ticket_id: str) -> SimpleNamespace | None:
    """A ticket's contact (the columns of models.Contact as attributes), or None."""
    row = s.execute(READ_CONTACT, {"ticket": ticket_id}).mappings().first()
    return None if row is None else SimpleNamespace(**row)
