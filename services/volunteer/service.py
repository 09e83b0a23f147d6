"""volunteer: finds a nearby volunteer with the right skill when dispatch asks for one."""
from __future__ import annotations

from nameko.web.handlers import http
from sqlalchemy import select

from services.common.database import Database
from services.common.envelope import Event, read_data, utcnow
from services.common.http import HttpError, json_api, json_response, read_json
from services.common.inbox import Inbox
from services.common.messaging import on_event
from services.common.outbox import Outbox

from .dependencies import Registry
from .events import SCHEMAS
from .matching import MatchRequest
from .models import InboxRow, Offer, OutboxRow, VolunteerRow
from .schemas import AnswerForm, VolunteerRequestedIn


class VolunteerService:
    name = "volunteer"

    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS)
    inbox = Inbox(InboxRow)
    index = Registry()

    @on_event("dispatch", "volunteer_requested")
    def find_volunteer(self, envelope):
        req = read_data(envelope, VolunteerRequestedIn)
        ticket_id, now = envelope["ticket_id"], utcnow()
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            match = self.index.match(MatchRequest(ticket_id, req["village_code"], req["town_code"],
                                                  req["skill"], frozenset(req["exclude"])))
            if match is None:
                self.outbox.add(s, [Event("match_failed", ticket_id, {
                    "skill": req["skill"], "village_code": req["village_code"],
                    "reason": f"no volunteer with skill {req['skill']} free in town {req['town_code']}"},
                    correlation_id=ticket_id)])
                return
            volunteer = s.get(VolunteerRow, match.volunteer_id)
            s.add(Offer(ticket_id=ticket_id, volunteer_id=match.volunteer_id, skill=req["skill"],
                        state="offered", created_at=now, updated_at=now))
            self.outbox.add(s, [Event("volunteer_offered", ticket_id, {
                "volunteer_id": volunteer.id, "volunteer_name": volunteer.name,
                "team_id": volunteer.team_id, "skill": req["skill"], "distance": match.distance},
                correlation_id=ticket_id)])
        self.index.take(match.volunteer_id)  # after commit: the index mirrors what is stored

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
    @json_api
    def accept_offer(self, request, ticket_id):
        return self._answer(ticket_id, read_json(request, AnswerForm())["volunteer_id"], "accepted")

    @http("GET", "/volunteers/<string:volunteer_id>")
    @json_api
    def volunteer(self, request, volunteer_id):
        with self.db.transaction() as s:
            row = s.get(VolunteerRow, volunteer_id)
            if row is None:
                raise HttpError(404, f"volunteer {volunteer_id} not found")
            return json_response({"id": row.id, "name": row.name, "team_id": row.team_id,
                                  "village_code": row.village_code, "skills": row.skills.split(","),
                                  "load": self.index.load_of(row.id), "max_load": row.max_load,
                                  "service_points": row.service_points})

    def _answer(self, ticket_id, volunteer_id, answer):
        now = utcnow()
        with self.db.transaction() as s:
            offer = s.scalar(select(Offer).where(Offer.ticket_id == ticket_id,
                                                 Offer.volunteer_id == volunteer_id,
                                                 Offer.state == "offered"))
            if offer is None:
                raise HttpError(404, f"no open offer of ticket {ticket_id} to {volunteer_id}")
            offer.state, offer.updated_at = answer, now
            self.outbox.add(s, [Event(f"volunteer_{answer}", ticket_id, {
                "volunteer_id": volunteer_id, "skill": offer.skill}, correlation_id=ticket_id)])
            return json_response({"ticket_id": ticket_id, "volunteer_id": volunteer_id, "state": answer})
