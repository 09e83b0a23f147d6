"""The ledger (台账) against the tickets' history: two independent computations must agree.

Forty-odd tickets are told step by step (`Story`): each step appends the history entry dispatch would
record (event, at, state, actor, the event's data) and, at that moment, keeps the case's columns the
way the lifecycle does (first acceptance judged on time or not, counters, deadlines). The ledger counts
those columns in SQL; `tests/ledger_evidence.py` reads only the history back from the database and
judges every ticket again. They must agree at every level, for a month, an ISO week and a day, in
every area, on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.common.migrations import upgrade
from services.common.clock import as_utc
from services.dispatch.ledger import (COLUMNS, COUNTS, DEADLINE_OF_STATE, LEVELS, is_overdue, ledger_csv, ledger_of,
                                      overdue_now)
from services.dispatch.models import Case, HistoryEntry
from tests.ledger_evidence import recompute_from_history

UTC = timezone.utc
NOW = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)  # noon in Suzhou, Saturday of ISO week 49
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Place:
    county: str
    village: str | None
    grids: tuple[str, ...] = ()

    def worker(self, grid: str, n: int = 1) -> tuple[str, str]:
        return f"W-{grid}-{n}", f"网格员{grid[-3:]}-{n}"


FUXIAN = Place("341302", "341302001003", ("341302001003-G01", "341302001003-G02"))  # 埇桥街道 东仙桥社区
FULI = Place("341302", "341302100200", ("341302100200-G01", "341302100200-G05"))  # 符离镇 符离村
SHENWEI = Place("341302", "341302100201", ("341302100201-G03",))  # 符离镇 沈圩村
TAIPING = Place("341323", "341323100001", ("341323100001-G01",))  # 灵璧县 太平社区
LINGBI_MAP_POINT = Place("341323", None)  # a map point: the county's centre places it
PLACES = (FUXIAN, FULI, SHENWEI, TAIPING)


@dataclass
class Story:
    """One ticket, step by step, as dispatch lives it: history entries and the case's columns."""
    no: str
    received_at: datetime
    place: Place
    handling: str = "grid"
    department: str = "civil"
    channel: str = "hotline"
    accept_minutes: int = 30
    resolve_minutes: int = 240
    t: datetime = None
    entries: list = field(default_factory=list)
    notices: list = field(default_factory=list)
    accept_missed: bool = False

    def __post_init__(self):
        self.t = self.received_at
        self.case = Case(
            id=self.no, state="received", version=0, category_code="801", department=self.department, priority=2,
            village_code=self.place.village, county_code=self.place.county, address="",
            accept_minutes=self.accept_minutes,
            resolve_hours=self.resolve_minutes // 60 or 1, resolve_minutes=self.resolve_minutes, follow_up_hours=24,
            received_at=self.received_at, updated_at=self.received_at, reopen_count=0, handling=self.handling,
            channel=self.channel,
            overdue_count=0, escalation_count=0, return_count=0, reassign_count=0, level=0)
        self.routed_before = False

    @property
    def arrival(self) -> dict:
        return {"received_at": self.received_at, "county_code": self.place.county,
                "village_code": self.place.village, "department": self.department, "handling": self.handling,
                "channel": self.channel}

    # -- the steps: `after` minutes (or seconds) past the previous step --

    def acknowledge(self, seconds: float):
        """notify delivered the acknowledgement `seconds` after receipt (recorded among the steps by its time)."""
        at = self.received_at + timedelta(seconds=seconds)
        self.case.acknowledged_at = self.case.acknowledged_at or at
        self.notices.append(HistoryEntry(ticket_id=self.no, at=at, event="resident_notified", actor="notify",
                                         note="", data=json.dumps({"template": "ack", "channel": "sms",
                                                                   "reference": "sms:1",
                                                                   "delivered_at": at.isoformat()})))
        return self

    @property
    def history(self) -> list[HistoryEntry]:
        """The entries in the order dispatch records them: by time; a notice has the state of that time."""
        merged = sorted(self.entries + self.notices, key=lambda e: (e.at, e.event != "resident_notified"))
        state = "received"
        for entry in merged:
            if entry.event == "resident_notified":
                entry.state = state
            state = entry.state
        return merged

    def route(self, after=0.0, grid=None, worker=None, actor="dispatch", level=0):
        """Routed and offered: to a grid's worker, the county centre (unplaced), or a desk (grid None)."""
        self._at(after)
        c = self.case
        placing = c.village_code is None and self.place.village is None and grid is not None
        if self.routed_before and actor != "dispatch" and not placing:
            c.reassign_count += 1
        if c.village_code is None and grid is not None:
            c.village_code = grid.split("-")[0]  # placed by the county centre
        if grid is None and worker is None:
            worker = (f"centre-{c.county_code}", "县调度中心") if c.village_code is None else \
                (f"proxy-{c.village_code}", "代办员") if c.handling == "proxy" else \
                (f"dept-{c.department}-{c.county_code}", "部门窗口")
        if grid is not None and worker is None:
            worker = self.place.worker(grid) if grid in self.place.grids else (f"W-{grid}-1", f"网格员{grid[-3:]}-1")
        c.grid_code = grid
        c.assignee_id, c.assignee_name = worker
        c.level = level
        path = ["3413", c.county_code] + ([c.village_code[:9], c.village_code] if c.village_code else []) + \
            ([grid] if grid else [])
        self._move("routed", "ticket_routed", actor, grid_code=grid, area_path=path)
        c.accept_due_at = self.t + timedelta(minutes=self.accept_minutes)
        self._move("offered", "ticket_offered", actor, grid_code=grid, work_key="area." + ".".join(path),
                   accept_due_at=c.accept_due_at.isoformat(), priority=2, category_code="801")
        self.routed_before = True
        return self

    def overdue(self, what: str, after=0.0):
        self._at(after)
        c = self.case
        c.overdue_count += 1
        if what == "accept" and c.accepted_on_time is None:
            self.accept_missed = True
        if what in ("resolve", "decision"):
            c.late = True
        due = {"accept": c.accept_due_at, "resolve": c.resolve_due_at, "decision": c.decision_due_at}[what]
        self._record("ticket_overdue", "dispatch", what=what, due_at=due.isoformat(), level=c.level)
        return self

    def escalate(self, what: str, mode: str, after=0.0, due_minutes=None, to=None):
        """Up the ladder: `supervise` adds a supervisor and a new deadline; `reassign` routes to the level."""
        self._at(after)
        c = self.case
        c.escalation_count += 1
        level = c.level + 1
        due = self.t + timedelta(minutes=due_minutes) if due_minutes else None
        if mode == "supervise":
            c.supervisor_id, c.supervisor_name = f"duty-{c.village_code}", "两委值班"
            if due and what == "resolve":
                c.resolve_due_at = due
            elif due and what == "accept":
                c.accept_due_at = due
            self._record("ticket_escalated", "dispatch", what=what, mode=mode, level=level, level_name="village",
                         supervisor_id=c.supervisor_id, supervisor_name=c.supervisor_name,
                         due_at=due.isoformat() if due else None, work_key="duty")
            return self
        self._move("escalated", "ticket_escalated", "dispatch", what=what, mode=mode, level=level,
                   level_name="village", supervisor_id=None, supervisor_name=None, due_at=None, work_key="duty")
        return self.route(grid=c.grid_code, worker=to or (f"duty-{c.village_code}", "两委值班"), level=level)

    def accept(self, after=0.0):
        self._at(after)
        c = self.case
        if c.accepted_on_time is None:
            c.accepted_on_time = not self.accept_missed and self.t <= c.accept_due_at
        c.accepted_at, c.late = self.t, False
        c.resolve_due_at = self.t + timedelta(minutes=self.resolve_minutes)
        self._move("accepted", "ticket_accepted", c.assignee_id, resolve_due_at=c.resolve_due_at.isoformat())
        return self

    def start(self, after=0.0):
        self._at(after)
        self._move("in_progress", "ticket_in_progress", self.case.assignee_id)
        return self

    def give_back(self, after=0.0, reason="不在本网格", desk_minutes=60):
        """退单: it waits at the village's duty desk, which must reassign it in time (an accept deadline)."""
        self._at(after)
        c = self.case
        c.return_count += 1
        returned_by = c.assignee_id
        c.assignee_id, c.assignee_name, c.level = f"duty-{c.village_code}", "两委值班", 1
        c.accept_due_at = self.t + timedelta(minutes=desk_minutes)
        self._move("returned", "ticket_returned", returned_by, reason=reason, returned_by=returned_by,
                   work_key="duty", reassign_due_at=c.accept_due_at.isoformat())
        return self

    def file(self, after=0.0, department="civil-affairs", decision_minutes=2880):
        self._at(after)
        c = self.case
        c.department, c.decision_due_at = department, self.t + timedelta(minutes=decision_minutes)
        self.filed_at = self.t
        self._move("filed", "ticket_filed", c.assignee_id, department=department, work_key=f"dept.{department}",
                   decision_due_at=c.decision_due_at.isoformat())
        return self

    def decide(self, after=0.0, approved=True):
        self._at(after)
        c = self.case
        c.approved, c.decision = approved, "准予" if approved else "不予"
        c.resolve_due_at += self.t - self.filed_at  # the department's time is not the village's
        self._move("in_progress", "ticket_decided", c.assignee_id, department=c.department, approved=approved,
                   decision=c.decision, resolve_due_at=c.resolve_due_at.isoformat())
        return self

    def resolve(self, after=0.0):
        self._at(after)
        c = self.case
        if c.resolved_on_time is None:
            c.resolved_on_time = not c.late and self.t <= c.resolve_due_at
        c.resolved_at = self.t
        self._move("resolved", "ticket_resolved", c.assignee_id, note="办好了", resolved_at=self.t.isoformat(),
                   follow_up_hours=24)
        return self

    def answer(self, satisfied: bool, after=1440.0):
        """The resident's answer to the 回访: satisfied closes it, unsatisfied reopens it (and dispatch re-routes)."""
        self._at(after)
        c = self.case
        c.satisfied = satisfied
        if satisfied:
            c.closed_at, c.closed_how = self.t, "resident"
            self._move("closed", "ticket_closed", "resident", satisfied=True, comment="满意", how="resident")
            return self
        c.reopen_count += 1
        self._move("reopened", "ticket_reopened", "resident", comment="还没修好", reopen_count=c.reopen_count)
        return self.route(grid=c.grid_code, worker=(c.assignee_id, c.assignee_name))

    def unreached(self, after=1440.0):
        self._at(after)
        self.case.closed_at, self.case.closed_how = self.t, "unreached"
        self._move("closed", "ticket_closed", "callback", satisfied=None, comment="", how="unreached")
        return self

    def cancel(self, after=0.0, by="resident"):
        self._at(after)
        self._move("cancelled", "ticket_cancelled", by, by=by, reason="已自行解决")
        return self

    # -- bookkeeping --

    def _at(self, after):
        self.t += timedelta(minutes=after)
        assert self.t <= NOW, f"{self.no}: a step at {self.t} is after the ledger's now"

    def _move(self, state, event, actor, **data):
        self.case.state, self.case.version, self.case.updated_at = state, self.case.version + 1, self.t
        self._record(event, actor, **data)

    def _record(self, event, actor, **data):
        c = self.case
        data = {"state": c.state, "ticket_version": c.version, "assignee_id": c.assignee_id,
                "assignee_name": c.assignee_name, **data}
        self.entries.append(HistoryEntry(ticket_id=self.no, at=self.t, event=event, state=c.state, actor=actor,
                                         note="", data=json.dumps(data, ensure_ascii=False)))


