"""intake: the front door. Outside systems publish submissions; residents get a ticket."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from types import SimpleNamespace

from nameko.dependency_providers import Config
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from services.common.clock import Time
from services.common.database import Database
from services.common.envelope import MalformedEvent, read_data
from services.common.gateways import ForgedCall, Gateways, verify_gateway
from services.common.http import HttpError, api, http, json_response, read_json, read_query
from services.common.inbox import Inbox
from services.common.logs import LogContext
from services.common.messaging import on_event
from services.common.openapi import document
from services.common.operations import Operations
from services.common.outbox import Outbox
from services.common.schedule import timer
from services.common.staff import Forbidden, Unauthenticated
from services.common.tokens import StaffTokens

from . import access, events, open311, retention, tickets
from .clients import Open311Clients
from services.common.contacts import mask_name, mask_phone
from .dependencies import CatalogueProvider, Places
from .duplicates import window_start
from .models import CancelAttempt, ContactRead, GatewayCall, InboxRow, OutboxRow, Ticket
from .open311 import open311_api
from .open311_forms import MAX_FIELD, parse_request_form, read_form
from .residents import find_or_add
from .schemas import (ContactQuery, ContactReadsQuery, ContactReadView, ContactView, StaffTicketView, Submission,
                      TicketStatusChange, Withdrawal, WithdrawalView)
from .status import ENDED, LIFECYCLE_EVENTS, MIRRORED, apply_status
from .submissions import on_submission
from .tickets import InvalidRequest

log = logging.getLogger(__name__)
# the status mirror's columns (status.MIRRORED), read and written as prebuilt Core statements: five or six changes
# a ticket, and the ORM's identity map and unit of work cost more than the changes themselves
READ_MIRROR = select(Ticket.__table__.c.id, *(Ticket.__table__.c[name] for name in MIRRORED)).where(
    Ticket.__table__.c.id.in_(bindparam("ids", expanding=True)))
WRITE_MIRROR = update(Ticket.__table__).where(Ticket.__table__.c.id == bindparam("ticket")).values(
    {name: bindparam(f"new_{name}") for name in MIRRORED})
# a submission's (the acknowledgement's path), prebuilt: the ticket a publisher's message made already, and the
# open tickets of a category and village that a repeat may join (what tickets.original_of reads of them)
_tickets = Ticket.__table__
SEEN_SUBMISSION = select(_tickets.c.id).where(_tickets.c.publisher == bindparam("publisher"),
                                              _tickets.c.message_id == bindparam("message_id"))
OPEN_NEARBY = select(_tickets.c.id, _tickets.c.village_code, _tickets.c.category, _tickets.c.merged_into,
                     _tickets.c.status, _tickets.c.received_at, _tickets.c.resident_id, _tickets.c.description).where(
    _tickets.c.village_code == bindparam("village"), _tickets.c.category == bindparam("category"),
    _tickets.c.merged_into.is_(None), _tickets.c.status.not_in(ENDED), _tickets.c.received_at >= bindparam("since"))
ADD_TICKET = insert(_tickets)  # the row written as it is; the Ticket handed on is never added to a session
SUBMISSION = Submission()  # built once: a schema's construction cost more than loading a submission with it


class IntakeService(Operations):
    name = "intake"

    log_context = LogContext()
    db = Database()
    outbox = Outbox(OutboxRow, events.SCHEMAS, digests=events.DIGESTS)
    inbox = Inbox(InboxRow)
    catalogue = CatalogueProvider()
    places = Places()
    clients = Open311Clients()
    staff = StaffTokens()
    gateways = Gateways()
    clock = Time()
    config = Config()
    http_error = staticmethod(open311.error_for_path)  # what the server says by itself under /open311

    @on_submission()
    def receive_submission(self, body: dict, message_id: str, reply_to: str | None, origin):
        """A request from an outside system; the same message id from the same publisher makes one ticket."""
        form = SUBMISSION.load(body)
        try:
            channel, category = tickets.check_submission(form, origin.routing_key, self.catalogue, self.places,
                                                         self.clock.now())
        except InvalidRequest as exc:  # never acceptable as it is: to the dead-letter queue with the reason
            raise MalformedEvent(str(exc)) from None
        with self.db.transaction() as s:
            seen = s.execute(SEEN_SUBMISSION, {"publisher": origin.sender, "message_id": message_id}).scalar()
            if seen is None:
                ticket = self._open_ticket(s, form, category, publisher=origin.sender, message_id=message_id,
                                           channel=channel)
            else:  # the same message again; it already made its ticket
                ticket = s.get(Ticket, seen)
            if reply_to:  # the receipt again too: the publisher may have missed the first
                self.outbox.add(s, [tickets.receipt(ticket, message_id)], exchange="", routing_key=reply_to)

    @on_event("dispatch", *LIFECYCLE_EVENTS, digest="lifecycle")
    def track_status(self, envelopes: list[dict]):
        """The status mirror (status.py): where a ticket stands, as dispatch's events say; a relay round's events
        in one message and one transaction (dispatch's lifecycle digest: common/digests.py), in the order sent."""
        changes = [(envelope, read_data(envelope, TicketStatusChange)) for envelope in envelopes]
        with self.db.transaction() as s:
            ids = sorted({envelope["ticket_id"] for envelope in envelopes})
            before = {row.id: dict(row._mapping) for row in s.execute(READ_MIRROR, {"ids": ids})}
            mirrors = {ticket_id: SimpleNamespace(**row) for ticket_id, row in before.items()}
            for envelope, change in changes:
                ticket = mirrors.get(envelope["ticket_id"])
                if ticket is not None:
                    apply_status(ticket, envelope["event"], change, envelope["occurred_at"])
            changed = [{"ticket": ticket_id, **{f"new_{name}": getattr(m, name) for name in MIRRORED}}
                       for ticket_id, m in mirrors.items() if vars(m) != before[ticket_id]]
            if changed:
                s.execute(WRITE_MIRROR, changed)

    @timer(interval=3600, eager=True)
    def forget_old_contacts(self):
        """Retention, hourly: contact data of tickets closed (or cancelled) more than RETENTION_DAYS ago is
        erased."""
        now = self.clock.now()
        cutoff = now - timedelta(days=float(self.config.get("RETENTION_DAYS", 180)))
        with self.db.transaction() as s:
            return retention.forget(s, cutoff, now)

    def _open_ticket(self, s, form: dict, category, **ids) -> Ticket:
        """Record the request; a repeat of an open ticket joins it (ticket_merged) instead of opening one."""
        now = self.clock.now()
        resident_id = find_or_add(s, form["resident"], now)
        candidates = s.execute(OPEN_NEARBY, {"village": form["village_code"], "category": category.code,
                                             "since": window_start(now)}).all() if form["village_code"] else []
        original = tickets.original_of(form, category, resident_id, candidates, now)
        values = {**tickets.new_ticket(form, category, resident_id, original, now=now, **ids),
                  "attributes": json.dumps(form.get("attributes") or {}, ensure_ascii=False)}
        s.execute(ADD_TICKET, values)
        ticket = Ticket(**values)
        event = (tickets.ticket_merged(ticket, original, category, form["resident"]) if original
                 else tickets.ticket_received(ticket, category, form["resident"]))
        self.outbox.add(s, [event])
        return ticket

    # --- residents, through a gateway -----------------------------------------------------

    @http("POST", "/tickets/<string:ticket_no>/cancel")
    @api("A resident withdraws their request (撤单), forwarded and signed by a gateway; dispatch cancels it",
         auth="gateway", body=Withdrawal, answers={202: WithdrawalView, 409: None})
    def cancel(self, request, ticket_no: str):
        """Taken only when a gateway we trust signed it (services/common/gateways.py), the call is new,
        its body names the ticket the path names (the signature covers the body alone), and the sender is
        the ticket's contact (its phone or email; a refusal names no-one). A repeat merged into another
        ticket withdraws nothing (409, naming that ticket); nor does a ticket resolved, closed or cancelled
        (409). Otherwise intake publishes `ticket_cancelled` (by: resident) and answers 202: dispatch
        cancels the case, and the ticket's status follows when it has. Every attempt is recorded."""
        now, raw = self.clock.now(), request.get_data(cache=True)
        attempt = CancelAttempt(at=now, remote=(request.remote_addr or "")[:64], ticket_id=ticket_no[:40],
                                gateway=(request.headers.get("X-Sdj-Gateway") or "")[:40])
        try:
            gateway, signature = verify_gateway(request.headers, raw, self.gateways, now)
            self._first_call(gateway, signature, now)
            form = read_json(request, Withdrawal())
            answer = self._withdraw(ticket_no, form, now, attempt)
        except ForgedCall as exc:
            self._refused(attempt, "forged", exc)
            raise Unauthenticated(str(exc)) from None
        except tickets.NotTheResident as exc:
            self._refused(attempt, "refused", exc)
            raise Forbidden(str(exc)) from None
        except tickets.CannotWithdraw as exc:
            self._refused(attempt, "unexpected", exc)
            raise HttpError(409, str(exc)) from None
        except HttpError as exc:
            self._refused(attempt, "unknown" if exc.status == 404 else "invalid", exc)
            raise
        return json_response(answer, 202)

    def _first_call(self, gateway: str, signature: str, now) -> None:
        """Remember an authentic call; the same signature a second time is a replay."""
        try:
            with self.db.transaction() as s:
                s.add(GatewayCall(signature=signature, gateway=gateway, at=now))
        except IntegrityError:
            raise ForgedCall("X-Sdj-Signature: this call was made before (a replay)") from None

    def _withdraw(self, ticket_no: str, form: dict, now, attempt: CancelAttempt) -> dict:
        if form["ticket_no"] != ticket_no:  # what the gateway signed is the body: it must name this ticket
            raise HttpError(400, "invalid fields", {"ticket_no": [
                f"{form['ticket_no'][:40]!r}, but the path names {ticket_no[:40]!r}: a signed call is for one ticket"]})
        with self.db.transaction() as s:
            ticket = self._ticket(s, ticket_no)
            withdrawn = tickets.withdraw(ticket, form["sender"], form["reason"], now)
            self.outbox.add(s, withdrawn)
            attempt.outcome = "requested" if withdrawn else "again"
            s.add(attempt)
            return {"ticket_no": ticket.id, "status": "cancellation requested"}

    def _refused(self, attempt: CancelAttempt, outcome: str, exc: Exception) -> None:
        attempt.outcome, attempt.reason = outcome, str(getattr(exc, "message", exc))[:300]
        log.warning("withdrawal refused (%s) from %s via %r for %r: %s", outcome, attempt.remote, attempt.gateway,
                    attempt.ticket_id, attempt.reason)
        with self.db.transaction() as s:
            s.add(attempt)

    # --- Open311 GeoReport v2 -------------------------------------------------------------

    @http("GET", "/open311/v2/discovery.<string:fmt>")
    @open311_api
    def open311_discovery(self, request, fmt):
        base = request.host_url.rstrip("/") + "/open311/v2"
        return open311.answer(open311.check_format(fmt), "discovery", open311.discovery(base, self.catalogue))

    @http("GET", "/open311/v2/services.<string:fmt>")
    @open311_api
    def open311_services(self, request, fmt):
        locale = open311.check_locale(request.args.get("locale"))
        return open311.answer(open311.check_format(fmt), "services",
                              open311.service_list(self.catalogue, locale))

    @http("GET", "/open311/v2/services/<string:code>.<string:fmt>")
    @open311_api
    def open311_service_definition(self, request, code, fmt):
        fmt = open311.check_format(fmt)
        return open311.answer(fmt, "service_definition", open311.service_definition(self.catalogue, code))

    @http("POST", "/open311/v2/requests.<string:fmt>")
    @open311_api
    def open311_post_request(self, request, fmt):
        fmt = open311.check_format(fmt)
        form = read_form(request)
        client = self.clients.admit(request.remote_addr, form.get("api_key"), required=True)
        form = parse_request_form(form, self.catalogue, self.places)
        with self.db.transaction() as s:
            ticket = self._open_ticket(s, form, form["category"], publisher=f"open311:{client.name}",
                                       message_id=f"open311:{uuid.uuid4()}", channel="open311",
                                       lat=form["lat"], long=form["long"], media_url=form["media_url"])
            token, number = ticket.message_id, ticket.merged_into or ticket.id
            notice = (f"该问题已有工单 {number} 在办理，您的反映已并入该工单。" if ticket.merged_into
                      else f"已受理，工单号 {number}。请保留工单号以便查询。")
        return open311.answer(fmt, "service_requests", [{
            "service_request_id": number, "token": token, "account_id": None, "service_notice": notice}])

    @http("GET", "/open311/v2/requests.<string:fmt>")
    @open311_api
    def open311_requests(self, request, fmt):
        fmt = open311.check_format(fmt)
        locale = open311.check_locale(request.args.get("locale"))
        f = open311.request_filters(request.args, self.clock.now())
        query = select(Ticket).where(Ticket.merged_into.is_(None))  # a repeat is shown as the ticket it joined
        if f["ids"]:
            query = query.where(Ticket.id.in_(f["ids"]))
        else:
            query = query.where(Ticket.submitted_at >= f["start"], Ticket.submitted_at <= f["end"])
            if f["codes"]:
                query = query.where(Ticket.category.in_(f["codes"]))
            if f["statuses"] == ["closed"]:  # cancelled requests are closed in Open311's words
                query = query.where(Ticket.status.in_(ENDED))
            elif f["statuses"] == ["open"]:
                query = query.where(Ticket.status.not_in(ENDED))
        with self.db.transaction() as s:
            found = s.scalars(query.order_by(Ticket.submitted_at.desc()).limit(open311.MAX_RESULTS)).all()
            docs = [self._open311_document(t, locale, request.client) for t in found]
        return open311.answer(fmt, "service_requests", docs)

    @http("GET", "/open311/v2/requests/<string:request_id>.<string:fmt>")
    @open311_api
    def open311_request(self, request, request_id, fmt):
        fmt = open311.check_format(fmt)
        locale = open311.check_locale(request.args.get("locale"))
        with self.db.transaction() as s:
            ticket = s.get(Ticket, request_id[:MAX_FIELD])
            if ticket is None:
                raise open311.Open311Error(404, f"service_request_id: {request_id[:40]!r} not found")
            if ticket.merged_into:
                ticket = s.get(Ticket, ticket.merged_into)
            doc = self._open311_document(ticket, locale, request.client)
        return open311.answer(fmt, "service_requests", [doc])

    @http("GET", "/open311/v2/tokens/<string:token>.<string:fmt>")
    @open311_api
    def open311_token(self, request, token, fmt):
        fmt = open311.check_format(fmt)
        with self.db.transaction() as s:
            ticket_id = s.scalar(select(func.coalesce(Ticket.merged_into, Ticket.id)).where(
                Ticket.channel == "open311", Ticket.message_id == token[:MAX_FIELD]))
        if ticket_id is None:
            raise open311.Open311Error(404, f"token: {token[:60]!r} not found")
        return open311.answer(fmt, "service_requests", [{"token": token, "service_request_id": ticket_id}])

    def _open311_document(self, ticket: Ticket, locale: str, client) -> dict:
        village = self.places.village(ticket.village_code) if ticket.village_code else None
        county = self.places.county(ticket.county_code)
        place = village.full_name if village else (county.name if county else None)
        return open311.request_document(ticket, self.catalogue.get(ticket.category), locale, place,
                                        sees_more=bool(client and client.sees_more))

    # --- staff ----------------------------------------------------------------------------

    @http("GET", "/tickets/<string:ticket_no>/contact")
    @api("The resident's full contact, to call them back: recorded, with the reason, whether given or not",
         query=ContactQuery, answers={200: ContactView})
    def read_contact(self, request, ticket_no: str):
        """Workers and dispatchers of the ticket's area, while it is open (and a few days after).
        Every read, and every refused read, is recorded with the token's subject."""
        who = self.staff.of(request)
        reason = read_query(request, ContactQuery())["reason"].strip()
        if not reason:
            raise HttpError(400, "invalid query parameters", {"reason": ["say why (e.g. 回访, 上门)"]})
        now, refused = self.clock.now(), None
        with self.db.transaction() as s:
            ticket = self._ticket(s, ticket_no)
            try:
                access.may_read_contact(who, ticket, now, float(self.config.get("CONTACT_DAYS_AFTER_CLOSE", 7)))
            except Forbidden as exc:
                refused = exc
            s.add(ContactRead(ticket_id=ticket.id, staff_id=who.subject, role=who.role, reason=reason[:200],
                              read_at=now, granted=refused is None, refusal=refused and str(refused)[:200],
                              area_code=access.location(ticket)))
            contact = {"ticket_no": ticket.id, "name": ticket.contact_name, "phone": ticket.contact_phone,
                       "email": ticket.contact_email}
        if refused is not None:
            raise refused
        return json_response(contact)

    @http("GET", "/tickets/<string:ticket_no>")
    @api("The staff view of a ticket: where it stands, what was asked (description, address, the category's "
         "attributes), its village by name; the resident's contact masked (see /contact)",
         answers={200: StaffTicketView})
    def get_ticket(self, request, ticket_no: str):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            ticket = self._ticket(s, ticket_no)
            access.may_read(who, ticket)
            village = self.places.village(ticket.village_code) if ticket.village_code else None
            return json_response({
                "ticket_no": ticket.id, "status": ticket.status, "status_note": open311.status_note(ticket),
                "merged_into": ticket.merged_into,
                "category": ticket.category, "channel": ticket.channel, "village_code": ticket.village_code,
                "village_name": village.full_name if village else None,
                "county_code": ticket.county_code, "grid_code": ticket.grid_code,
                "address": ticket.address or "", "description": ticket.description or "",
                "attributes": json.loads(ticket.attributes or "{}"),
                "submitted_at": ticket.submitted_at.isoformat(), "received_at": ticket.received_at.isoformat(),
                "assignee_name": ticket.assignee_name,
                "resident_phone": mask_phone(ticket.contact_phone), "resident_name": mask_name(ticket.contact_name),
            })

    @http("GET", "/contact-reads")
    @api("Who read (or tried to read) residents' contacts in the caller's area, newest first",
         query=ContactReadsQuery, answers={200: ContactReadView}, many=True)
    def contact_reads(self, request):
        who = self.staff.of(request)
        access.may_audit(who)
        q = read_query(request, ContactReadsQuery())
        query = select(ContactRead).where(ContactRead.in_area(who.area))
        for column, key in ((ContactRead.ticket_id, "ticket_no"), (ContactRead.staff_id, "staff_id"),
                            (ContactRead.granted, "granted")):
            if key in q:
                query = query.where(column == q[key])
        if "since" in q:
            query = query.where(ContactRead.read_at >= q["since"])
        if "until" in q:
            query = query.where(ContactRead.read_at <= q["until"])
        with self.db.transaction() as s:
            rows = s.scalars(query.order_by(ContactRead.id.desc()).limit(q["limit"])).all()
            return json_response([{"ticket_no": r.ticket_id, "staff_id": r.staff_id, "role": r.role,
                                   "reason": r.reason, "read_at": r.read_at.isoformat(), "granted": r.granted,
                                   "refusal": r.refusal, "area_code": r.area_code} for r in rows])

    @http("GET", "/openapi.json")
    @api("This API, described (OpenAPI 3.1)", answers={200: {"type": "object"}}, auth=None)
    def openapi(self, request):
        return json_response(OPENAPI)

    def _ticket(self, s, ticket_no: str) -> Ticket:
        ticket = s.get(Ticket, ticket_no[:40])
        if ticket is None:
            raise HttpError(404, f"ticket {ticket_no[:40]} not found")
        return ticket


OPENAPI = document(IntakeService, "送到家 intake: staff views and residents' withdrawals",
                   "Tickets as staff see them, residents' contacts (every read recorded), and the record of "
                   "those reads: these need `Authorization: Bearer <JWT>`. Gateways forward a resident's "
                   "withdrawal of their request, signed (see /tickets/{ticket_no}/cancel). "
                   "The public Open311 GeoReport v2 API is described by its own specification.")
