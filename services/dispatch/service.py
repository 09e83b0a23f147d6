"""dispatch: owns each ticket's lifecycle — routing, offers, acceptance, resolution, follow-up."""
from __future__ import annotations

from datetime import timedelta

from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import select

from services.common.database import Database
from services.common.envelope import MalformedEvent, read_data, utcnow
from services.common.http import HttpError, api, http, json_response, read_json, read_query
from services.common.inbox import Inbox
from services.common.messaging import on_event
from services.common.openapi import document
from services.common.outbox import Outbox
from services.common.staff import DEPARTMENT_STAFF, STAFF
from services.common.tokens import StaffTokens

from . import access, lifecycle, retention
from .dependencies import Areas
from .events import SCHEMAS, WORK_EXCHANGE
from .ledger import ledger_of
from .models import Case, HistoryEntry, InboxRow, OutboxRow
from .routing import UnknownCounty, UnknownVillage, route, route_to_county_centre
from .schemas import (CaseView, FeedbackIn, LedgerView, MatchFailedIn, PlaceForm, QueueQuery, ResolveForm,
                      TicketReceivedIn, TicketView, VolunteerAnsweredIn, VolunteerOfferedIn)


class DispatchService:
    name = "dispatch"

    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS, extra_exchanges=(WORK_EXCHANGE,))
    inbox = Inbox(InboxRow)
    areas = Areas()
    staff = StaffTokens()
    config = Config()

    @on_event("intake", "ticket_received")
    def open_case(self, envelope):
        data = read_data(envelope, TicketReceivedIn)
        now = utcnow()
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            case = new_case(envelope["ticket_id"], data, now)
            s.add(case)
            self._route(s, case, now)

    @on_event("notify", "feedback_received")
    def follow_up(self, envelope):
        data = read_data(envelope, FeedbackIn)
        now = utcnow()
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            case = self._case(s, envelope["ticket_id"])
            events = lifecycle.record_follow_up(case, data["satisfied"], data["comment"], now)
            self._record(s, case, events, actor="resident", note=data["comment"])
            if case.state == "reopened":
                self._route(s, case, now)

    @on_event("volunteer", "volunteer_offered", "volunteer_accepted", "volunteer_declined", "match_failed")
    def note_volunteer(self, envelope):
        now = utcnow()
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            case = self._case(s, envelope["ticket_id"])
            if envelope["event"] == "volunteer_offered":
                offer = read_data(envelope, VolunteerOfferedIn)
                lifecycle.record_volunteer(case, offer["volunteer_id"])
                note = f"{offer['volunteer_name']} ({offer['volunteer_id']}, team {offer['team_id']})"
            elif envelope["event"] == "match_failed":
                note = read_data(envelope, MatchFailedIn)["reason"]
            else:  # the volunteer's answer, for the history
                note = read_data(envelope, VolunteerAnsweredIn)["volunteer_id"]
            s.add(HistoryEntry(ticket_id=case.id, at=now, event=envelope["event"], state=case.state,
                               actor="volunteer", note=note))

    @timer(interval=3600, eager=True)
    def forget_old_contacts(self):
        """Retention, hourly: addresses and residents' words of cases closed more than RETENTION_DAYS ago."""
        cutoff = utcnow() - timedelta(days=float(self.config.get("RETENTION_DAYS", 180)))
        with self.db.transaction() as s:
            return retention.forget(s, cutoff)

    @http("POST", "/tickets/<string:ticket_id>/accept")
    @api("Accept an offered ticket (签收): its assignee only", answers={200: CaseView, 409: None})
    def accept(self, request, ticket_id):
        who = self.staff.of(request)
        return self._act(ticket_id, who, lambda c: access.may_work(who, c, "accept"), lifecycle.accept)

    @http("POST", "/tickets/<string:ticket_id>/start")
    @api("On the way or at the door (办理中): its assignee only", answers={200: CaseView, 409: None})
    def start(self, request, ticket_id):
        who = self.staff.of(request)
        return self._act(ticket_id, who, lambda c: access.may_work(who, c, "start"), lifecycle.start)

    @http("POST", "/tickets/<string:ticket_id>/resolve")
    @api("Resolve with a note (办结): its assignee only", body=ResolveForm, answers={200: CaseView, 409: None})
    def resolve(self, request, ticket_id):
        who = self.staff.of(request)
        note = read_json(request, ResolveForm())["note"]
        return self._act(ticket_id, who, lambda c: access.may_work(who, c, "resolve"),
                         lambda c, now: lifecycle.resolve(c, note, now), note=note)

    @http("POST", "/tickets/<string:ticket_id>/place")
    @api("Place a request known only by a map point in its village: a dispatcher of its county",
         body=PlaceForm, answers={200: CaseView, 409: None})
    def place(self, request, ticket_id):
        who = self.staff.of(request)
        village = read_json(request, PlaceForm())["village_code"]
        return self._act(ticket_id, who, lambda c: access.may_place(who, c), lambda c, now: lifecycle.place(
            c, village, route(village, address_key(c), self.areas, now), now), note=f"placed in {village}")

    @http("GET", "/tickets/<string:ticket_id>")
    @api("A ticket with its history: staff of its area, and its assignee", answers={200: TicketView})
    def ticket(self, request, ticket_id):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            case = self._case(s, ticket_id, http=True)
            access.may_read(who, case)
            history = s.scalars(select(HistoryEntry).where(HistoryEntry.ticket_id == ticket_id)
                                .order_by(HistoryEntry.id)).all()
            return json_response({**case_view(case), "history": [
                {"at": h.at.isoformat(), "event": h.event, "state": h.state, "actor": h.actor,
                 "note": h.note} for h in history]})

    @http("GET", "/queues/<string:area_code>")
    @api("The cases of an area in a state (offered by default), most urgent first: staff of that area",
         query=QueueQuery, answers={200: CaseView}, many=True)
    def queue(self, request, area_code):
        who = self.staff.of(request)
        access.may_list(who, area_code)
        state = read_query(request, QueueQuery())["state"]
        query = select(Case).where(Case.state == state, Case.in_area(area_code))
        if who.role == DEPARTMENT_STAFF:
            query = query.where(Case.department == who.department)
        with self.db.transaction() as s:
            cases = s.scalars(query.order_by(Case.priority, Case.received_at).limit(500)).all()
            return json_response([case_view(c) for c in cases])

    @http("GET", "/ledger")
    @api("The ledger (台账) of the caller's area", answers={200: LedgerView})
    def ledger(self, request):
        who = self.staff.of(request)
        who.require(STAFF, what="read the ledger")
        with self.db.transaction() as s:
            return json_response(ledger_of(s, who.area))

    @http("GET", "/openapi.json")
    @api("This API, described (OpenAPI 3.1)", answers={200: {"type": "object"}}, auth=None)
    def openapi(self, request):
        return json_response(OPENAPI)

    # -- helpers: persistence around the pure lifecycle rules --

    def _route(self, s, case, now):
        try:
            assignment = (route(case.village_code, address_key(case), self.areas, now) if case.village_code
                          else route_to_county_centre(case.county_code, self.areas))
        except (UnknownVillage, UnknownCounty) as exc:  # retrying cannot help: park it with the reason
            raise MalformedEvent(str(exc)) from None
        events = lifecycle.route(case, assignment, now)
        self._record(s, case, events, actor="dispatch")

    def _act(self, ticket_id, who, allowed, step, note=""):
        """Load the case, check the caller may (403), apply the rule (409/400), record it as the caller's."""
        now = utcnow()
        with self.db.transaction() as s:
            case = self._case(s, ticket_id, http=True)
            allowed(case)
            try:
                events = step(case, now)
            except (lifecycle.InvalidTransition, lifecycle.AlreadyPlaced) as exc:
                raise HttpError(409, str(exc)) from None
            except UnknownVillage as exc:
                raise HttpError(400, f"village_code: {exc}") from None
            self._record(s, case, events, actor=who.subject, note=note)
            return json_response(case_view(case))

    def _record(self, s, case, events, actor, note=""):
        for ev in events:
            s.add(HistoryEntry(ticket_id=case.id, at=ev.occurred_at, event=ev.name,
                               state=ev.data.get("state", case.state), actor=actor, note=note))
        self.outbox.add(s, events)
        for ev in events:
            if ev.name == "ticket_offered":
                self.outbox.add(s, [ev], exchange=WORK_EXCHANGE, routing_key=case.work_key)

    def _case(self, s, ticket_id, http=False):
        case = s.get(Case, ticket_id)
        if case is None:
            if http:
                raise HttpError(404, f"ticket {ticket_id} not found")
            # an event about a ticket we have not opened yet: it may be ahead of ticket_received
            raise LookupError(f"ticket {ticket_id} is not known to dispatch (yet)")
        return case


