"""volunteer: finds a nearby volunteer with the right skill when dispatch asks for one.

An offer holds a place in the volunteer's load from the moment it is made. It ends `accepted` (then `done`
when the ticket closes), `declined` or `expired` (nobody answered in OFFER_MINUTES × SLA_SCALE: the next
volunteer near the ticket is asked, never one already asked, else `match_failed`), or `released` when the
ticket is cancelled. Every ending but `accepted` frees the place.

Loads live in the database (`volunteers.load`), changed in the transaction that makes or ends an offer
(loads.py), so any number of instances can share one database. The in-memory index (matching.py) proposes
candidates in its order; the row decides (a full one sends the service back to the index for the next);
after commit the index is told the loads that were written, and every LOAD_RESYNC_SECONDS it re-reads them
all, so what another instance changed reaches this one's cache too.
"""
from __future__ import annotations

import json
import secrets
from datetime import timedelta

from nameko.dependency_providers import Config
from sqlalchemy import select

from services.common.clock import Time
from services.common.database import Database
from services.common.envelope import Event, read_data
from services.common.http import HttpError, api, http, json_response, read_json
from services.common.inbox import Inbox
from services.common.logs import LogContext
from services.common.messaging import on_event
from services.common.openapi import document
from services.common.operations import Operations
from services.common.outbox import Outbox
from services.common.schedule import BATCH, TICK_SECONDS, claim_due, timer
from services.common.staff import STAFF, VOLUNTEER
from services.common.tokens import StaffTokens

from . import people
from .dependencies import Registry, relearn
from .events import SCHEMAS
from .loads import busy_loads, give_back, learn, load_of, refresh_town, take_place
from .matching import Match, MatchRequest
from .models import OPEN_STATES, InboxRow, Offer, OutboxRow, TeamRow, VolunteerRow
from .schemas import OfferAnswerView, PersonEdit, PersonIn, TeamEdit, TeamIn, VolunteerRequestedIn, VolunteerView

DEFAULT_OFFER_MINUTES = 15  # config OFFER_MINUTES: how long an offer waits for its answer, before SLA_SCALE
LOAD_RESYNC_SECONDS = 10  # how often each instance's index re-reads every load (what other instances changed)
MAX_PROPOSALS = 16  # candidates tried for one offer before giving up for now (the event is retried)
REFRESH_AFTER = 4  # full rows in a row before the town's loads are re-read at once
RELEARN_WINDOW_SECONDS = 60  # registry changes re-read each tick (a few ticks' worth: clocks and slow commits)


class IndexBehind(RuntimeError):
    """Every candidate the index proposed was full: it is far behind the database; try again later."""


class Loads(dict):
    """Loads written in one transaction, volunteer → the load the row holds: the index learns them after commit."""


