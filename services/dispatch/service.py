"""dispatch: owns each ticket's lifecycle — routing, offers, acceptance, resolution, follow-up — and
supervises it: deadlines that act, the escalation ladder, return and transfer, proxy items, call tasks."""
from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import timedelta

from nameko.dependency_providers import Config
from sqlalchemy import bindparam, delete, func, insert, select

from services.common.clock import Time
from services.common.database import Database
from services.common.envelope import MalformedEvent, read_data
from services.common.http import HttpError, api, http, json_response, read_json, read_query
from services.common.inbox import Inbox
from services.common.logs import LogContext
from services.common.messaging import on_event
from services.common.openapi import document
from services.common.operations import Operations
from services.common.outbox import Outbox
from services.common.schedule import TICK_SECONDS, claim_due, timer
from services.common.staff import DEPARTMENT_STAFF, DISPATCHERS, STAFF, WORKERS
from services.common.tokens import StaffTokens

from . import access, calls, cases, lifecycle, retention
from .areas import AreaMap
from .dependencies import Areas, Supervision
from .events import DIGESTS, SCHEMAS, WORK_EXCHANGE
from .ledger import LedgerQuery, escalated, is_overdue, ledger_csv, ledger_of, overdue_now
from .models import Case, Deadline, EarlyAcknowledgement, HistoryEntry, InboxRow, OutboxRow, Task
from .routing import (TOP, UnknownCounty, UnknownGrid, UnknownVillage, department_key, route, route_to_county_centre,
                      to_department, to_proxy_clerk, to_worker, up_to)
from .schemas import (CancelForm, CancelledIn, CaseView, DecideForm, FeedbackIn, FileForm, LedgerView,
                      MatchFailedIn, NotificationFailedIn, NotifiedIn, PlaceForm, QueueQuery, ReassignForm,
                      ResolveForm, ReturnForm, SurveyUnansweredIn, TaskDoneForm, TasksQuery, TaskView,
                      TicketReceivedIn, TicketView, TransferForm, VolunteerAnsweredIn, VolunteerOfferedIn)
from .supervision import as_utc, still_watching, timers_for