# --- the tickets ------------------------------------------------------------------

def on_time(s, place):
    s.acknowledge(2).route(0.1, place.grids[0]).accept(10).start(5).resolve(60).answer(True)


def ack_late(s, place):
    s.acknowledge(25).route(0.1, place.grids[0]).accept(5).resolve(30).answer(True)


def ack_at_ten_seconds(s, place):  # on the line: counts
    s.acknowledge(10).route(0.1, place.grids[-1]).accept(3).resolve(30).answer(True)


def ack_a_microsecond_late(s, place):
    s.acknowledge(10.000001).route(0.1, place.grids[-1]).accept(3).resolve(30).answer(True)


def never_acknowledged(s, place):
    s.route(0.1, place.grids[0]).accept(3).resolve(30).unreached()


def late_accept_after_overdue(s, place):
    s.acknowledge(1).route(0.1, place.grids[0]).overdue("accept", 30).accept(10).resolve(60).answer(True)


def late_accept_before_the_timer(s, place):  # 31 minutes: late, though no overdue was recorded yet
    s.acknowledge(1).route(0.1, place.grids[0]).accept(31).resolve(60).answer(True)


def accept_on_the_deadline(s, place):
    s.acknowledge(1).route(0, place.grids[0]).accept(30).resolve(240).answer(True)


