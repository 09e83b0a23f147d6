"""outreach (走访问需): going to the door. The household register, its household heads, visit plans, the visits
they make each day, and the needs found on them, which enter the loop at intake's front door.

Why a fifth service (README, "Going to the door"): households and visits are a register and a calendar of
their own, with personal data under their own retention, worked by people (household heads) who are not
staff of any ticket; a need found becomes an ordinary ticket through intake (channel grid_visit), so the
loop's four services need not know visits exist. The deadline ladder is dispatch's (定责: grid worker,
then village), kept here for visits (visits.py).

- Each calendar day (China time) is opened once: every active plan falling on it makes a visit for whoever
  answers for the household (schedules.py, visits.py); a timer opens today as soon as it has begun, and an
  operator may open a day at once (`POST /days/<date>/open`: a drill, or the demo).
- A timer escalates visits past their deadline, one rung each time (visits.escalate).
- Recording a visit writes its needs; each goes to intake in the same transaction (the outbox).
"""
from __future__ import annotations

import json
import logging
import secrets
import uuid
from datetime import date, datetime, timedelta

from nameko.dependency_providers import Config
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.common.clock import Time, as_utc
from services.common.database import Database
from services.common.http import HttpError, api, http, json_response, read_json, read_query
from services.common.envelope import read_data
from services.common.logs import LogContext
from services.common.messaging import on_replies
from services.common.openapi import document
from services.common.operations import Operations
from services.common.outbox import Outbox
from services.common.schedule import TICK_SECONDS, claim_due, timer
from services.common.staff import ADMIN, COUNTY_DISPATCHER, STAFF, TOWN_DISPATCHER, Principal
from services.common.tokens import StaffTokens

from . import access, ledger, register, retention, schedules, visits
from .events import SCHEMAS
from .models import (DayOpened, Head, Household, HouseholdRead, Member, Need, NightTalk, OutboxRow, PlanRow,
                     RegisterChange, Visit)
from .schemas import (HeadEdit, HeadIn, HouseholdEdit, HouseholdIn, IdView, LedgerQuery, NeedsQuery, NightTalkIn,
                      PlanIn, ReceiptIn, VisitRecordIn, VisitsQuery)

log = logging.getLogger(__name__)
OPENS_DAYS = frozenset({TOWN_DISPATCHER, COUNTY_DISPATCHER, ADMIN})
OPEN_BATCH = 2_000  # visits written per statement when a day opens
ESCALATE_BATCH = 100
CATCH_UP = timedelta(minutes=1)  # a plan begun this long before its day was opened may have crossed the opening


