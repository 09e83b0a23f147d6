"""volunteer: finds a nearby volunteer with the right skill when dispatch asks for one.

An offer holds a place in the volunteer's load from the moment it is made. It ends `accepted` (then `done`
when the ticket closes), `declined` or `expired` (nobody answered in OFFER_MINUTES × SLA_SCALE: the next
volunteer near the ticket is asked, never one already asked, else `match_failed`), or `released` when the
ticket is cancelled. Every ending but `accepted` frees the place.
"""
from __future__ import annotations

from nameko.dependency_providers import Config
from nameko.timer import timer
from sqlalchemy import select

from services.common.clock import Time
from services.common.database import Database
from services.common.envelope import Event, read_data
from services.common.http import HttpError, api, http, json_response
from services.common.inbox import Inbox
from services.common.messaging import on_event
from services.common.openapi import document
from services.common.outbox import Outbox
from services.common.schedule import BATCH, TICK_SECONDS, claim_due
from services.common.staff import STAFF, VOLUNTEER
from services.common.tokens import StaffTokens

from .dependencies import Registry
from .events import SCHEMAS
from .matching import MatchRequest
from .models import OPEN_STATES, InboxRow, Offer, OutboxRow, VolunteerRow
from .schemas import OfferAnswerView, VolunteerRequestedIn, VolunteerView

DEFAULT_OFFER_MINUTES = 15  # config OFFER_MINUTES: how long an offer waits for its answer, before SLA_SCALE