def resolve_on_the_deadline(s, place):
    s.acknowledge(1).route(0, place.grids[0]).accept(5).resolve(240).answer(True)


def resolve_late_before_the_timer(s, place):
    s.acknowledge(1).route(0, place.grids[0]).accept(5).resolve(241).answer(False).accept(10).resolve(30)\
        .answer(True)


def escalated_accept_reassigned(s, place):
    s.acknowledge(3).route(0.1, place.grids[0]).overdue("accept", 30).escalate("accept", "reassign", 0.1)\
        .accept(8).resolve(50).answer(True)


def escalated_resolve_supervised(s, place):
    s.acknowledge(3).route(0.1, place.grids[0]).accept(5).start(10).overdue("resolve", 230)\
        .escalate("resolve", "supervise", 0.1, due_minutes=120).resolve(60).answer(True)


def supervisor_extends_the_deadline(s, place):  # a new resolve deadline with no overdue: judged by it
    s.acknowledge(3).route(0.1, place.grids[0]).accept(5).escalate("resolve", "supervise", 30, due_minutes=600)\
        .resolve(400).answer(True)


def returned_and_reassigned(s, place):
    other = place.grids[-1] if len(place.grids) > 1 else FULI.grids[0]
    s.acknowledge(2).route(0.1, place.grids[0]).accept(5).give_back(20)\
        .route(15, other, actor=f"dispatcher-{place.county}").accept(5).resolve(100).answer(True)