class OutreachService(Operations):
    name = "outreach"

    log_context = LogContext()
    config = Config()
    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS, reply_to={register.SUBMISSIONS_EXCHANGE: register.RECEIPTS})
    staff = StaffTokens()
    clock = Time()

    # --- household heads ---------------------------------------------------------------------

    @http("POST", "/heads")
    @api("Register a household head (联户长) of a village", body=HeadIn, answers={201: IdView})
    def register_head(self, request):
        who = self.staff.of(request)
        form = read_json(request, HeadIn())
        access.may_keep_heads(who, form["village_code"])
        now = self.clock.now()
        with self.db.transaction() as s:
            head = Head(id=_new_id("H"), registered_at=now, registered_by=who.subject, updated_at=now, active=True,
                        **form)
            s.add(head)
            self._changed(s, who, "head", head.id, "registered", {}, now)
            return json_response(_head_view(head), 201)

    @http("GET", "/heads/<string:head_id>")
    @api("A household head, and the households they look after", answers={200: {"type": "object"}})
    def head(self, request, head_id):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            head = self._head(s, head_id)
            if who.subject != head.id:
                access.may_keep_heads(who, head.village_code)
            households = s.scalars(select(Household.id).where(Household.head_id == head.id,
                                                              Household.active.is_(True))).all()
            return json_response({**_head_view(head), "households": sorted(households)})

    @http("PATCH", "/heads/<string:head_id>")
    @api("Edit a household head: name, phone, party membership", body=HeadEdit, answers={200: IdView})
    def edit_head(self, request, head_id):
        who = self.staff.of(request)
        form = read_json(request, HeadEdit())
        now = self.clock.now()
        with self.db.transaction() as s:
            head = self._head(s, head_id, lock=True)
            access.may_keep_heads(who, head.village_code)
            if not head.active:
                raise HttpError(409, f"head {head.id} was deactivated; register them again")
            before = {k: getattr(head, k) for k in form}
            for key, value in form.items():
                setattr(head, key, value)
            head.updated_at = now
            self._changed(s, who, "head", head.id, "edited", before, now)
            return json_response(_head_view(head))

    @http("POST", "/heads/<string:head_id>/deactivate")
    @api("Deactivate a household head: their households and open visits go to each household's grid worker",
         answers={200: IdView, 409: None})
    def deactivate_head(self, request, head_id):
        """Nothing is deleted: the head stays on the record, inactive; each household they looked after has no
        head until another is named, and every visit they answered for goes to its grid worker (visits.py)."""
        who = self.staff.of(request)
        now = self.clock.now()
        with self.db.transaction() as s:
            head = self._head(s, head_id, lock=True)
            access.may_keep_heads(who, head.village_code)
            if not head.active:
                raise HttpError(409, f"head {head.id} is already deactivated")
            head.active, head.deactivated_at, head.deactivated_by, head.updated_at = False, now, who.subject, now
            households = s.scalars(select(Household).where(Household.head_id == head.id)).all()
            for household in households:
                self._changed(s, who, "household", household.id, "edited", {"head_id": head.id}, now)
                household.head_id, household.updated_at = None, now
                self._reassign_visits(s, household)
            self._changed(s, who, "head", head.id, "deactivated", {"active": True}, now)
            return json_response({**_head_view(head), "households_without_head": sorted(h.id for h in households)})

    # --- households ------------------------------------------------------------------------------

    @http("POST", "/households")
    @api("Register a household: address, grid, key groups, members, who answers for it, its visit plans",
         body=HouseholdIn, answers={201: IdView})
    def register_household(self, request):
        who = self.staff.of(request)
        form = read_json(request, HouseholdIn())
        access.may_keep_household(who, form["grid_code"])
        now = self.clock.now()
        with self.db.transaction() as s:
            self._check_head(s, form.get("head_id"), form["village_code"])
            members, plans = form.pop("members"), form.pop("plans")
            household = Household(id=_new_id("HH"), registered_at=now, updated_at=now, active=True, version=1,
                                  **{**form, "key_groups": ",".join(sorted(set(form["key_groups"])))})
            s.add(household)
            s.flush()
            self._write_members(s, household.id, members)
            for plan in plans:
                self._start_plan(s, PlanRow(household_id=household.id, active=True, created_at=now, **plan),
                                 household, now)
            self._changed(s, who, "household", household.id, "registered", {}, now)
            return json_response({"id": household.id, "plans": len(plans), "members": len(members)}, 201)

    @http("GET", "/households/<string:household_id>")
    @api("A household with its members and plans (personal data: every read is recorded)",
         answers={200: {"type": "object"}})
    def household(self, request, household_id):
        who = self.staff.of(request)
        now = self.clock.now()
        with self.db.transaction() as s:
            household = self._household(s, household_id)
            access.may_read_household(who, household)
            s.add(HouseholdRead(at=now, reader=who.subject[:64], role=who.role, household_id=household.id))
            members = s.scalars(select(Member).where(Member.household_id == household.id).order_by(Member.id)).all()
            plans = s.scalars(select(PlanRow).where(PlanRow.household_id == household.id).order_by(PlanRow.id)).all()
            return json_response(_household_view(household, members, plans))

    @http("PATCH", "/households/<string:household_id>")
    @api("Edit a household; moving it (grid_code with village_code) moves its open visits to whoever answers there",
         body=HouseholdEdit, answers={200: IdView, 409: None})
    def edit_household(self, request, household_id):
        who = self.staff.of(request)
        form = read_json(request, HouseholdEdit())
        now = self.clock.now()
        with self.db.transaction() as s:
            household = self._household(s, household_id, lock=True)
            access.may_keep_household(who, household.grid_code)
            if "grid_code" in form:  # the new grid must be theirs to keep too
                access.may_keep_household(who, form["grid_code"])
            if not household.active:
                raise HttpError(409, f"household {household.id} was deactivated")
            if "head_id" in form:
                self._check_head(s, form["head_id"], form.get("village_code", household.village_code))
            members = form.pop("members", None)
            if "key_groups" in form:
                form["key_groups"] = ",".join(sorted(set(form["key_groups"])))
            before = {k: getattr(household, k) for k in form}
            for key, value in form.items():
                setattr(household, key, value)
            if members is not None:
                before["members"] = len(s.scalars(select(Member.id).where(Member.household_id == household.id)).all())
                s.execute(Member.__table__.delete().where(Member.household_id == household.id))
                self._write_members(s, household.id, members)
            household.version += 1
            household.updated_at = now
            moved = self._reassign_visits(s, household)
            self._changed(s, who, "household", household.id, "edited", before, now)
            return json_response({"id": household.id, "version": household.version, "visits_moved": moved})

    @http("POST", "/households/<string:household_id>/deactivate")
    @api("Take a household off the register (moved away, passed away): its plans stop, its open visits are "
         "cancelled; nothing is deleted", answers={200: IdView, 409: None})
    def deactivate_household(self, request, household_id):
        who = self.staff.of(request)
        now = self.clock.now()
        with self.db.transaction() as s:
            household = self._household(s, household_id, lock=True)
            access.may_keep_household(who, household.grid_code)
            if not household.active:
                raise HttpError(409, f"household {household.id} is already deactivated")
            household.active, household.deactivated_at, household.updated_at = False, now, now
            s.execute(update(PlanRow).where(PlanRow.household_id == household.id).values(active=False))
            cancelled = sum(visits.cancel(v) for v in self._open_visits(s, household.id))
            self._changed(s, who, "household", household.id, "deactivated", {"active": True}, now)
            return json_response({"id": household.id, "visits_cancelled": cancelled})

    @http("POST", "/households/<string:household_id>/plans")
    @api("Add a visit plan to a household (e.g. daily by phone for someone living alone)", body=PlanIn,
         answers={201: IdView})
    def add_plan(self, request, household_id):
        who = self.staff.of(request)
        form = read_json(request, PlanIn())
        now = self.clock.now()
        with self.db.transaction() as s:
            household = self._household(s, household_id, lock=True)
            access.may_keep_household(who, household.grid_code)
            if not household.active:
                raise HttpError(409, f"household {household.id} was deactivated")
            plan = self._start_plan(s, PlanRow(household_id=household.id, active=True, created_at=now, **form),
                                    household, now)
            self._changed(s, who, "household", household.id, "edited", {"plan_added": plan.id}, now)
            return json_response({"id": str(plan.id)}, 201)

    @http("POST", "/plans/<int:plan_id>/stop")
    @api("Stop a visit plan: no more visits from it (those already made stay)", answers={200: IdView})
    def stop_plan(self, request, plan_id):
        who = self.staff.of(request)
        now = self.clock.now()
        with self.db.transaction() as s:
            plan = s.get(PlanRow, plan_id, with_for_update=True)
            if plan is None:
                raise HttpError(404, f"plan {plan_id} not found")
            household = self._household(s, plan.household_id)
            access.may_keep_household(who, household.grid_code)
            plan.active = False
            self._changed(s, who, "household", household.id, "edited", {"plan_stopped": plan.id}, now)
            return json_response({"id": str(plan.id), "active": False})

    # --- visits ----------------------------------------------------------------------------------

    @http("POST", "/days/<string:day>/open")
    @api("Open a day of visits now (the timer opens each day as it begins): a drill, or the demo",
         answers={200: {"type": "object"}, 409: None})
    def open_day_now(self, request, day):
        who = self.staff.of(request)
        who.require(OPENS_DAYS, what="open a day of visits")
        try:
            when = date.fromisoformat(day)
        except ValueError:
            raise HttpError(400, f"day: {day[:20]!r} is not a date (YYYY-MM-DD)") from None
        made = self._open_day(when, self.clock.now())
        if made is None:
            raise HttpError(409, f"day {when} was opened already")
        return json_response({"day": when.isoformat(), "visits": made})

    @timer(interval=5, eager=True)
    def open_today(self) -> int | None:
        """Today's visits, once, as soon as the day has begun (China time); and the visits of plans that began
        while a day was being opened (`_catch_up`)."""
        now = self.clock.now()
        made = self._open_day(schedules.local_day(now), now)
        try:
            self._catch_up(now)
        except IntegrityError:  # a registration wrote the same visit meanwhile: the next tick looks again
            pass
        return made

    @timer(interval=TICK_SECONDS)
    def escalate_missed(self) -> int:
        """Visits past their deadline climb a rung (visits.escalate), a batch per transaction."""
        ladder, now = visits.Ladder.from_config(self.config.get("VISIT_LADDER_MINUTES")), self.clock.now()
        with self.db.transaction() as s:
            due = claim_due(s, select(Visit).where(Visit.state == "due", Visit.due_at <= now)
                            .order_by(Visit.due_at, Visit.id), limit=ESCALATE_BATCH)
            households = {h.id: h for h in s.scalars(select(Household).where(
                Household.id.in_({v.household_id for v in due})))} if due else {}
            events = [ev for v in due for ev in visits.escalate(v, households[v.household_id], now, ladder,
                                                                self.clock.span)]
            self.outbox.add(s, events)
            return len(due)

    @timer(interval=3600, eager=True)
    def forget_departed(self) -> int:
        """Retention, hourly: the personal data of households and heads deactivated more than RETENTION_DAYS
        (180) ago is erased (retention.py)."""
        now = self.clock.now()
        with self.db.transaction() as s:
            return retention.forget(s, now - timedelta(days=float(self.config.get("RETENTION_DAYS", 180))), now)

    @http("GET", "/visits")
    @api("Visits: a household head's own, or those of an area (default the caller's), open ones by default",
         query=VisitsQuery, answers={200: {"type": "object"}})
    def list_visits(self, request):
        who = self.staff.of(request)
        query = read_query(request, VisitsQuery())
        area = access.may_read_visits(who, query["area"])
        with self.db.transaction() as s:
            pick = select(Visit)
            if who.role == "household_head":
                pick = pick.where(Visit.responsible_id == who.subject, Visit.level == visits.HEAD)
            elif "-" in area:
                pick = pick.where(Visit.grid_code == area)
            else:
                pick = pick.where(Visit.village_code.startswith(area))
            if query["state"] != "all":
                pick = pick.where(Visit.state == query["state"])
            rows = s.scalars(pick.order_by(Visit.due_at.is_(None), Visit.due_at, Visit.id).limit(query["limit"]))
            return json_response({"visits": [_visit_view(v) for v in rows]})

    @http("POST", "/visits/<string:visit_id>/record")
    @api("Record a visit made (or tried): contact made or not, and the needs found, each becoming a ticket "
         "through intake (channel grid_visit)", body=VisitRecordIn, answers={200: {"type": "object"}, 409: None})
    def record_visit(self, request, visit_id):
        who = self.staff.of(request)
        form = read_json(request, VisitRecordIn())
        now = self.clock.now()
        with self.db.transaction() as s:
            visit = s.get(Visit, visit_id[:24], with_for_update=True)
            if visit is None:
                raise HttpError(404, f"visit {visit_id[:24]} not found")
            access.may_record(who, visit)
            household = self._household(s, visit.household_id)
            try:
                events = visits.record(visit, who.subject, form["contact_made"], len(form["needs"]), now)
            except visits.VisitClosed as exc:
                raise HttpError(409, str(exc)) from None
            visit.note = form["note"]
            needs = [Need(id=str(uuid.uuid4()), kind="visit", visit_id=visit.id, household_id=household.id,
                          found_at=now, position=position, status="sent", category=n["category"],
                          description=n["description"], attributes=json.dumps(n["attributes"], ensure_ascii=False))
                     for position, n in enumerate(form["needs"])]
            s.add_all(needs)
            for need in needs:  # to intake's front door, in this transaction (the outbox)
                self.outbox.add_message(s, register.SUBMISSIONS_EXCHANGE, "submit.grid_visit", need.id,
                                        register.submission(need, household))
            self.outbox.add(s, events)
            return json_response({**_visit_view(visit), "needs": [n.id for n in needs]})

    @on_replies(register.RECEIPTS, "intake")
    def note_receipt(self, envelope):
        """intake's answer to a need sent: the ticket it made (or joined), or why it made none. The same answer
        again changes nothing."""
        receipt = read_data(envelope, ReceiptIn)
        with self.db.transaction() as s:
            need = s.get(Need, receipt["message_id"][:36], with_for_update=True)
            if need is None:
                log.warning("a receipt for %s, which is no need of ours", receipt["message_id"][:36])
                return
            need.status, need.ticket_no, need.reason = receipt["status"][:10], receipt["ticket_no"], receipt["reason"]
            if receipt["status"] == "rejected":
                log.warning("need %s (%s %s) made no ticket: %s", need.id, need.kind, need.visit_id or need.talk_id,
                            receipt["reason"])

    @http("POST", "/night-talks")
    @api("Record a village night talk (乡村夜话) and what was raised: each need or group opinion becomes a ticket "
         "through intake (channel night_talk)", body=NightTalkIn, answers={201: {"type": "object"}})
    def record_night_talk(self, request):
        """A villager's need is acknowledged and followed up with that villager; a group's opinion with the village
        committee, at the contact the record gives (register.talk_submission)."""
        who = self.staff.of(request)
        form = read_json(request, NightTalkIn())
        access.may_record_talk(who, form["village_code"])
        now = self.clock.now()
        if form["held_on"] > schedules.local_day(now):
            raise HttpError(400, "invalid fields", {"held_on": ["a night talk is recorded once it was held"]})
        raised = form.pop("raised")
        with self.db.transaction() as s:
            talk = NightTalk(id=_new_id("NT"), recorded_by=who.subject[:64], recorded_at=now, **form)
            s.add(talk)
            s.flush()
            name = register.villages()[talk.village_code]
            needs = []
            for position, item in enumerate(raised):
                need = Need(id=str(uuid.uuid4()), kind="talk" if item["kind"] == "need" else "opinion",
                            talk_id=talk.id, found_at=now, position=position, status="sent", category=item["category"],
                            description=item["description"],
                            attributes=json.dumps(item["attributes"], ensure_ascii=False))
                s.add(need)
                self.outbox.add_message(s, register.SUBMISSIONS_EXCHANGE, "submit.night_talk", need.id,
                                        register.talk_submission(need, talk, item["resident"], name))
                needs.append(need.id)
            return json_response({"id": talk.id, "needs": needs}, 201)

    @http("GET", "/night-talks")
    @api("Night talks held in an area, with what was raised at each and the ticket it made",
         query=NeedsQuery, answers={200: {"type": "object"}})
    def night_talks(self, request):
        who = self.staff.of(request)
        query = read_query(request, NeedsQuery())
        area = query["area"] or who.area
        who.require(STAFF, area.split("-")[0], "read the night talks of this area")
        since = schedules.local_day(self.clock.now()) - timedelta(days=query["days"] - 1)
        with self.db.transaction() as s:
            talks = s.scalars(select(NightTalk).where(NightTalk.village_code.startswith(area.split("-")[0]),
                                                      NightTalk.held_on >= since)
                              .order_by(NightTalk.held_on, NightTalk.id).limit(query["limit"])).all()
            raised: dict[str, list] = {}
            for n in s.scalars(select(Need).where(Need.talk_id.in_([t.id for t in talks]))
                                .order_by(Need.position, Need.id)):
                raised.setdefault(n.talk_id, []).append({
                    "id": n.id, "kind": n.kind, "category": n.category, "description": n.description,
                    "status": n.status, "ticket_no": n.ticket_no, "reason": n.reason})
            return json_response({"night_talks": [
                {"id": t.id, "village_code": t.village_code, "held_on": t.held_on.isoformat(), "host": t.host,
                 "attendance": t.attendance, "notes": t.notes, "recorded_by": t.recorded_by,
                 "raised": raised.get(t.id, [])} for t in talks]})

    @http("GET", "/needs")
    @api("Needs found on visits of an area and what became of each: its ticket, or why intake refused it",
         query=NeedsQuery, answers={200: {"type": "object"}})
    def needs(self, request):
        who = self.staff.of(request)
        query = read_query(request, NeedsQuery())
        area = query["area"] or who.area
        who.require(STAFF, area, "read the needs found in this area")
        since = schedules.local_day(self.clock.now()) - timedelta(days=query["days"] - 1)
        if "-" in area:  # a grid: what its visits found
            where = Visit.grid_code == area
        else:  # an area: its visits' needs and its night talks'
            where = or_(Visit.village_code.startswith(area), NightTalk.village_code.startswith(area))
        with self.db.transaction() as s:
            rows = s.execute(select(Need, Visit.grid_code, func.coalesce(Visit.village_code, NightTalk.village_code))
                             .outerjoin(Visit, Need.visit_id == Visit.id)
                             .outerjoin(NightTalk, Need.talk_id == NightTalk.id)
                             .where(where, Need.found_at >= schedules.day_begins(since))
                             .order_by(Need.found_at, Need.position, Need.id).limit(query["limit"])).all()
            return json_response({"needs": [
                {"id": n.id, "kind": n.kind, "visit_id": n.visit_id, "household_id": n.household_id,
                 "talk_id": n.talk_id, "village_code": village, "grid_code": grid, "category": n.category,
                 "description": n.description, "found_at": _iso(n.found_at), "status": n.status,
                 "ticket_no": n.ticket_no, "reason": n.reason} for n, grid, village in rows]})

    @http("GET", "/ledger/visits")
    @api("The visits' ledger (走访台账) of an area: due, done, on time, needs found; key households not reached",
         query=LedgerQuery, answers={200: {"type": "object"}})
    def visits_ledger(self, request):
        """Staff of the area (default the caller's); ledger.py says what each figure counts."""
        who = self.staff.of(request)
        query = read_query(request, LedgerQuery())
        area = query["area"] or who.area
        who.require(STAFF, area, "read the ledger of this area")
        now = self.clock.now()
        today = schedules.local_day(now)
        with self.db.transaction() as s:
            book = ledger.visits_ledger(s, area, today - timedelta(days=query["days"] - 1), today, now,
                                        query["level"])
            book["not_reached"] = ledger.not_reached(s, area, query["not_reached_days"], now)
            book["not_reached_days"] = query["not_reached_days"]
            return json_response(book)

    @http("GET", "/openapi.json")
    @api("This API, described (OpenAPI 3.1)", answers={200: {"type": "object"}}, auth=None)
    def openapi(self, request):
        return json_response(OPENAPI)

    # --- helpers ---------------------------------------------------------------------------------

    def _open_day(self, day: date, now: datetime) -> int | None:
        """Make the visits of `day` (once: None when it was opened already)."""
        try:
            return self._make_visits(day, now)
        except IntegrityError:  # another instance (or tick) opened it first, since this one looked
            return None

    def _make_visits(self, day: date, now: datetime) -> int | None:
        with self.db.transaction() as s:
            if s.get(DayOpened, day) is not None:
                return None
            mark = DayOpened(day=day, opened_at=now, visits=0)
            s.add(mark)
            s.flush()  # a second instance opening the same day fails here, on the primary key, and rolls back
            plans = s.execute(select(PlanRow, Household).join(Household, PlanRow.household_id == Household.id)
                              .where(PlanRow.active.is_(True), Household.active.is_(True))).all()
            rows = []
            for plan, household in plans:
                rule = schedules.Plan(plan.kind, plan.every_days, plan.due_minutes, plan.starts_on)
                if schedules.falls_on(rule, day):
                    due = schedules.due_at(rule, day, now, self.clock.span)
                    rows.append({"id": _visit_id(day, plan.id), "missed": False,
                                 **visits.new_visit(household, plan, day, due)})
            for start in range(0, len(rows), OPEN_BATCH):
                s.execute(Visit.__table__.insert(), rows[start:start + OPEN_BATCH])
            mark.visits = len(rows)
            return len(rows)

    def _start_plan(self, s, plan: PlanRow, household: Household, now: datetime) -> PlanRow:
        """A new plan falling on a day already opened (today, or one opened ahead) makes that day's visit at once,
        its deadline running from now: a household registered at noon with a daily call is called today."""
        s.add(plan)
        s.flush()
        rule = schedules.Plan(plan.kind, plan.every_days, plan.due_minutes, plan.starts_on)
        for day in s.scalars(select(DayOpened.day).where(DayOpened.day >= schedules.local_day(now))):
            if schedules.falls_on(rule, day):
                s.add(Visit(id=_visit_id(day, plan.id), missed=False, **visits.new_visit(
                    household, plan, day, schedules.due_at(rule, day, now, self.clock.span))))
        return plan

    def _catch_up(self, now: datetime) -> int:
        """A plan committed while its day was being opened saw no opened day, and the opening did not see the
        plan: its visit is made here, the next tick. Only plans begun shortly before a day was opened are looked
        at (CATCH_UP); a visit already made is not made again (one per plan and day)."""
        made = 0
        with self.db.transaction() as s:
            for day, opened_at in s.execute(select(DayOpened.day, DayOpened.opened_at)
                                            .where(DayOpened.day >= schedules.local_day(now))).all():
                late = s.execute(select(PlanRow, Household).join(Household, PlanRow.household_id == Household.id)
                                 .where(PlanRow.active.is_(True), Household.active.is_(True),
                                        PlanRow.created_at >= as_utc(opened_at) - CATCH_UP,
                                        ~select(Visit.id).where(Visit.plan_id == PlanRow.id, Visit.day == day)
                                        .exists())).all()
                for plan, household in late:
                    rule = schedules.Plan(plan.kind, plan.every_days, plan.due_minutes, plan.starts_on)
                    if schedules.falls_on(rule, day):
                        s.add(Visit(id=_visit_id(day, plan.id), missed=False, **visits.new_visit(
                            household, plan, day, schedules.due_at(rule, day, now, self.clock.span))))
                        made += 1
        return made

    def _reassign_visits(self, s, household) -> int:
        return sum(visits.reassign(v, household) for v in self._open_visits(s, household.id))

    def _open_visits(self, s, household_id: str) -> list[Visit]:
        return list(s.scalars(select(Visit).where(Visit.household_id == household_id, Visit.state == "due")
                              .with_for_update()))

    def _write_members(self, s, household_id: str, members: list[dict]) -> None:
        for member in members:
            s.add(Member(household_id=household_id, **{**member, "key_groups": ",".join(sorted(set(
                member["key_groups"])))}))

    def _check_head(self, s, head_id: str | None, village_code: str) -> None:
        if head_id is None:
            return
        head = s.get(Head, head_id)
        if head is None or not head.active:
            raise HttpError(400, "invalid fields", {"head_id": [f"no active household head {head_id}"]})
        if head.village_code != village_code:
            raise HttpError(400, "invalid fields", {"head_id": [f"head {head_id} is of another village"]})

    def _head(self, s, head_id: str, lock: bool = False) -> Head:
        head = s.get(Head, head_id[:20], with_for_update=lock)
        if head is None:
            raise HttpError(404, f"household head {head_id[:20]} not found")
        return head

    def _household(self, s, household_id: str, lock: bool = False) -> Household:
        household = s.get(Household, household_id[:20], with_for_update=lock)
        if household is None:
            raise HttpError(404, f"household {household_id[:20]} not found")
        return household

    def _changed(self, s, who: Principal, what: str, subject_id: str, change: str, before: dict, now) -> None:
        s.add(RegisterChange(at=now, actor=who.subject[:64], role=who.role, what=what, subject_id=subject_id,
                             change=change, before=json.dumps(before, ensure_ascii=False, default=str)))


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4).upper()}"