class DispatchService(Operations):
    name = "dispatch"

    log_context = LogContext()
    db = Database()
    outbox = Outbox(OutboxRow, SCHEMAS, extra_exchanges=(WORK_EXCHANGE,), digests=DIGESTS)
    inbox = Inbox(InboxRow)
    areas = Areas()
    staff = StaffTokens()
    config = Config()
    clock = Time()
    policy = Supervision()

    # --- events ---------------------------------------------------------------------------

    @on_event("intake", "ticket_received", digest="received")
    def open_case(self, envelopes: list[dict]):
        """A relay round's new tickets in one message and one transaction (intake's `received` digest), routed."""
        received = [(envelope, read_data(envelope, TicketReceivedIn)) for envelope in envelopes]
        now = self.clock.now()
        with self.db.transaction() as s:
            for envelope, data in received:
                if self.inbox.first_delivery(s, envelope):
                    self._open_case(s, envelope, data, now)

    def _open_case(self, s, envelope, data, now):
        case = new_case(envelope["ticket_id"], data, now)
        early = s.execute(TAKE_EARLY_ACKNOWLEDGEMENT, {"ticket_id": case.id}).scalar()
        if early is not None:  # the resident heard before dispatch did (a surge)
            self._acknowledged(s, case, early)
        assignment = self._route(s, case, now)
        if case.channel == "hotline":  # 10 秒回拨: whoever got it rings the resident back
            self._new_task(s, case, "callback", assignment, now)
        cases.save(s, case)

    @on_event("notify", "feedback_received", digest="residents")
    def follow_up(self, envelopes: list[dict]):
        """The residents' answers to the follow-up, a relay round's in one message and one transaction (notify's
        `residents` digest)."""
        feedback = [(envelope, read_data(envelope, FeedbackIn)) for envelope in envelopes]
        now = self.clock.now()
        with self.db.transaction() as s:
            for envelope, data in feedback:
                case = self._first_case(s, envelope)
                if case is not None:
                    self._follow_up(s, case, data, now)
                    cases.save(s, case)

    def _follow_up(self, s, case, data, now):
        try:
            events = lifecycle.record_follow_up(case, data["satisfied"], data["comment"], now)
        except lifecycle.InvalidTransition as exc:  # e.g. the 回访 call came first: on the record, no change
            return self._note(s, case, "feedback_received", "resident", f"not applied: {exc}", now)
        self._record(s, case, events, actor="resident", note=data["comment"])
        if case.state == "reopened":
            self._after_follow_up(s, case, now)

    @on_event("intake", "ticket_cancelled")
    def withdraw(self, envelope):
        """The resident withdrew the request (intake checked their proof)."""
        data = read_data(envelope, CancelledIn)
        now = self.clock.now()
        with self._case_of(envelope) as (s, case):
            if case is None:
                return
            try:
                events = lifecycle.cancel(case, "resident", data["reason"], now)
            except lifecycle.InvalidTransition as exc:  # too late to withdraw: the follow-up goes on
                return self._note(s, case, "cancellation_refused", "resident", str(exc), now)
            self._record(s, case, events, actor="resident", note=data["reason"])
            self._end_tasks(s, case, now)

    @on_event("notify", "survey_unanswered")
    def call_back_unanswered(self, envelope):
        """No answer to the follow-up, even after a reminder: the village's duty cadre calls (回访员)."""
        read_data(envelope, SurveyUnansweredIn)
        now = self.clock.now()
        with self._case_of(envelope) as (s, case):
            if case is None:
                return
            if case.state != "resolved":
                return self._note(s, case, "survey_unanswered", "notify", f"no call needed: {case.state}", now)
            who = up_to(1, case.village_code, case.county_code, self.areas, now)
            self._new_task(s, case, "follow_up", who, now)

    @on_event("notify", "notification_failed")
    def reach_unnotified(self, envelope):
        """A message reached the ticket's resident on none of notify's channels: a person phones them (`reach`,
        calls.py), once per message; while such a call is open for the ticket, the history only notes it."""
        data = read_data(envelope, NotificationFailedIn)
        now = self.clock.now()
        with self._case_of(envelope) as (s, case):
            if case is None:
                return
            message = data["message_id"] or envelope["event_id"]
            if s.scalar(select(Task.id).where(Task.kind == "reach", Task.about == message)) is not None:
                return  # this message has its call already (the same failure reported again)
            tried = data["channels_tried"] or [data["channel"]]
            s.add(HistoryEntry(ticket_id=case.id, at=now, event="notification_failed", state=case.state,
                               actor="notify", note=f"{data['template']}: {data['reason']}"[:2000],
                               data=json.dumps({"template": data["template"], "message_id": message,
                                                "channels_tried": tried, "recipient": data["recipient"]},
                                               ensure_ascii=False)))
            if _recipient(data) != "resident":  # staff, or someone whose repeat report joined this ticket
                return
            if s.scalar(select(Task.id).where(Task.ticket_id == case.id, Task.kind == "reach",
                                              Task.done_at.is_(None))) is not None:
                return  # one call tells them: the history names every message it is about
            who = calls.reach_holder(case) or up_to(1, case.village_code, case.county_code, self.areas, now)
            self._new_task(s, case, "reach", who, now, about=message)

    @on_event("notify", "resident_acknowledged", digest="residents")
    def note_acknowledged(self, envelopes: list[dict]):
        """The ledger counts acknowledgements within 10 s: the first one delivered is the time. In a surge it
        may come before the ticket itself (the acknowledgement goes first): kept until the case opens. A relay
        round's in one message and one transaction (notify's `residents` digest)."""
        acks = [(envelope["ticket_id"], read_data(envelope, NotifiedIn)["delivered_at"]) for envelope in envelopes]
        with self.db.transaction() as s:
            for ticket_id, delivered_at in acks:
                case = cases.load(s, ticket_id)
                if case is not None:
                    self._acknowledged(s, case, delivered_at)
                elif s.get(EarlyAcknowledgement, ticket_id) is None:  # once: a repeat changes nothing
                    s.add(EarlyAcknowledgement(ticket_id=ticket_id, delivered_at=delivered_at))
                    s.flush()  # the same ticket again in this batch sees it

    def _acknowledged(self, s, case, delivered_at) -> None:
        """The first acknowledgement's time, on the case (saved here) and in its history."""
        if case.acknowledged_at is None:  # once: no inbox row needed, a repeat changes nothing
            case.acknowledged_at = delivered_at
            cases.save(s, case)  # a new case first: the history refers to it
            s.execute(ADD_HISTORY, {"ticket_id": case.id, "at": delivered_at, "event": "resident_notified",
                                    "state": case.state, "actor": "notify", "note": "ack", "data": json.dumps(
                                        {"template": "ack", "delivered_at": delivered_at.isoformat()})})

    @on_event("volunteer", "volunteer_offered", "volunteer_accepted", "volunteer_declined", "offer_expired",
              "match_failed")
    def note_volunteer(self, envelope):
        now = self.clock.now()
        with self._case_of(envelope) as (s, case):
            if case is None:
                return
            if envelope["event"] == "volunteer_offered":
                offer = read_data(envelope, VolunteerOfferedIn)
                lifecycle.record_volunteer(case, offer["volunteer_id"])
                note = f"{offer['volunteer_name']} ({offer['volunteer_id']}, team {offer['team_id']})"
            elif envelope["event"] == "match_failed":
                note = read_data(envelope, MatchFailedIn)["reason"]
            else:  # the volunteer's answer, or their silence, for the history
                note = read_data(envelope, VolunteerAnsweredIn)["volunteer_id"]
            self._note(s, case, envelope["event"], "volunteer", note, now)

    # --- timers ---------------------------------------------------------------------------

    @timer(interval=TICK_SECONDS)
    def watch_deadlines(self):
        """Fire what is due: each deadline in its own transaction, claimed so one instance fires it."""
        now = self.clock.now()
        with self.db.transaction() as s:
            due = s.scalars(select(Deadline.id).where(Deadline.fired_at.is_(None), Deadline.due_at <= now)
                            .order_by(Deadline.due_at).limit(200)).all()
        for deadline_id in due:
            with self.db.transaction() as s:
                claimed = claim_due(s, select(Deadline).where(Deadline.id == deadline_id,
                                                              Deadline.fired_at.is_(None)))
                if claimed:
                    self._fire(s, claimed[0], now)
        return len(due)

    @timer(interval=TICK_SECONDS)
    def apply_early_acknowledgements(self):
        """An acknowledgement kept while its case was being opened in another transaction (PostgreSQL, two
        workers at once): applied now that the case is there."""
        with self.db.transaction() as s:
            crossed = s.scalars(select(EarlyAcknowledgement).join(Case, Case.id == EarlyAcknowledgement.ticket_id)
                                .limit(200).with_for_update(skip_locked=True)).all()
            for early in crossed:
                case = cases.load(s, early.ticket_id)
                self._acknowledged(s, case, early.delivered_at)
                s.delete(early)
            return len(crossed)

    @timer(interval=3600, eager=True)
    def forget_old_contacts(self):
        """Retention, hourly: addresses and residents' words of cases closed more than RETENTION_DAYS ago."""
        cutoff = self.clock.now() - timedelta(days=float(self.config.get("RETENTION_DAYS", 180)))
        with self.db.transaction() as s:
            return retention.forget(s, cutoff)

    # --- the console API --------------------------------------------------------------------

    @http("POST", "/tickets/<string:ticket_id>/accept")
    @api("Accept an offered ticket (签收): its assignee only", answers={200: CaseView, 409: None})
    def accept(self, request, ticket_id):
        who = self.staff.of(request)
        return self._act(ticket_id, who, lambda c: access.may_work(who, c, "accept"),
                         lambda c, now: lifecycle.accept(c, now, self.policy))

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

    @http("POST", "/tickets/<string:ticket_id>/return")
    @api("Return a ticket with a reason (退单): its assignee only; a dispatcher above reassigns it",
         body=ReturnForm, answers={200: CaseView, 409: None})
    def return_ticket(self, request, ticket_id):
        who = self.staff.of(request)
        reason = read_json(request, ReturnForm())["reason"]
        return self._act(ticket_id, who, lambda c: access.may_work(who, c, "return"), lambda c, now: (
            lifecycle.return_ticket(c, reason, up_to(2, c.village_code, c.county_code, self.areas, now), now,
                                    self.policy)), note=reason)

    @http("POST", "/tickets/<string:ticket_id>/reassign")
    @api("Reassign to a grid's worker on duty or to a named grid worker: a dispatcher of the area",
         body=ReassignForm, answers={200: CaseView, 409: None})
    def reassign(self, request, ticket_id):
        who = self.staff.of(request)
        form = read_json(request, ReassignForm())
        def step(case, now):
            target = to_worker(form["grid_code"], form["assignee_id"], self.areas, now)
            who.require(DISPATCHERS, target.grid_code, "reassign to that grid")
            case.village_code = target.area_path[3]
            case.handling = "grid" if case.handling == "department" else case.handling
            return lifecycle.reassign(case, target, form["reason"], now, self.policy)
        return self._act(ticket_id, who, lambda c: access.may_dispatch(who, c, "reassign"), step,
                         note=form["reason"])

    @http("POST", "/tickets/<string:ticket_id>/transfer")
    @api("Transfer to a department's desk in the county (转办): a dispatcher of the area",
         body=TransferForm, answers={200: CaseView, 409: None})
    def transfer(self, request, ticket_id):
        who = self.staff.of(request)
        form = read_json(request, TransferForm())
        return self._act(ticket_id, who, lambda c: access.may_dispatch(who, c, "transfer"), lambda c, now: (
            lifecycle.transfer(c, form["department"], to_department(form["department"], c.county_code, self.areas),
                               form["reason"], now, self.policy)), note=form["reason"])

    @http("POST", "/tickets/<string:ticket_id>/cancel")
    @api("Cancel with a reason: a dispatcher of the area (a resident withdraws through intake)",
         body=CancelForm, answers={200: CaseView, 409: None})
    def cancel(self, request, ticket_id):
        who = self.staff.of(request)
        reason = read_json(request, CancelForm())["reason"]
        return self._act(ticket_id, who, lambda c: access.may_dispatch(who, c, "cancel"),
                         lambda c, now: lifecycle.cancel(c, "dispatcher", reason, now), note=reason)

    @http("POST", "/tickets/<string:ticket_id>/file")
    @api("Filed with the department on the resident's behalf (代办): its assignee (the proxy clerk)",
         body=FileForm, answers={200: CaseView, 409: None})
    def file(self, request, ticket_id):
        who = self.staff.of(request)
        note = read_json(request, FileForm())["note"]
        return self._act(ticket_id, who, lambda c: access.may_work(who, c, "file with the department"),
                         lambda c, now: lifecycle.file_with_department(
                             c, note, now, self.policy, department_key(c.department, c.county_code)), note=note)

    @http("POST", "/tickets/<string:ticket_id>/decide")
    @api("The department's decision on a filed item: that department's staff in the county",
         body=DecideForm, answers={200: CaseView, 409: None})
    def decide(self, request, ticket_id):
        who = self.staff.of(request)
        form = read_json(request, DecideForm())
        return self._act(ticket_id, who, lambda c: access.may_decide(who, c),
                         lambda c, now: lifecycle.decide(c, form["approved"], form["decision"], now),
                         note=form["decision"])

    @http("GET", "/tasks")
    @api("Call tasks: mine, or (dispatchers, supervisors) those of an area", query=TasksQuery,
         answers={200: TaskView}, many=True)
    def tasks(self, request):
        who = self.staff.of(request)
        q = read_query(request, TasksQuery())
        query = select(Task)
        if q["area"] is not None or who.role not in WORKERS:
            area = q["area"] or who.area
            access.may_list(who, area)
            query = query.where(Task.area_code.startswith(area, autoescape=True))
        else:
            query = query.where(Task.assignee_id == who.subject)
        if q["state"] != "all":
            query = query.where(Task.done_at.is_(None) if q["state"] == "open" else Task.done_at.is_not(None))
        with self.db.transaction() as s:
            return json_response([task_view(t) for t in s.scalars(query.order_by(Task.due_at).limit(500))])

    @http("POST", "/tasks/<int:task_id>/done")
    @api("Record a call's outcome: the task's assignee (回访: satisfied closes, unsatisfied reopens)",
         body=TaskDoneForm, answers={200: TaskView, 409: None})
    def task_done(self, request, task_id):
        who = self.staff.of(request)
        form = read_json(request, TaskDoneForm())
        now = self.clock.now()
        with self.db.transaction() as s:
            task = s.get(Task, task_id)
            if task is None:
                raise HttpError(404, f"task {task_id} not found")
            access.may_call(who, task)
            case = self._case(s, task.ticket_id, http=True)
            try:
                events = [calls.complete(task, form["outcome"], form["note"], who.subject, now)]
                events += self._call_outcome(case, task, form["note"], now)
            except (calls.TaskDone, lifecycle.InvalidTransition) as exc:
                raise HttpError(409, str(exc)) from None
            except calls.BadOutcome as exc:
                raise HttpError(400, str(exc)) from None
            self._record(s, case, events, actor=who.subject, note=form["note"])
            if case.state == "reopened":
                self._after_follow_up(s, case, now)
            cases.save(s, case)
            return json_response(task_view(task))

    @http("POST", "/tickets/<string:ticket_id>/place")
    @api("Place a request known only by a map point in its village: a dispatcher of its county",
         body=PlaceForm, answers={200: CaseView, 409: None})
    def place(self, request, ticket_id):
        who = self.staff.of(request)
        village = read_json(request, PlaceForm())["village_code"]
        return self._act(ticket_id, who, lambda c: access.may_place(who, c), lambda c, now: lifecycle.place(
            c, village, self._assignment_in(village, c, now), now, self.policy), note=f"placed in {village}")

    @http("GET", "/tickets/<string:ticket_id>")
    @api("A ticket with its history: staff of its area, its assignee and supervisor", answers={200: TicketView})
    def ticket(self, request, ticket_id):
        who = self.staff.of(request)
        with self.db.transaction() as s:
            case = self._case(s, ticket_id, http=True, lock=False)
            access.may_read(who, case)
            history = s.scalars(select(HistoryEntry).where(HistoryEntry.ticket_id == ticket_id)
                                .order_by(HistoryEntry.id)).all()
            return json_response({**case_view(case, self.areas, self.clock.now()), "history": [
                {"at": _iso(h.at), "event": h.event, "state": h.state, "actor": h.actor,
                 "note": h.note} for h in history]})

    @http("GET", "/queues/<string:area_code>")
    @api("The cases of an area in one or more states (offered by default; `open`: all but closed and cancelled), "
         "optionally only those overdue now, that missed a deadline, or escalated at least once, most urgent first, "
         "at most 500: "
         "staff of that area", query=QueueQuery, answers={200: CaseView}, many=True)
    def queue(self, request, area_code):
        who = self.staff.of(request)
        access.may_list(who, area_code)
        q = read_query(request, QueueQuery())
        now = self.clock.now()
        query = select(Case).where(Case.state.in_(q["states"]), Case.in_area(area_code))
        if q["overdue"]:
            query = query.where(overdue_now(now))
        if q["missed"]:
            query = query.where(Case.overdue_count > 0)
        if q["escalated"]:
            query = query.where(escalated())
        if who.role == DEPARTMENT_STAFF:
            query = query.where(Case.department == who.department)
        with self.db.transaction() as s:
            cases = s.scalars(query.order_by(Case.priority, Case.accept_due_at, Case.received_at).limit(500)).all()
            return json_response([case_view(c, self.areas, now) for c in cases])

    @http("GET", "/ledger")
    @api("The ledger (台账) of an area inside the caller's: rates by level and period, JSON or CSV",
         query=LedgerQuery, answers={200: LedgerView}, also_as={"text/csv": {"type": "string"}})
    def ledger(self, request):
        who = self.staff.of(request)
        who.require(STAFF, what="read the ledger")
        q = read_query(request, LedgerQuery())
        area = q["area"] or who.area
        access.may_list(who, area)
        with self.db.transaction() as s:
            ledger = ledger_of(s, area, level=q["level"], period=q["period"], now=self.clock.now(), areas=self.areas)
        if q.get("format") == "csv":
            return 200, {"Content-Type": "text/csv; charset=utf-8"}, ledger_csv(ledger)
        return json_response(ledger)

    @http("GET", "/openapi.json")
    @api("This API, described (OpenAPI 3.1)", answers={200: {"type": "object"}}, auth=None)
    def openapi(self, request):
        return json_response(OPENAPI)

    def gauges(self, s) -> dict:
        """What /metrics adds for dispatch: tickets by state, deadlines missed and deadlines waiting to fire."""
        now = self.clock.now()
        by_state = dict(s.execute(select(Case.state, func.count()).group_by(Case.state)).all())
        missed = s.scalar(select(func.count()).select_from(Deadline).where(Deadline.kind == "overdue",
                                                                           Deadline.outcome == "fired"))
        behind = s.scalar(select(func.count()).select_from(Deadline).where(Deadline.fired_at.is_(None),
                                                                           Deadline.due_at <= now))
        return {"tickets_by_state": by_state, "deadlines": {"missed": missed, "due_not_fired": behind}}

    # -- helpers: persistence around the pure rules --

    def _assignment_in(self, village, case, now):
        """Who gets a case in a village: its proxy clerk for 代办 items, else the grid's worker on duty."""
        if case.handling == "proxy":
            return to_proxy_clerk(village, self.areas)
        return route(village, address_key(case), self.areas, now)

    def _route(self, s, case, now):
        try:
            if case.handling == "department":
                assignment = to_department(case.department, case.county_code, self.areas)
            elif case.village_code:
                assignment = self._assignment_in(case.village_code, case, now)
            else:
                assignment = route_to_county_centre(case.county_code, self.areas)
        except (UnknownVillage, UnknownCounty) as exc:  # retrying cannot help: park it with the reason
            raise MalformedEvent(str(exc)) from None
        events = lifecycle.route(case, assignment, now, self.policy)
        self._record(s, case, events, actor="dispatch")
        return assignment

    def _after_follow_up(self, s, case, now):
        """Reopened (重办): routed again; reopened too often, to the town's desk (a supervisor's eye)."""
        if lifecycle.too_often_reopened(case, self.policy):
            up = up_to(2, case.village_code, case.county_code, self.areas, now)
            self._record(s, case, lifecycle.escalate(case, "reopened", up, now, self.policy), actor="dispatch",
                         note=f"reopened {case.reopen_count} times")
        else:
            self._route(s, case, now)

    def _call_outcome(self, case, task, note, now):
        if task.kind != "follow_up":
            return []
        if task.outcome == "unreachable":
            return lifecycle.close_unreached(case, note, now)
        return lifecycle.record_follow_up(case, task.outcome == "satisfied", note, now, how="follow_up_call")

    def _new_task(self, s, case, kind, who, now, about=None):
        task = calls.new_task(Task, case, kind, who, now, self.policy, about=about)
        s.add(task)
        s.flush()  # its id goes into the event
        self._record(s, case, [calls.assigned(task, now)], actor="dispatch")

    def _end_tasks(self, s, case, now):
        for task in s.scalars(select(Task).where(Task.ticket_id == case.id, Task.done_at.is_(None))):
            task.done_at, task.outcome, task.done_by = now, "cancelled", "dispatch"

    def _fire(self, s, deadline, now):
        """A timer is due: warn, or record the overdue and climb the ladder; moot if the step moved on."""
        deadline.fired_at = now
        case = cases.load(s, deadline.ticket_id)
        task = s.get(Task, deadline.task_id) if deadline.task_id else None
        self._fire_on(s, deadline, case, task, now)
        cases.save(s, case)

    def _fire_on(self, s, deadline, case, task, now):
        due = as_utc(deadline.deadline_at)
        if not still_watching(deadline, case, task) or (deadline.kind == "due_soon" and now >= due):
            deadline.outcome = "moot"  # the step moved on, or a warning would come after its deadline
            return
        deadline.outcome = "fired"
        if deadline.kind == "due_soon":
            return self._record(s, case, lifecycle.due_soon(case, deadline.what, due, now), actor="dispatch")
        if task is not None:
            return self._task_overdue(s, case, task, due, now)
        events = lifecycle.overdue(case, deadline.what, due, now)
        if not lifecycle.at_top(case):
            up = up_to(case.level + 1, case.village_code, case.county_code, self.areas, now)
            events += lifecycle.escalate(case, deadline.what, up, now, self.policy)
        self._record(s, case, events, actor="dispatch")

    def _task_overdue(self, s, case, task, due, now):
        events = [lifecycle.overdue_task(case, task.kind, due, now)]
        if task.level < TOP:
            calls.move_up(task, up_to(task.level + 1, case.village_code, case.county_code, self.areas, now), now,
                          self.policy)
            events.append(calls.assigned(task, now))
        self._record(s, case, events, actor="dispatch")

    def _act(self, ticket_id, who, allowed, step, note=""):
        """Load the case, check the caller may (403), apply the rule (409/400), record it as the caller's."""
        now = self.clock.now()
        with self.db.transaction() as s:
            case = self._case(s, ticket_id, http=True)
            allowed(case)
            try:
                events = step(case, now)
            except (lifecycle.InvalidTransition, lifecycle.AlreadyPlaced) as exc:
                raise HttpError(409, str(exc)) from None
            except (UnknownVillage, UnknownGrid) as exc:
                raise HttpError(400, f"{exc.field}: {exc}") from None
            self._record(s, case, events, actor=who.subject, note=note)
            if case.state == "cancelled":
                self._end_tasks(s, case, now)
            cases.save(s, case)
            return json_response(case_view(case, self.areas, now))

    def _record(self, s, case, events, actor, note=""):
        """History (with each event's data, the ledger's evidence), outbox, work keys, and new deadlines."""
        history, deadlines = [], []
        for ev in events:
            history.append({"ticket_id": case.id, "at": ev.occurred_at, "event": ev.name,
                            "state": ev.data.get("state", case.state), "actor": actor, "note": note,
                            "data": json.dumps(ev.data, ensure_ascii=False, default=str)})
            deadlines += timers_for(ev, case, self.policy, ev.occurred_at)
        cases.save(s, case)  # first: the rows refer to it
        _append(s, ADD_HISTORY, history)
        _append(s, ADD_DEADLINES, deadlines)
        self.outbox.add(s, events)
        for ev in events:  # what a console acts on goes to the work exchange too, under its area's key
            if ev.data.get("work_key") and not (ev.name == "ticket_escalated" and ev.data["mode"] == "reassign"):
                self.outbox.add(s, [ev], exchange=WORK_EXCHANGE, routing_key=ev.data["work_key"])

    def _note(self, s, case, event, actor, note, now):
        s.execute(ADD_HISTORY, {"ticket_id": case.id, "at": now, "event": event, "state": case.state, "actor": actor,
                                "note": note, "data": "{}"})

    @contextmanager
    def _case_of(self, envelope):
        """The transaction and the (locked) case an event is about; the case is None when this handler
        has seen the event before (the inbox): then there is nothing to do."""
        with self.db.transaction() as s:
            case = self._first_case(s, envelope)
            yield s, case
            if case is not None:
                cases.save(s, case)

    def _first_case(self, s, envelope):
        """The (locked) case an event is about, or None when this handler has seen the event before (the inbox)."""
        return self._case(s, envelope["ticket_id"]) if self.inbox.first_delivery(s, envelope) else None

    def _case(self, s, ticket_id, http=False, lock=True):
        """The case, locked for this transaction (PostgreSQL: FOR UPDATE; SQLite has one writer): changes to
        one case are serialised across workers and instances, each seeing the last one's result."""
        case = cases.load(s, ticket_id, lock=lock)
        if case is None:
            if http:
                raise HttpError(404, f"ticket {ticket_id} not found")
            # an event about a ticket we have not opened yet: it may be ahead of ticket_received
            raise LookupError(f"ticket {ticket_id} is not known to dispatch (yet)")
        return case