def returned_twice(s, place):
    s.acknowledge(2).route(0.1, place.grids[0]).give_back(10).route(10, place.grids[0], actor="dispatcher-1")\
        .give_back(5).route(10, place.grids[-1], worker=place.worker(place.grids[-1], 2), actor="dispatcher-1")\
        .overdue("accept", 30).accept(1).resolve(20).answer(True)


def reopened_then_closed(s, place):
    s.acknowledge(4).route(0.1, place.grids[0]).accept(5).resolve(60).answer(False).accept(5).resolve(30)\
        .answer(True)


def reopened_twice_then_unreached(s, place):
    s.acknowledge(4).route(0.1, place.grids[0]).accept(5).resolve(60).answer(False).accept(5).resolve(30)\
        .answer(False).accept(5).resolve(30).unreached()


def cancelled_by_the_resident(s, place):
    s.acknowledge(2).route(0.1, place.grids[0]).cancel(3)


def cancelled_by_a_dispatcher(s, place):
    s.acknowledge(2).route(0.1, place.grids[0]).accept(4).cancel(30, by="dispatcher")


def unplaced_then_placed(s, place):
    s.acknowledge(2).route(0.1).route(20, TAIPING.grids[0], actor="centre-341323").accept(5).resolve(60)\
        .answer(True)


def proxy_item(s, place):
    s.acknowledge(2).route(0.1).accept(10).file(30).decide(1440).resolve(60).answer(True)


def proxy_item_decided_late(s, place):
    s.acknowledge(2).route(0.1).accept(10).file(30, decision_minutes=60).overdue("decision", 60)\
        .decide(120, approved=False).resolve(10).answer(True)


def department_item(s, place):
    s.acknowledge(2).route(0.1).accept(20).start(10).resolve(100).unreached()


