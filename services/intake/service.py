"""intake: the front door. Outside systems publish submissions; residents get a ticket."""
from __future__ import annotations

import json
import uuid

from nameko.web.handlers import http
from sqlalchemy import func, select

from services.common.database import Database
from services.common.http import HttpError, json_api, json_response
from services.common.envelope import MalformedEvent, read_data, utcnow
from services.common.inbox import Inbox
from services.common.messaging import on_event
from services.common.outbox import Outbox

from . import events, open311
from .dependencies import CatalogueProvider, Open311Keys, Places
from .open311 import open311_api
from .open311_forms import attributes_of_submission, parse_request_form
from .duplicates import duplicate_of, window_start
from .intake import category_for, new_ticket_number, receipt, ticket_merged, ticket_received
from .models import ContactRead, InboxRow, OutboxRow, Resident, Ticket
from .residents import find_or_add, mask_name, mask_phone
from .schemas import Submission, TicketStatusChange
from .submissions import on_submission

MAX_FORM = 64 * 1024
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
    api_keys = Open311Keys()

    @on_submission()
    def receive_submission(self, body: dict, message_id: str, reply_to: str | None = None):
        form = Submission().load(body)
        category = category_for(form["category"], self.catalogue)
        form["attributes"] = attributes_of_submission(form["attributes"], category)
        if self.places.village(form["village_code"]) is None:
            raise MalformedEvent(f"village_code: {form['village_code']!r} is not a village of Suzhou (NBS 2023)")
        with self.db.transaction() as s:
            ticket = s.scalar(select(Ticket).where(Ticket.message_id == message_id))
            if ticket is None:  # else: the same message again; it already made its ticket
                ticket = self._open_ticket(s, form, category, message_id, channel=form["channel"])
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
            ticket.status, ticket.status_version = change["state"], change["ticket_version"]
            ticket.assignee_name = change.get("assignee_name") or ticket.assignee_name
            ticket.expected_at = change.get("resolve_due_at") or ticket.expected_at
            ticket.updated_at = envelope["occurred_at"]

    def _open_ticket(self, s, form: dict, category, message_id: str, channel: str, **open311_fields) -> Ticket:
        """Record the request; a repeat of an open ticket joins it (ticket_merged) instead of opening one."""
        now = utcnow()
        resident = find_or_add(s, form["resident"], now)
        s.flush()
        original = form["village_code"] and duplicate_of(resident.id, form["description"], s.scalars(
            select(Ticket).where(Ticket.village_code == form["village_code"], Ticket.category == category.code,
                                 Ticket.merged_into.is_(None), Ticket.status != "closed",
                                 Ticket.received_at >= window_start(now))).all())
        ticket = Ticket(id=new_ticket_number(now), message_id=message_id, channel=channel,
                        category=category.code, village_code=form["village_code"],
                        county_code=form.get("county_code") or form["village_code"][:6],
                        address=form["address"], description=form["description"],
                        resident_id=resident.id, submitted_at=form.get("submitted_at") or now,
                        received_at=now, attributes=json.dumps(form.get("attributes") or {},
                                                               ensure_ascii=False),
                        status="merged" if original else "received",
                        merged_into=original.id if original else None, **open311_fields)
        s.add(ticket)
        s.flush()
        if original:
            self.outbox.add(s, [ticket_merged(ticket, original, resident, category, form["resident"])])
        else:
            self.outbox.add(s, [ticket_received(ticket, resident, category, form["resident"])])
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
        if request.content_length and request.content_length > MAX_FORM:
            raise open311.Open311Error(400, f"body: larger than {MAX_FORM} bytes")
        if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            raise open311.Open311Error(400, f"content type: {request.mimetype or 'none'!r}; "
                                            "send application/x-www-form-urlencoded")
        form = parse_request_form(request.form, self.catalogue, self.places, self.api_keys)
        with self.db.transaction() as s:
            ticket = self._open_ticket(s, form, form["category"], f"open311:{uuid.uuid4()}", channel="open311",
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
            docs = [open311.request_document(t, self.catalogue.get(t.category), locale) for t in tickets]
        return open311.answer(fmt, "service_requests", docs)

    @http("GET", "/open311/v2/requests/<string:request_id>.<string:fmt>")
    @open311_api
    def open311_request(self, request, request_id, fmt):
        fmt = open311.check_format(fmt)
        locale = open311.check_locale(request.args.get("locale"))
        with self.db.transaction() as s:
            ticket = s.get(Ticket, request_id)
            if ticket is None:
                raise open311.Open311Error(404, f"service_request_id: {request_id!r} not found")
            if ticket.merged_into:
                ticket = s.get(Ticket, ticket.merged_into)
            doc = open311.request_document(ticket, self.catalogue.get(ticket.category), locale)
        return open311.answer(fmt, "service_requests", [doc])

    @http("GET", "/open311/v2/tokens/<string:token>.<string:fmt>")
    @open311_api
    def open311_token(self, request, token, fmt):
        fmt = open311.check_format(fmt)
        with self.db.transaction() as s:
            ticket_id = s.scalar(select(func.coalesce(Ticket.merged_into, Ticket.id)).where(
                Ticket.message_id == token))
        if ticket_id is None:
            raise open311.Open311Error(404, f"token: {token!r} not found")
        return open311.answer(fmt, "service_requests", [{"token": token, "service_request_id": ticket_id}])

    # --- staff ----------------------------------------------------------------------------

    @http("GET", "/tickets/<string:ticket_no>/contact")
    @json_api
    def read_contact(self, request, ticket_no: str):
        """The full phone number and name, for the person calling the resident back; the read is recorded."""
        staff_id, reason = _staff(request), (request.args.get("reason") or "").strip()
        if not reason:
            raise HttpError(400, "reason: say why the contact is needed (e.g. 回访, 上门)")
        with self.db.transaction() as s:
            ticket = s.get(Ticket, ticket_no)
            if ticket is None:
                raise HttpError(404, f"ticket {ticket_no} not found")
            resident = s.get(Resident, ticket.resident_id)
            s.add(ContactRead(ticket_id=ticket_no, staff_id=staff_id, reason=reason[:200], read_at=utcnow()))
            return json_response({"ticket_no": ticket_no, "name": resident.name, "phone": resident.phone,
                                  "email": resident.email})

    @http("GET", "/tickets/<string:ticket_no>")
    @json_api
    def get_ticket(self, request, ticket_no: str):
        """The staff view: where a ticket stands, the resident's contact masked (see /contact)."""
        with self.db.transaction() as s:
            ticket = s.get(Ticket, ticket_no)
            if ticket is None:
                raise HttpError(404, f"ticket {ticket_no} not found")
            resident = s.get(Resident, ticket.resident_id)
            return json_response({
                "ticket_no": ticket.id, "status": ticket.status, "merged_into": ticket.merged_into,
                "category": ticket.category, "channel": ticket.channel, "village_code": ticket.village_code,
                "county_code": ticket.county_code,
                "submitted_at": ticket.submitted_at.isoformat(), "assignee_name": ticket.assignee_name,
                "resident_phone": mask_phone(resident.phone), "resident_name": mask_name(resident.name),
            })


def _staff(request) -> str:
    staff_id = (request.headers.get("X-Staff-Id") or "").strip()
    if not staff_id:
        raise HttpError(403, "X-Staff-Id: reading a resident's contact needs a staff id (it is recorded)")
    return staff_id[:50]