# History and deadlines are only ever added on the hot paths: prebuilt Core inserts, without the unit of work
# (its bookkeeping cost more than the rows' writing)
ADD_HISTORY = insert(HistoryEntry.__table__)
ADD_DEADLINES = insert(Deadline.__table__)
# A case opens: its acknowledgement, if it came first, taken in one statement (an ORM get and delete, with the
# new case flushed before the get, were a third of opening a case)
_early = EarlyAcknowledgement.__table__
TAKE_EARLY_ACKNOWLEDGEMENT = (delete(_early).where(_early.c.ticket_id == bindparam("ticket_id"))
                              .returning(_early.c.delivered_at))


def _append(s, statement, rows: list[dict]) -> None:
    if rows:
        s.execute(statement, rows)


def new_case(ticket_id: str, data: dict, now) -> cases.CaseRow:
    category, village = data["category"], data["village_code"]
    county = data["county_code"] or (village and village[:6])
    if not county:
        raise MalformedEvent("village_code: missing, and no county_code to place the request by")
    return cases.new(id=ticket_id, state="received", version=0, category_code=category["code"],
                department=category["department"], priority=data["priority"],
                village_code=village, county_code=county, address=data["address"],
                volunteer_skill=category.get("volunteer_skill"),
                accept_minutes=category["accept_minutes"], resolve_hours=category["resolve_hours"],
                resolve_minutes=category["resolve_minutes"], follow_up_hours=category["follow_up_hours"],
                received_at=data["received_at"], updated_at=now, reopen_count=0, channel=data["channel"],
                vulnerable=data["resident"]["vulnerable"], handling=handling_of(category), level=0,
                overdue_count=0, escalation_count=0, return_count=0, reassign_count=0, late=False)