def new_case(ticket_id: str, data: dict, now) -> Case:
    category, village = data["category"], data["village_code"]
    county = data["county_code"] or (village and village[:6])
    if not county:
        raise MalformedEvent("village_code: missing, and no county_code to place the request by")
    return Case(id=ticket_id, state="received", version=0, category_code=category["code"],
                department=category["department"], priority=data["priority"],
                village_code=village, county_code=county, address=data["address"],
                volunteer_skill=category.get("volunteer_skill"),
                accept_minutes=category["accept_minutes"], resolve_hours=category["resolve_hours"],
                follow_up_hours=category["follow_up_hours"], received_at=data["received_at"],
                updated_at=now, reopen_count=0)


def address_key(case) -> str:
    """What picks the grid inside a village: the same address always lands on the same grid."""
    return case.address or case.id


def case_view(case: Case) -> dict:
    return {"ticket_id": case.id, "state": case.state, "version": case.version,
            "category_code": case.category_code, "department": case.department,
            "priority": case.priority, "county_code": case.county_code, "village_code": case.village_code,
            "grid_code": case.grid_code,
            "assignee_id": case.assignee_id, "assignee_name": case.assignee_name,
            "volunteer_id": case.volunteer_id, "reopen_count": case.reopen_count,
            "accept_due_at": _iso(case.accept_due_at), "resolve_due_at": _iso(case.resolve_due_at)}


def _iso(value) -> str | None:
    return value.isoformat() if value else None


OPENAPI = document(DispatchService, "送到家 dispatch: the console API",
                   "Tickets' lifecycle for dispatchers and grid workers. Every call but this document needs "
                   "`Authorization: Bearer <JWT>`; the actor is the token's subject.")