SCENARIOS = (on_time, ack_late, ack_at_ten_seconds, ack_a_microsecond_late, never_acknowledged,
             late_accept_after_overdue, late_accept_before_the_timer, accept_on_the_deadline,
             resolve_on_the_deadline, resolve_late_before_the_timer, escalated_accept_reassigned,
             escalated_resolve_supervised, supervisor_extends_the_deadline, returned_and_reassigned, returned_twice,
             reopened_then_closed, reopened_twice_then_unreached, cancelled_by_the_resident,
             cancelled_by_a_dispatcher, unplaced_then_placed, department_item)


def still_open(now=NOW):
    """Tickets caught half-way at `now`: overdue or not, by the deadline of the step they are at."""
    soon = now - timedelta(minutes=20)
    long_ago = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    return [
        ("offered, deadline passed", long_ago, FUXIAN, "grid", lambda s, p: s.acknowledge(1).route(0.1, p.grids[0])),
        ("offered, deadline ahead", soon, FULI, "grid", lambda s, p: s.acknowledge(1).route(0.1, p.grids[0])),
        ("accepted, resolve passed", long_ago, FULI, "grid",
         lambda s, p: s.acknowledge(1).route(0.1, p.grids[1]).accept(5)),
        ("in progress, resolve ahead", soon, SHENWEI, "grid",
         lambda s, p: s.acknowledge(1).route(0.1, p.grids[0]).accept(5).start(5)),
        ("in progress, resolve passed", long_ago, TAIPING, "grid",
         lambda s, p: s.acknowledge(1).route(0.1, p.grids[0]).accept(5).start(5).overdue("resolve", 240)),
        ("returned, waiting for a dispatcher", long_ago, SHENWEI, "grid",
         lambda s, p: s.acknowledge(1).route(0.1, p.grids[0]).accept(5).give_back(5)),
        ("resolved, waiting for the 回访", long_ago, FUXIAN, "grid",
         lambda s, p: s.acknowledge(1).route(0.1, p.grids[1]).accept(5).resolve(20)),
        ("filed, decision passed", long_ago, FULI, "proxy",
         lambda s, p: s.acknowledge(1).route(0.1).accept(5).file(10, decision_minutes=60)),
        ("filed, decision ahead", soon, TAIPING, "proxy",
         lambda s, p: s.acknowledge(1).route(0.1).accept(5).file(1, decision_minutes=60)),
        ("unplaced, never picked up", long_ago, LINGBI_MAP_POINT, "grid",
         lambda s, p: s.acknowledge(30).route(0.1)),
        ("escalated to supervision, new deadline ahead", soon, FUXIAN, "grid",
         lambda s, p: s.acknowledge(1).route(0.1, p.grids[0]).accept(1).escalate("resolve", "supervise", 1,
                                                                                 due_minutes=600)),
    ]


RECEIVED = [  # UTC; China time is 8 hours ahead
    datetime(2026, 10, 28, 2, 15, tzinfo=UTC),
    datetime(2026, 10, 31, 15, 59, 59, 999999, tzinfo=UTC),  # 23:59:59.999999 on 31 October in Suzhou
    datetime(2026, 10, 31, 16, 0, tzinfo=UTC),  # midnight: 1 November in Suzhou
    datetime(2026, 11, 5, 1, 30, tzinfo=UTC),
    datetime(2026, 11, 12, 6, 45, 30, 250000, tzinfo=UTC),
    datetime(2026, 11, 23, 0, 5, tzinfo=UTC),
    datetime(2026, 11, 29, 15, 30, tzinfo=UTC),  # Sunday 23:30 in Suzhou: week 48
    datetime(2026, 11, 29, 16, 30, tzinfo=UTC),  # Monday 00:30 in Suzhou: week 49, still November
    datetime(2026, 11, 30, 15, 59, tzinfo=UTC),  # 23:59 on 30 November in Suzhou
    datetime(2026, 11, 30, 16, 0, tzinfo=UTC),  # 1 December in Suzhou, still 30 November in UTC
    datetime(2026, 11, 30, 23, 10, tzinfo=UTC),
]


