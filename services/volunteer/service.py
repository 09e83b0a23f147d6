"""volunteer: finds a nearby volunteer with the right skill when dispatch asks for one."""
from __future__ import annotations

from sqlalchemy import select

from services.common.database import Database
from services.common.envelope import Event, read_data, utcnow
from services.common.http import HttpError, api, http, json_response
from services.common.inbox import Inbox
from services.common.messaging import on_event
from services.common.openapi import document
from services.common.outbox import Outbox
from services.common.staff import STAFF, VOLUNTEER
from services.common.tokens import StaffTokens

from .dependencies import Registry
from .events import SCHEMAS
from .matching import MatchRequest
from .models import InboxRow, Offer, OutboxRow, VolunteerRow
from .schemas import OfferAnswerView, VolunteerRequestedIn, VolunteerView


class VolunteerService:
    name = "volunteer"

    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS)
    inbox = Inbox(InboxRow)
    index = Registry()
    staff = StaffTokens()

    @on_event("dispatch", "volunteer_requested")
    def find_volunteer(self, envelope):
        req = read_data(envelope, VolunteerRequestedIn)
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            offered = self._offer(s, envelope["ticket_id"], req["skill"], req["village_code"],
                                  req["town_code"], frozenset(req["exclude"]))
        if offered:
            self.index.take(offered)  # after commit: the index mirrors what is stored

    @http("POST", "/offers/<string:ticket_id>/decline")
    @api("Decline an offer made to me: the next volunteer nearby is asked", answers={200: OfferAnswerView})
    def decline_offer(self, request, ticket_id):
        """The volunteer cannot go: the next one nearby is asked, never the same one again."""
        volunteer_id = self._volunteer(request)
        with self.db.transaction() as s:
            offer = self._open_offer(s, ticket_id, volunteer_id)
            offer.state, offer.updated_at = "declined", utcnow()
            self.outbox.add(s, [Event("volunteer_declined", ticket_id, {
                "volunteer_id": volunteer_id, "skill": offer.skill}, correlation_id=ticket_id)])
            asked = frozenset(s.scalars(select(Offer.volunteer_id).where(Offer.ticket_id == ticket_id)))
            declined = s.get(VolunteerRow, volunteer_id)
            offered = self._offer(s, ticket_id, offer.skill, declined.village_code, declined.town_code, asked)
        self.index.release(volunteer_id)
        if offered:
            self.index.take(offered)
        return json_response({"ticket_id": ticket_id, "volunteer_id": volunteer_id, "state": "declined",
                              "offered_to": offered})

    def _offer(self, s, ticket_id, skill, village_code, town_code, exclude) -> str | None:
        """Offer the ticket to the best free volunteer; record and announce the outcome."""
        now = utcnow()
        match = self.index.match(MatchRequest(ticket_id, village_code, town_code, skill, exclude))
        if match is None:
            self.outbox.add(s, [Event("match_failed", ticket_id, {
                "skill": skill, "village_code": village_code,
                "reason": f"no volunteer with skill {skill} free in town {town_code}"},
                correlation_id=ticket_id)])
            return None
        volunteer = s.get(VolunteerRow, match.volunteer_id)
        s.add(Offer(ticket_id=ticket_id, volunteer_id=volunteer.id, skill=skill, state="offered",
                    created_at=now, updated_at=now))
        self.outbox.add(s, [Event("volunteer_offered", ticket_id, {
            "volunteer_id": volunteer.id, "volunteer_name": volunteer.name, "team_id": volunteer.team_id,
            "skill": skill, "distance": match.distance}, correlation_id=ticket_id)])
        return volunteer.id

    @on_event("dispatch", "ticket_closed")
    def finish_offers(self, envelope):
        now, released = utcnow(), []
        with self.db.transaction() as s:
            offers = s.scalars(select(Offer).where(Offer.ticket_id == envelope["ticket_id"],
                                                   Offer.state.in_(("offered", "accepted")))).all()
            if not offers or not self.inbox.first_delivery(s, envelope):
                return  # most tickets never had a volunteer: nothing to record
            for offer in offers:
                offer.state, offer.updated_at = "done", now
                s.get(VolunteerRow, offer.volunteer_id).service_points += 1
                released.append(offer.volunteer_id)
        for volunteer_id in released:
            self.index.release(volunteer_id)

    @http("POST", "/offers/<string:ticket_id>/accept")
    @api("Accept an offer made to me", answers={200: OfferAnswerView})
    def accept_offer(self, request, ticket_id):
        return self._answer(ticket_id, self._volunteer(request), "accepted")

    @http("GET", "/volunteers/<string:volunteer_id>")
    @api("A volunteer: themself, or staff of the area they live in", answers={200: VolunteerView})
    def volunteer(self, request, volunteer_id):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            row = s.get(VolunteerRow, volunteer_id[:20])
            if row is None:
                raise HttpError(404, f"volunteer {volunteer_id[:20]} not found")
            if who.subject != row.id or who.role != VOLUNTEER:
                who.require(STAFF, row.village_code, "read this volunteer")
            return json_response({"id": row.id, "name": row.name, "team_id": row.team_id,
                                  "village_code": row.village_code, "skills": row.skills.split(","),
                                  "load": self.index.load_of(row.id), "max_load": row.max_load,
                                  "service_points": row.service_points})

    @http("GET", "/openapi.json")
    @api("This API, described (OpenAPI 3.1)", answers={200: {"type": "object"}}, auth=None)
    def openapi(self, request):
        return json_response(OPENAPI)

    def _volunteer(self, request) -> str:
        """The volunteer answering: the token's subject, signed in as a volunteer."""
        who = self.staff.of(request)
        who.require({VOLUNTEER}, what="answer a volunteer offer")
        return who.subject

    def _open_offer(self, s, ticket_id, volunteer_id) -> Offer:
        offer = s.scalar(select(Offer).where(Offer.ticket_id == ticket_id[:32], Offer.volunteer_id == volunteer_id,
                                             Offer.state == "offered"))
        if offer is None:
            raise HttpError(404, f"you have no open offer of ticket {ticket_id[:32]}")
        return offer

    def _answer(self, ticket_id, volunteer_id, answer):
        with self.db.transaction() as s:
            offer = self._open_offer(s, ticket_id, volunteer_id)
            offer.state, offer.updated_at = answer, utcnow()
            self.outbox.add(s, [Event(f"volunteer_{answer}", ticket_id, {
                "volunteer_id": volunteer_id, "skill": offer.skill}, correlation_id=ticket_id)])
            return json_response({"ticket_id": ticket_id, "volunteer_id": volunteer_id, "state": answer})


OPENAPI = document(VolunteerService, "送到家 volunteer: offers and the registry",
                   "Volunteers answer the offers made to them; staff read volunteers of their area. Every call but "
                   "this document needs `Authorization: Bearer <JWT>`; a volunteer is the token's subject.")