def _visit_id(day: date, plan_id: int) -> str:
    return f"V{day:%Y%m%d}-{plan_id:08d}"


def _iso(value) -> str | None:
    """An ISO time, always with its offset (SQLite hands back naive UTC)."""
    return as_utc(value).isoformat() if value is not None else None


def _head_view(head: Head) -> dict:
    return {"id": head.id, "name": head.name, "phone": head.phone, "village_code": head.village_code,
            "party_member": head.party_member, "active": head.active,
            "deactivated_at": _iso(head.deactivated_at)}


def _household_view(h: Household, members, plans) -> dict:
    return {"id": h.id, "village_code": h.village_code, "grid_code": h.grid_code, "address": h.address,
            "phone": h.phone, "email": h.email, "contact_by": h.contact_by,
            "key_groups": [g for g in h.key_groups.split(",") if g],
            "grid_worker_id": h.grid_worker_id, "head_id": h.head_id, "active": h.active, "version": h.version,
            "members": [{"name": m.name, "relation": m.relation, "born": m.born,
                         "key_groups": [g for g in m.key_groups.split(",") if g]} for m in members],
            "plans": [{"id": p.id, "kind": p.kind, "every_days": p.every_days, "due_minutes": p.due_minutes,
                       "starts_on": p.starts_on.isoformat(), "active": p.active} for p in plans]}


def _visit_view(v: Visit) -> dict:
    return {"id": v.id, "household_id": v.household_id, "day": v.day.isoformat(), "kind": v.kind,
            "village_code": v.village_code, "grid_code": v.grid_code, "level": visits.LEVELS[v.level],
            "responsible_id": v.responsible_id, "state": v.state, "due_at": _iso(v.due_at),
            "first_due_at": _iso(v.first_due_at), "missed": v.missed, "done_at": _iso(v.done_at),
            "done_by": v.done_by, "contact_made": v.contact_made, "on_time": v.on_time}


OPENAPI = document(OutreachService, "送到家 outreach: households, household heads and visits",
                   "Grid workers, village cadres and dispatchers keep the household register; household heads and "
                   "grid workers record visits. Every call but this document needs `Authorization: Bearer <JWT>`.")
