"""intake: the front door. Outside systems publish submissions; residents get a ticket."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import func, select

from services.common.database import Database
from services.common.envelope import MalformedEvent, read_data, utcnow
from services.common.http import HttpError, api, http, json_response, read_query
from services.common.inbox import Inbox
from services.common.messaging import on_event
from services.common.openapi import document
from services.common.outbox import Outbox
from services.common.staff import Forbidden
from services.common.tokens import StaffTokens

from . import access, attributes, events, open311, retention
from .clients import Open311Clients
from .contact_rules import mask_name, mask_phone
from .dependencies import CatalogueProvider, Places
from .duplicates import duplicate_of, window_start
from .intake import (InvalidRequest, category_for, channel_of, check_submitted_at, new_ticket, receipt,
                     ticket_merged, ticket_received)
from .models import ContactRead, InboxRow, OutboxRow, Ticket
from .open311 import open311_api
from .open311_forms import MAX_FIELD, parse_request_form, read_form
from .residents import find_or_add
from .schemas import (ContactQuery, ContactReadsQuery, ContactReadView, ContactView, StaffTicketView, Submission,
                      TicketStatusChange)
from .submissions import on_submission

# what a resident asking "where is my request?" needs; offers follow routing at once
LIFECYCLE_EVENTS = ("ticket_routed", "ticket_accepted", "ticket_in_progress", "ticket_resolved", "ticket_closed",
                    "ticket_reopened")


class IntakeService:
    name = "intake"

    db = Database()
    outbox = Outbox(OutboxRow, events.SCHEMAS)
    inbox = Inbox(InboxRow)
    catalogue = CatalogueProvider()
    places = Places()
    clients = Open311Clients()
    staff = StaffTokens()
    config = Config()
    http_error = staticmethod(open311.error_for_path)  # what the server says by itself under /open311

    @on_submission()
    def receive_submission(self, body: dict, message_id: str, reply_to: str | None, origin):
        """A request from an outside system; the same message id from the same publisher makes one ticket."""
        form = Submission().load(body)
        try:
            channel = channel_of(origin.routing_key, form["channel"])
            check_submitted_at(form["submitted_at"], utcnow())
            category = category_for(form["category"], self.catalogue)
            form["attributes"] = attributes.of_submission(form["attributes"], category)
            if self.places.village(form["village_code"]) is None:
                raise InvalidRequest("village_code", f"{form['village_code']!r} is not a village of Suzhou (NBS 2023)")
        except InvalidRequest as exc:  # never acceptable as it is: to the dead-letter queue with the reason
            raise MalformedEvent(str(exc)) from None
        with self.db.transaction() as s:
            ticket = s.scalar(select(Ticket).where(Ticket.publisher == origin.sender, Ticket.message_id == message_id))
            if ticket is None:  # else: the same message again; it already made its ticket
                ticket = self._open_ticket(s, form, category, publisher=origin.sender, message_id=message_id,
                                           channel=channel)
            if reply_to:  # the receipt again too: the publisher may have missed the first
                self.outbox.add(s, [receipt(ticket, message_id)], exchange="", routing_key=reply_to)

    @on_event("dispatch", *LIFECYCLE_EVENTS)
    def track_status(self, envelope: dict):
        change = read_data(envelope, TicketStatusChange)
        with self.db.transaction() as s:
            ticket = s.get(Ticket, envelope["ticket_id"])
            if ticket is None:
                return
            path = change["area_path"] or ()
            if ticket.village_code is None and len(path) >= 4:  # the county's dispatch centre placed it
                ticket.village_code = path[3]
            if change["ticket_version"] <= ticket.status_version:
                return  # older than what we know: arrival order is not event order
            if envelope["event"] == "ticket_routed":
                ticket.grid_code = path[4] if len(path) >= 5 else None
            ticket.status, ticket.status_version = change["state"], change["ticket_version"]
            ticket.assignee_id = change.get("assignee_id") or ticket.assignee_id
            ticket.assignee_name = change.get("assignee_name") or ticket.assignee_name
            ticket.expected_at = change.get("resolve_due_at") or ticket.expected_at
            ticket.closed_at = envelope["occurred_at"] if change["state"] == "closed" else None
            ticket.updated_at = envelope["occurred_at"]

    @timer(interval=3600, eager=True)
    def forget_old_contacts(self):
        """Retention, hourly: contact data of tickets closed more than RETENTION_DAYS ago is erased."""
        cutoff = utcnow() - timedelta(days=float(self.config.get("RETENTION_DAYS", 180)))
        with self.db.transaction() as s:
            return retention.forget(s, cutoff)

    def _open_ticket(self, s, form: dict, category, **ids) -> Ticket:
        """Record the request; a repeat of an open ticket joins it (ticket_merged) instead of opening one."""
        now = utcnow()
        resident = find_or_add(s, form["resident"], now)
        s.flush()
        original = form["village_code"] and duplicate_of(resident.id, form["description"], s.scalars(
            select(Ticket).where(Ticket.village_code == form["village_code"], Ticket.category == category.code,
                                 Ticket.merged_into.is_(None), Ticket.status != "closed",
                                 Ticket.received_at >= window_start(now))).all())
        ticket = Ticket(**new_ticket(form, category, resident.id, original, now=now, **ids),
                        attributes=json.dumps(form.get("attributes") or {}, ensure_ascii=False))
        s.add(ticket)
        s.flush()
        event = (ticket_merged(ticket, original, category, form["resident"]) if original
                 else ticket_received(ticket, category, form["resident"]))
        self.outbox.add(s, [event])
        return ticket

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
        f = open311.request_filters(request.args, utcnow())
        query = select(Ticket).where(Ticket.merged_into.is_(None))  # a repeat is shown as the ticket it joined
        if f["ids"]:
            query = query.where(Ticket.id.in_(f["ids"]))
        else:
            query = query.where(Ticket.submitted_at >= f["start"], Ticket.submitted_at <= f["end"])
            if f["codes"]:
                query = query.where(Ticket.category.in_(f["codes"]))
            if f["statuses"] == ["closed"]:
                query = query.where(Ticket.status == "closed")
            elif f["statuses"] == ["open"]:
                query = query.where(Ticket.status != "closed")
        with self.db.transaction() as s:
            tickets = s.scalars(query.order_by(Ticket.submitted_at.desc()).limit(open311.MAX_RESULTS)).all()
            docs = [self._open311_document(t, locale, request.client) for t in tickets]
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
        now, refused = utcnow(), None
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
    @api("The staff view of a ticket: where it stands, the resident's contact masked (see /contact)",
         answers={200: StaffTicketView})
    def get_ticket(self, request, ticket_no: str):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            ticket = self._ticket(s, ticket_no)
            access.may_read(who, ticket)
            return json_response({
                "ticket_no": ticket.id, "status": ticket.status, "merged_into": ticket.merged_into,
                "category": ticket.category, "channel": ticket.channel, "village_code": ticket.village_code,
                "county_code": ticket.county_code, "grid_code": ticket.grid_code,
                "submitted_at": ticket.submitted_at.isoformat(), "assignee_name": ticket.assignee_name,
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


OPENAPI = document(IntakeService, "送到家 intake: staff views",
                   "Tickets as staff see them, residents' contacts (every read recorded), and the record of "
                   "those reads. Every call but this document needs `Authorization: Bearer <JWT>`. "
                   "The public Open311 GeoReport v2 API is described by its own specification.")