class VolunteerService(Operations):
    name = "volunteer"

    log_context = LogContext()
    config = Config()
    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS)
    inbox = Inbox(InboxRow)
    index = Registry()
    staff = StaffTokens()
    clock = Time()

    @on_event("dispatch", "volunteer_requested")
    def find_volunteer(self, envelope):
        req, written = read_data(envelope, VolunteerRequestedIn), Loads()
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            self._offer(s, envelope["ticket_id"], req["skill"], req["village_code"], req["town_code"],
                        frozenset(req["exclude"]), written)
        self._learn(written)  # after commit: the index learns what is stored

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
            written = Loads()
            written[volunteer_id] = give_back(s, volunteer_id)
            offered = self._pass_on(s, offer, written)
        self._learn(written)
        return json_response({"ticket_id": ticket_id, "volunteer_id": volunteer_id, "state": "declined",
                              "offered_to": offered})

    @timer(interval=TICK_SECONDS)
    def expire_offers(self) -> int:
        """Offers nobody answered in OFFER_MINUTES: `expired`, and the next volunteer near the ticket is asked.

        One offer per transaction, claimed with its row locked: marking it, its events, the loads and the
        next offer commit together, so a second instance (or a second tick) finds it no longer `offered`;
        and the index learns the loads after each commit, before the next offer is matched.
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
                written = Loads()
                written[offer.volunteer_id] = give_back(s, offer.volunteer_id)
                self._pass_on(s, offer, written)
            expired += 1
            self._learn(written)
        return expired

    @timer(interval=LOAD_RESYNC_SECONDS)
    def resync_loads(self) -> int:
        """The index re-reads every load: what other instances changed reaches this one's cache (it would
        anyway be corrected when it proposed a full volunteer, but it also keeps the order fair)."""
        with self.db.transaction() as s:
            busy = busy_loads(s)
        self.index.set_loads(busy)
        return len(busy)

    def _pass_on(self, s, offer: Offer, written: Loads) -> str | None:
        """After `offer` was declined or expired: the next volunteer near the TICKET, never one already asked."""
        asked = frozenset(s.scalars(select(Offer.volunteer_id).where(Offer.ticket_id == offer.ticket_id)))
        village_code, town_code = offer.village_code, offer.town_code
        home = None if village_code else s.get(VolunteerRow, offer.volunteer_id)
        if home is not None:  # an offer made before offers knew their place: the best guess is its volunteer's
            village_code, town_code = home.village_code, home.town_code
        return self._offer(s, offer.ticket_id, offer.skill, village_code, town_code, asked, written)

    def _offer(self, s, ticket_id, skill, village_code, town_code, exclude, written: Loads) -> str | None:
        """Offer the ticket to the best free volunteer; record and announce the outcome."""
        now = self.clock.now()
        taken = self._take_place(s, MatchRequest(ticket_id, village_code, town_code, skill, exclude, at=now))
        if taken is None:
            self.outbox.add(s, [Event("match_failed", ticket_id, {
                "skill": skill, "village_code": village_code,
                "reason": f"no volunteer with skill {skill} free in town {town_code}"},
                correlation_id=ticket_id)])
            return None
        match, place = taken
        written[match.volunteer_id] = place.load
        s.add(Offer(ticket_id=ticket_id, volunteer_id=match.volunteer_id, skill=skill, state="offered",
                    village_code=village_code, town_code=town_code,
                    expires_at=now + self.clock.span(self._offer_minutes()), created_at=now, updated_at=now))
        self.outbox.add(s, [Event("volunteer_offered", ticket_id, {
            "volunteer_id": match.volunteer_id, "volunteer_name": place.name, "team_id": place.team_id,
            "skill": skill, "distance": match.distance}, correlation_id=ticket_id)])
        return match.volunteer_id

    # --- the register of people (people.py) ----------------------------------------------------------

    @http("POST", "/volunteers")
    @api("Register a volunteer, or a neighbour offering help (亲帮亲/邻帮邻): skills, availability, team, party "
         "membership", body=PersonIn, answers={201: {"type": "object"}})
    def register_volunteer(self, request):
        who = self.staff.of(request)
        form = read_json(request, PersonIn())
        people.may_keep(who, form["village_code"])
        now = self.clock.now()
        with self.db.transaction() as s:
            team_id = self._team_for(s, form.pop("team_id"), form["village_code"])
            row = VolunteerRow(id=f"V{secrets.token_hex(4).upper()}", town_code=form["village_code"][:9],
                               team_id=team_id, skills=",".join(sorted(set(form.pop("skills")))),
                               availability=people.stored_windows(form.pop("availability")), load=0,
                               service_points=0, active=True, registered_by=who.subject[:64], updated_at=now, **form)
            s.add(row)
            s.flush()
            view = _person_view(row)
        relearn(self.index, [row])  # this instance proposes them at once; the others within a tick
        return json_response(view, 201)

    @http("PATCH", "/volunteers/<string:volunteer_id>")
    @api("Edit a volunteer: staff of the village anything, the volunteer their own phone, availability and offer",
         body=PersonEdit, answers={200: {"type": "object"}, 409: None})
    def edit_volunteer(self, request, volunteer_id):
        who = self.staff.of(request)
        form = read_json(request, PersonEdit())
        with self.db.transaction() as s:
            row = self._person(s, volunteer_id)
            people.may_edit(who, row.id, row.village_code, form)
            if not row.active:
                raise HttpError(409, f"volunteer {row.id} was deactivated; register them again")
            if "team_id" in form:
                form["team_id"] = self._team_for(s, form["team_id"], row.village_code)
            if "skills" in form:
                form["skills"] = ",".join(sorted(set(form["skills"])))
            if "availability" in form:
                form["availability"] = people.stored_windows(form["availability"])
            for key, value in form.items():
                setattr(row, key, value)
            row.updated_at = self.clock.now()
            view = _person_view(row)
        relearn(self.index, [row])
        return json_response(view)

    @http("POST", "/volunteers/<string:volunteer_id>/deactivate")
    @api("Deactivate a volunteer: never offered again; offers they hold run their course; nothing is deleted",
         answers={200: {"type": "object"}, 409: None})
    def deactivate_volunteer(self, request, volunteer_id):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            row = self._person(s, volunteer_id)
            people.may_keep(who, row.village_code)
            if not row.active:
                raise HttpError(409, f"volunteer {row.id} is already deactivated")
            row.active, row.updated_at = False, self.clock.now()
            view = _person_view(row)
        relearn(self.index, [row])
        return json_response(view)

    @http("POST", "/teams")
    @api("Register a volunteer team (志愿服务队): its name, village, leader and members", body=TeamIn,
         answers={201: {"type": "object"}})
    def register_team(self, request):
        who = self.staff.of(request)
        form = read_json(request, TeamIn())
        people.may_keep(who, form["village_code"])
        now = self.clock.now()
        with self.db.transaction() as s:
            members = sorted(set(form["members"]) | {form["leader_id"]})
            rows = s.scalars(select(VolunteerRow).where(VolunteerRow.id.in_(members)).with_for_update()).all()
            found = {r.id: r for r in rows if r.active}
            if missing := [m for m in members if m not in found]:
                field = "leader_id" if form["leader_id"] in missing else "members"
                raise HttpError(400, "invalid fields", {field: [f"no active volunteer {', '.join(missing)}"]})
            if elsewhere := [r.id for r in rows if r.town_code != form["village_code"][:9]]:
                raise HttpError(400, "invalid fields", {"members": [f"not of this town: {', '.join(elsewhere)}"]})
            team = TeamRow(id=f"T{secrets.token_hex(4).upper()}", name=form["name"], leader_id=form["leader_id"],
                           village_code=form["village_code"], active=True, created_at=now, updated_at=now)
            s.add(team)
            for row in rows:
                row.team_id, row.updated_at = team.id, now
            view = {"id": team.id, "name": team.name, "village_code": team.village_code,
                    "leader_id": team.leader_id, "members": members}
        relearn(self.index, rows)
        return json_response(view, 201)

    @http("GET", "/teams/<string:team_id>")
    @api("A team, its leader and its members", answers={200: {"type": "object"}})
    def team(self, request, team_id):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            team = self._team(s, team_id)
            who.require(STAFF, team.village_code, "read this team")
            members = s.scalars(select(VolunteerRow).where(VolunteerRow.team_id == team.id)
                                .order_by(VolunteerRow.id)).all()
            return json_response({"id": team.id, "name": team.name, "village_code": team.village_code,
                                  "leader_id": team.leader_id, "active": team.active,
                                  "members": [_person_view(m) for m in members]})

    @http("PATCH", "/teams/<string:team_id>")
    @api("Rename a team, or name another of its members its leader", body=TeamEdit,
         answers={200: {"type": "object"}, 409: None})
    def edit_team(self, request, team_id):
        who = self.staff.of(request)
        form = read_json(request, TeamEdit())
        with self.db.transaction() as s:
            team = self._team(s, team_id)
            people.may_keep(who, team.village_code)
            if not team.active:
                raise HttpError(409, f"team {team.id} was deactivated")
            if "leader_id" in form:
                leader = s.get(VolunteerRow, form["leader_id"])
                if leader is None or not leader.active or leader.team_id != team.id:
                    raise HttpError(400, "invalid fields", {"leader_id": [f"{form['leader_id']} is no active "
                                                                          f"member of team {team.id}"]})
            for key, value in form.items():
                setattr(team, key, value)
            team.updated_at = self.clock.now()
            return json_response(_team_view(team))

    @http("POST", "/teams/<string:team_id>/deactivate")
    @api("Deactivate a team (disbanded): it takes no new members; its volunteers keep helping, and keep its name "
         "on their record until they join another; nothing is deleted", answers={200: {"type": "object"}, 409: None})
    def deactivate_team(self, request, team_id):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            team = self._team(s, team_id)
            people.may_keep(who, team.village_code)
            if not team.active:
                raise HttpError(409, f"team {team.id} is already deactivated")
            team.active, team.updated_at = False, self.clock.now()
            return json_response(_team_view(team))

    def _team(self, s, team_id: str) -> TeamRow:
        team = s.get(TeamRow, team_id[:20], with_for_update=True)
        if team is None:
            raise HttpError(404, f"team {team_id[:20]} not found")
        return team

    @timer(interval=LOAD_RESYNC_SECONDS)
    def relearn_registry(self) -> int:
        """What other instances registered, edited or deactivated lately: this index proposes them as they are."""
        since = self.clock.now() - timedelta(seconds=RELEARN_WINDOW_SECONDS)
        with self.db.transaction() as s:
            rows = s.scalars(select(VolunteerRow).where(VolunteerRow.updated_at >= since)).all()
        relearn(self.index, rows)
        return len(rows)

    def _person(self, s, volunteer_id: str) -> VolunteerRow:
        row = s.get(VolunteerRow, volunteer_id[:20], with_for_update=True)
        if row is None:
            raise HttpError(404, f"volunteer {volunteer_id[:20]} not found")
        return row

    def _team_for(self, s, team_id: str | None, village_code: str) -> str:
        """The team a volunteer joins, checked (an active team of their town); none: a neighbour of their own."""
        if team_id is None:
            return ""
        team = s.get(TeamRow, team_id)
        if team is None or not team.active:
            raise HttpError(400, "invalid fields", {"team_id": [f"no active team {team_id}"]})
        if team.village_code[:9] != village_code[:9]:
            raise HttpError(400, "invalid fields", {"team_id": [f"team {team_id} is of another town"]})
        return team.id

    def _take_place(self, s, request: MatchRequest):
        """The index's best candidate whose row still has room, with the place taken in `s`; None when the
        database says nobody near the ticket is free.

        A full row (another instance or worker took the last place since this index last heard) is told
        to the index, which then proposes its next candidate. After REFRESH_AFTER full rows, or before
        giving up, the loads of the whole town are re-read once: `match_failed` is never the cache's word.
        """
        refreshed, full = False, 0
        for _ in range(MAX_PROPOSALS):
            match: Match | None = self.index.match(request)
            if match is None:
                if refreshed:
                    return None
                refresh_town(s, self.index, request.town_code)
                refreshed = True
                continue
            place = take_place(s, match.volunteer_id)
            if place is not None:
                return match, place
            learn(self.index, match.volunteer_id, load_of(s, match.volunteer_id))
            full += 1
            if full >= REFRESH_AFTER and not refreshed:
                refresh_town(s, self.index, request.town_code)
                refreshed = True
        raise IndexBehind(f"{MAX_PROPOSALS} volunteers proposed for {request.ticket_id} were all full")

    def _learn(self, written: Loads) -> None:
        for volunteer_id, load in written.items():
            learn(self.index, volunteer_id, load)

    def _offer_minutes(self) -> float:
        return float(self.config.get("OFFER_MINUTES", DEFAULT_OFFER_MINUTES))

    @on_event("dispatch", "ticket_closed", digest="lifecycle")
    def finish_offers(self, envelopes: list[dict]):
        """The ticket is done: its volunteers are free again, and each earns a service point. A relay round's
        closings in one message and one transaction (dispatch's lifecycle digest: common/digests.py)."""
        self._close_offers(envelopes, "done", points=1)

    @on_event("dispatch", "ticket_cancelled")
    def release_offers(self, envelope):
        """The ticket was withdrawn: its volunteers are free again (`released`), with no service point."""
        self._close_offers([envelope], "released", points=0)

    def _close_offers(self, envelopes: list[dict], state: str, points: int) -> None:
        now, written = self.clock.now(), Loads()
        with self.db.transaction() as s:
            for envelope in envelopes:
                offers = s.scalars(select(Offer).where(Offer.ticket_id == envelope["ticket_id"],
                                                       Offer.state.in_(OPEN_STATES)).with_for_update()).all()
                if not offers or not self.inbox.first_delivery(s, envelope):
                    continue  # most tickets never had a volunteer: nothing to record
                for offer in offers:
                    offer.state, offer.updated_at = state, now
                    volunteer = s.get(VolunteerRow, offer.volunteer_id)
                    if volunteer is not None:  # an offer older than a re-seed may name someone gone
                        volunteer.service_points += points
                    written[offer.volunteer_id] = give_back(s, offer.volunteer_id)
        self._learn(written)

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
            self.index.set_load(row.id, row.load)
            return json_response(_person_view(row))

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


def _team_view(team: TeamRow) -> dict:
    return {"id": team.id, "name": team.name, "village_code": team.village_code, "leader_id": team.leader_id,
            "active": team.active}


def _person_view(row: VolunteerRow) -> dict:
    return {"id": row.id, "name": row.name, "kind": row.kind, "team_id": row.team_id, "phone": row.phone,
            "village_code": row.village_code, "skills": row.skills.split(","), "load": row.load,
            "max_load": row.max_load, "service_points": row.service_points, "party_member": row.party_member,
            "offers": row.offers, "availability": json.loads(row.availability or "[]"), "active": row.active}


OPENAPI = document(VolunteerService, "送到家 volunteer: offers and the registry",
                   "Volunteers answer the offers made to them; staff read volunteers of their area. Every call but "
                   "this document needs `Authorization: Bearer <JWT>`; a volunteer is the token's subject.")