def stories() -> list[Story]:
    told, n = [], 0

    def tell(scenario, received_at, place, handling="grid", department="civil"):
        nonlocal n
        n += 1
        channel = ("hotline", "wechat", "grid_visit", "counter", "night_talk")[n % 5]  # some found at the door
        s = Story(f"SDJ-LEDGER-{n:03d}", received_at, place, handling=handling, department=department,
                  channel=channel)
        scenario(s, place)
        told.append(s)

    for i, scenario in enumerate(SCENARIOS):  # every story twice, in different places and days
        for j in (0, 1):
            place = LINGBI_MAP_POINT if scenario is unplaced_then_placed else PLACES[(i + j) % len(PLACES)]
            handling = "department" if scenario is department_item else "grid"
            department = "housing" if scenario is department_item or (i + j) % 3 == 0 else "civil"
            tell(scenario, RECEIVED[(i * 2 + j) % len(RECEIVED)], place, handling, department)
    for j, place in enumerate((FULI, TAIPING)):
        tell(proxy_item, RECEIVED[j + 3], place, "proxy")
        tell(proxy_item_decided_late, RECEIVED[-(j + 1)], place, "proxy")
    for _, received_at, place, handling, scenario in still_open():
        tell(scenario, received_at, place, handling)
    return told


def store(db_url, told: list[Story]):
    """The dispatch database (migrated to head) with the stories' cases and history; the arrivals."""
    upgrade("dispatch", db_url)
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        for story in told:
            s.add(story.case)
        s.flush()
        for story in told:
            s.add_all(story.history)
    return engine, {s.no: s.arrival for s in told}


@pytest.fixture
def stored(db_url):
    engine, arrivals = store(db_url, stories())
    yield engine, arrivals
    engine.dispose()


def history_of(engine) -> list[dict]:
    """The history as stored, read back (SQLite hands back times without their zone)."""
    with Session(engine) as s:
        return [{"id": e.id, "ticket_id": e.ticket_id, "at": e.at, "event": e.event, "state": e.state,
                 "actor": e.actor, "data": e.data}
                for e in s.scalars(select(HistoryEntry).order_by(HistoryEntry.id))]


AREAS = ("3413", "341302", "341323", "341302100", "341302001003", "341302100200-G01", "341323100001")
PERIODS = (None, "2026-11", "2026-12", "2026-10", "2026-W48", "2026-W49", "2026-11-30", "2026-12-01",
           "2026-10-31")


def test_the_ledger_agrees_with_the_history_at_every_level_in_every_area_and_period(stored):
    engine, arrivals = stored
    history = history_of(engine)
    checked = 0
    with Session(engine) as s:
        for area in AREAS:
            for level in (None, *LEVELS):
                for period in PERIODS:
                    ledger = ledger_of(s, area, level, period, now=NOW)
                    expected = recompute_from_history(history, arrivals, area=area, level=level, period=period,
                                                      now=NOW)
                    where = f"{area} by {ledger['level']} in {period or 'all time'}"
                    assert ledger["level"] == expected["level"], where
                    assert ledger["rows"] == expected["rows"], where
                    assert ledger["totals"] == expected["totals"], where
                    checked += bool(ledger["rows"])
    assert checked > 300  # most combinations have tickets: the comparison is not of empty ledgers


def test_every_count_is_exercised_and_the_totals_add_up(stored):
    engine, arrivals = stored
    with Session(engine) as s:
        ledger = ledger_of(s, "3413", "town", now=NOW)
    totals = ledger["totals"]
    assert totals["received"] == len(arrivals) >= 40
    for count in COUNTS:
        assert totals[count] > 0, count
        assert sum(row[count] for row in ledger["rows"]) == totals[count], count
    for count in ("acknowledged_10s", "accepted_on_time", "resolved_on_time", "satisfied"):
        assert totals[count] < totals[{"acknowledged_10s": "received", "accepted_on_time": "accepted",
                                       "resolved_on_time": "resolved", "satisfied": "answered"}[count]], count
    assert [row["key"] for row in ledger["rows"]] == ["341302001", "341302100", "341323100", "unplaced"]