def _recipient(failed: dict) -> str:
    """Who a failed message was for; an older notify did not say: its staff templates are `staff_…`, a repeat
    report's resident was told `merged`."""
    if failed["recipient"]:
        return failed["recipient"]
    template = failed["template"]
    return "staff" if template.startswith("staff_") else "reporter" if template == "merged" else "resident"


def handling_of(category: dict) -> str:
    """代办 items (proxy, no volunteer needed: an application a department decides) go to the village's
    proxy clerk; everything else to the grid worker on duty (a dispatcher may transfer it to a department)."""
    return "proxy" if category["proxy"] and not category.get("volunteer_skill") else "grid"


def address_key(case) -> str:
    """What picks the grid inside a village: the same address always lands on the same grid."""
    return case.address or case.id


def case_view(case: Case, areas: AreaMap, now) -> dict:
    """A case as staff see it at `now` (CaseView); `areas` names its village and town."""
    return {"ticket_id": case.id, "state": case.state, "version": case.version,
            "category_code": case.category_code, "department": case.department,
            "priority": case.priority, "county_code": case.county_code, "village_code": case.village_code,
            "village_name": _area_name(areas, case.village_code),
            "town_name": _area_name(areas, case.village_code and case.village_code[:9]),
            "address": case.address or "", "received_at": _iso(case.received_at),
            "grid_code": case.grid_code,
            "assignee_id": case.assignee_id, "assignee_name": case.assignee_name,
            "volunteer_id": case.volunteer_id, "reopen_count": case.reopen_count,
            "accept_due_at": _iso(case.accept_due_at), "resolve_due_at": _iso(case.resolve_due_at),
            "decision_due_at": _iso(case.decision_due_at), "handling": case.handling, "level": case.level,
            "supervisor_id": case.supervisor_id, "supervisor_name": case.supervisor_name, "channel": case.channel,
            "overdue_count": case.overdue_count, "escalation_count": case.escalation_count,
            "return_count": case.return_count, "overdue": is_overdue(case, now)}


def _area_name(areas: AreaMap, code: str | None) -> str | None:
    """The name of an area of the map; None when there is no code (an unplaced case) or the map lacks it."""
    if not code:
        return None
    try:
        return areas.area(code).name
    except KeyError:
        return None


def task_view(task: Task) -> dict:
    return {"task_id": task.id, "ticket_id": task.ticket_id, "kind": task.kind, "assignee_id": task.assignee_id,
            "assignee_name": task.assignee_name, "level": task.level, "due_at": _iso(task.due_at),
            "overdue": task.overdue, "done_at": _iso(task.done_at), "outcome": task.outcome, "note": task.note}


def _iso(value) -> str | None:
    return as_utc(value).isoformat() if value else None


OPENAPI = document(DispatchService, "送到家 dispatch: the console API",
                   "Tickets' lifecycle for dispatchers and grid workers. Every call but this document needs "
                   "`Authorization: Bearer <JWT>`; the actor is the token's subject.")