class VolunteerService:
    name = "volunteer"

    config = Config()
    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS)
    inbox = Inbox(InboxRow)
    index = Registry()
    staff = StaffTokens()
    clock = Time()

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
        """The volunteer cannot go: the next one near the ticket is asked, never the same one again."""
        volunteer_id = self._volunteer(request)
        with self.db.transaction() as s:
            offer = self._open_offer(s, ticket_id, volunteer_id)
            offer.state, offer.updated_at = "declined", self.clock.now()
            self.outbox.add(s, [Event("volunteer_declined", ticket_id, {
                "volunteer_id": volunteer_id, "skill": offer.skill}, correlation_id=ticket_id)])
            offered = self._pass_on(s, offer)
        self.index.release(volunteer_id)
        if offered:
            self.index.take(offered)
        return json_response({"ticket_id": ticket_id, "volunteer_id": volunteer_id, "state": "declined",
                              "offered_to": offered})

    @timer(interval=TICK_SECONDS)
    def expire_offers(self) -> int:
        """Offers nobody answered in OFFER_MINUTES: `expired`, and the next volunteer near the ticket is asked.

        One offer per transaction, claimed with its row locked: marking it, its events and the next offer
        commit together, so a second instance (or a second tick) finds it no longer `offered`; and the
        index is brought up to date after each commit, before the next offer is matched.
        """
        expired = 0
        for _ in range(BATCH):
            now = self.clock.now()
            with self.db.transaction() as s:
                due = claim_due(s, select(Offer).where(Offer.state == "offered", Offer.expires_at <= now)
                                .order_by(Offer.expires_at, Offer.id), limit=1)
                if not due:
                    return expired
                offer = due[0]
                offer.state, offer.updated_at = "expired", now
                self.outbox.add(s, [Event("offer_expired", offer.ticket_id, {
                    "volunteer_id": offer.volunteer_id, "skill": offer.skill}, correlation_id=offer.ticket_id)])
                offered = self._pass_on(s, offer)
            expired += 1
            self.index.release(offer.volunteer_id)
            if offered:
                self.index.take(offered)
        return expired

    def _pass_on(self, s, offer: Offer) -> str | None:
        """After `offer` was declined or expired: the next volunteer near the TICKET, never one already asked."""
        asked = frozenset(s.scalars(select(Offer.volunteer_id).where(Offer.ticket_id == offer.ticket_id)))
        village_code, town_code = offer.village_code, offer.town_code
        home = None if village_code else s.get(VolunteerRow, offer.volunteer_id)
        if home is not None:  # an offer made before offers knew their place: the best guess is its volunteer's
            village_code, town_code = home.village_code, home.town_code
        return self._offer(s, offer.ticket_id, offer.skill, village_code, town_code, asked)

    def _offer(self, s, ticket_id, skill, village_code, town_code, exclude) -> str | None:
        """Offer the ticket to the best free volunteer; record and announce the outcome."""
        now = self.clock.now()
        match = self.index.match(MatchRequest(ticket_id, village_code, town_code, skill, exclude))
        if match is None:
            self.outbox.add(s, [Event("match_failed", ticket_id, {
                "skill": skill, "village_code": village_code,
                "reason": f"no volunteer with skill {skill} free in town {town_code}"},
                correlation_id=ticket_id)])
            return None
        volunteer = s.get(VolunteerRow, match.volunteer_id)
        s.add(Offer(ticket_id=ticket_id, volunteer_id=volunteer.id, skill=skill, state="offered",
                    village_code=village_code, town_code=town_code,
                    expires_at=now + self.clock.span(self._offer_minutes()), created_at=now, updated_at=now))
        self.outbox.add(s, [Event("volunteer_offered", ticket_id, {
            "volunteer_id": volunteer.id, "volunteer_name": volunteer.name, "team_id": volunteer.team_id,
            "skill": skill, "distance": match.distance}, correlation_id=ticket_id)])
        return volunteer.id

    def _offer_minutes(self) -> float:
        return float(self.config.get("OFFER_MINUTES", DEFAULT_OFFER_MINUTES))

    @on_event("dispatch", "ticket_closed")
    def finish_offers(self, envelope):
        """The ticket is done: its volunteers are free again, and each earns a service point."""
        self._close_offers(envelope, "done", points=1)

    @on_event("dispatch", "ticket_cancelled")
    def release_offers(self, envelope):
        """The ticket was withdrawn: its volunteers are free again (`released`), with no service point."""
        self._close_offers(envelope, "released", points=0)

    def _close_offers(self, envelope, state: str, points: int) -> None:
        now, released = self.clock.now(), []
        with self.db.transaction() as s:
            offers = s.scalars(select(Offer).where(Offer.ticket_id == envelope["ticket_id"],
                                                   Offer.state.in_(OPEN_STATES)).with_for_update()).all()
            if not offers or not self.inbox.first_delivery(s, envelope):
                return  # most tickets never had a volunteer: nothing to record
            for offer in offers:
                offer.state, offer.updated_at = state, now
                s.get(VolunteerRow, offer.volunteer_id).service_points += points
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
        # locked: an answer and the expiry timer never both act on one offer (PostgreSQL re-reads the row
        # once the other commits, and finds it no longer `offered`)
        offer = s.scalar(select(Offer).where(Offer.ticket_id == ticket_id[:32], Offer.volunteer_id == volunteer_id,
                                             Offer.state == "offered").with_for_update())
        if offer is None:
            raise HttpError(404, f"you have no open offer of ticket {ticket_id[:32]}")
        return offer

    def _answer(self, ticket_id, volunteer_id, answer):
        with self.db.transaction() as s:
            offer = self._open_offer(s, ticket_id, volunteer_id)
            offer.state, offer.updated_at = answer, self.clock.now()
            self.outbox.add(s, [Event(f"volunteer_{answer}", ticket_id, {
                "volunteer_id": volunteer_id, "skill": offer.skill}, correlation_id=ticket_id)])
            return json_response({"ticket_id": ticket_id, "volunteer_id": volunteer_id, "state": answer})


OPENAPI = document(VolunteerService, "送到家 volunteer: offers and the registry",
                   "Volunteers answer the offers made to them; staff read volunteers of their area. Every call but "
                   "this document needs `Authorization: Bearer <JWT>`; a volunteer is the token's subject.")