def test_known_answers_at_the_edges(db_url):
    """Counted by hand, not by the evidence module: the 10 s line to the microsecond, deadlines met to the
    second, China's midnight, and what is overdue now."""
    def told(scenario, received_at, place=FUXIAN):
        story = Story(f"SDJ-EDGE-{len(edge) + 1}", received_at, place)
        scenario(story, place)
        edge.append(story)
    edge = []
    told(ack_at_ten_seconds, datetime(2026, 11, 30, 16, 0, tzinfo=UTC))  # 1 December in Suzhou
    told(ack_a_microsecond_late, datetime(2026, 11, 30, 15, 59, 59, 999999, tzinfo=UTC))  # still 30 November
    told(accept_on_the_deadline, datetime(2026, 11, 20, 3, 0, tzinfo=UTC))  # and resolved on its deadline
    told(late_accept_before_the_timer, datetime(2026, 11, 21, 3, 0, tzinfo=UTC))
    for name, received_at, place, _, scenario in still_open():
        if name.startswith("offered"):
            told(scenario, received_at, place)  # 2 December (overdue now) and 5 December (not yet)
    engine, _ = store(db_url, edge)
    try:
        with Session(engine) as s:
            everything = ledger_of(s, "341302", "county", now=NOW)["totals"]
            assert {k: everything[k] for k in ("received", "acknowledged_10s", "accepted", "accepted_on_time",
                                               "resolved", "resolved_on_time", "overdue_now")} == {
                "received": 6, "acknowledged_10s": 5, "accepted": 4, "accepted_on_time": 3, "resolved": 4,
                "resolved_on_time": 4, "overdue_now": 1}
            assert (everything["acknowledged_10s_rate"], everything["accepted_on_time_rate"],
                    everything["satisfaction_rate"]) == (0.8333, 0.75, 1.0)
            before_the_deadline = datetime(2026, 12, 2, 1, 20, tzinfo=UTC)
            assert ledger_of(s, "341302", "county", now=before_the_deadline)["totals"]["overdue_now"] == 0

            def received(period):
                return [row["received"] for row in ledger_of(s, "341302", "county", period, now=NOW)["rows"]]
            assert (received("2026-12-01"), received("2026-11-30"), received("2026-11"), received("2026-12"),
                    received("2026-W49"), received("2026-W48"), received("2026-W47"), received("2026-10")) == \
                ([1], [1], [3], [3], [4], [], [2], [])
            day = ledger_of(s, "341302", "county", "2026-12-01", now=NOW)["totals"]
            assert (day["acknowledged_10s"], day["acknowledged_10s_rate"]) == (1, 1.0)  # 10 s on the dot
            day = ledger_of(s, "341302", "county", "2026-11-30", now=NOW)["totals"]
            assert (day["acknowledged_10s"], day["acknowledged_10s_rate"]) == (0, 0.0)  # 10.000001 s
            by_day = ledger_of(s, "341302", "day", now=NOW)["rows"]  # the trend: China's midnight divides days
            assert [(row["key"], row["received"], row["name"]) for row in by_day][:4] == [
                ("2026-11-20", 1, ""), ("2026-11-21", 1, ""), ("2026-11-30", 1, ""), ("2026-12-01", 1, "")]
            empty = ledger_of(s, "341323", "village", now=NOW)
            assert empty["rows"] == [] and empty["totals"]["received"] == 0
            assert empty["totals"]["accepted_on_time_rate"] is None
    finally:
        engine.dispose()


def test_overdue_now_in_python_agrees_with_the_sql_to_the_microsecond(stored):
    """The queues' `overdue` filter and the ledger count overdue_now in SQL; a case view says `overdue` in Python
    (ledger.is_overdue). For every ticket told, at every deadline any of them has, a microsecond either side of
    it, and a few moments besides, both name the same tickets."""
    engine, _ = stored
    with Session(engine) as s:
        cases = s.scalars(select(Case)).all()  # as the database hands them back (SQLite: naive UTC)
        deadlines = {as_utc(getattr(c, column)) for c in cases for column in set(DEADLINE_OF_STATE.values())
                     if getattr(c, column) is not None}
        moments = sorted({NOW, NOW + timedelta(days=60), datetime(2026, 10, 1, tzinfo=UTC)} |
                         {d + step for d in deadlines for step in (-MICROSECOND, timedelta(0), MICROSECOND)})
        seen = set()
        for now in moments:
            in_sql = set(s.scalars(select(Case.id).where(overdue_now(now))))
            assert in_sql == {c.id for c in cases if is_overdue(c, now)}, now
            assert len(in_sql) == s.scalar(select(func.count()).select_from(Case).where(
                Case.in_area("3413"), overdue_now(now))) == ledger_of(s, "3413", now=now)["totals"]["overdue_now"]
            seen.add(len(in_sql))
        overdue_at_noon = set(s.scalars(select(Case.id).where(overdue_now(NOW))))
    assert len(moments) > 100 and len(seen) > 3  # the moments do tell tickets apart
    states = {c.state for c in cases if c.id in overdue_at_noon}
    assert states == {"offered", "accepted", "in_progress", "returned", "filed"}, states


def test_the_csv_has_one_line_per_row_and_a_totals_line(stored):
    engine, _ = stored
    with Session(engine) as s:
        ledger = ledger_of(s, "341302", "village", "2026-11", now=NOW)
    text = ledger_csv(ledger)
    lines = list(csv.DictReader(io.StringIO(text)))
    assert list(lines[0]) == list(COLUMNS)
    assert len(lines) == len(ledger["rows"]) + 1 and len(ledger["rows"]) >= 3
    assert [line["key"] for line in lines] == [row["key"] for row in ledger["rows"]] + ["total"]
    for line, row in zip(lines, [*ledger["rows"], ledger["totals"]]):
        assert line == {column: "" if row[column] is None else str(row[column]) for column in COLUMNS}
    totals = lines[-1]
    for count in COUNTS:
        assert int(totals[count]) == sum(int(line[count]) for line in lines[:-1]), count
    assert float(totals["acknowledged_10s_rate"]) == round(int(totals["acknowledged_10s"]) / int(totals["received"]), 4)


def test_the_first_ledger_s_keys_are_still_there(stored):
    engine, arrivals = stored
    with Session(engine) as s:
        ledger = ledger_of(s, "3413", now=NOW)
    assert ledger["area"] == "3413" and ledger["level"] == "county" and ledger["period"] is None
    assert ledger["total"] == len(arrivals) == sum(ledger["by_state"].values())
    assert ledger["by_county"] == {"341302": sum(a["county_code"] == "341302" for a in arrivals.values()),
                                   "341323": sum(a["county_code"] == "341323" for a in arrivals.values())}
    assert ledger["by_category"] == {"801": len(arrivals)}
    assert ledger["reopened"] == ledger["totals"]["reopened"] > 0
    assert ledger["unplaced"] == 1  # the map point nobody placed yet
    assert set(ledger["by_state"]) >= {"closed", "cancelled", "offered", "filed", "returned", "resolved"}


def test_the_command_line_prints_a_table_with_names_and_a_totals_line(stored):
    from services.dispatch.areas import AreaMap
    from songdaojia.cli import _width, ledger_table
    engine, _ = stored
    with Session(engine) as s:
        ledger = ledger_of(s, "3413", "town", "2026-11", now=NOW, areas=AreaMap.load())
    lines = ledger_table(ledger).splitlines()
    assert lines[0] == "Ledger (台账) of 3413 by town, received in 2026-11 (China time)"
    assert lines[1].split()[:3] == ["town", "name", "received"]
    assert [line.split()[:2] for line in lines[3:-2]] == [["341302001", "埇桥街道"], ["341302100", "符离镇"],
                                                           ["341323100", "灵城镇"]]
    totals = ledger["totals"]
    acknowledged = f"{totals['acknowledged_10s']}/{totals['received']}"
    assert lines[-1].split()[:4] == ["total", str(totals["received"]), acknowledged,
                                     f"{totals['acknowledged_10s_rate']:.1%}"]
    assert len({_width(line) for line in lines[1:]}) == 1  # the columns line up, Chinese names included
