"""Dispatch's handlers and its deadline timer, driven without a broker (tests/service_layer.py):
the escalation ladder, a restart and two schedulers in the middle of it, a clock that jumps,
reopen → re-route, return → reassign, a proxy item through a department, cancellation, call tasks."""
from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from werkzeug.test import EnvironBuilder

from services.common.clock import ManualClock
from services.common.staff import Principal
from services.dispatch.areas import AreaMap
from services.dispatch.models import Case, Deadline, HistoryEntry, Task
from services.dispatch.roster import proxy_clerk, village_duty
from services.dispatch.routing import route
from services.dispatch.service import DispatchService
from services.dispatch.supervision import Policy
from services.intake.events import EXAMPLES as INTAKE
from services.notify.events import EXAMPLES as NOTIFY
from tests.service_layer import Staff, Worker

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)  # 09:00 in Suzhou
VILLAGE, TOWN, COUNTY = "341323104214", "341323104", "341323"
POLICY = Policy()  # real minutes: the ManualClock jumps through them


@pytest.fixture
def dispatch(tmp_path):
    clock = ManualClock(T0)
    return Worker(DispatchService, tmp_path, clock=clock, areas=AreaMap.load(), policy=POLICY, staff=Staff())


def received(ticket_id="SDJ-261127-TEST0001", channel="wechat", code="801", proxy=False, skill="delivery",
             vulnerable=False, accept=10, resolve_minutes=30, village=VILLAGE):
    env = copy.deepcopy(INTAKE["ticket_received"])
    env["event_id"], env["ticket_id"], env["correlation_id"] = str(uuid.uuid4()), ticket_id, ticket_id
    data = env["data"]
    data["channel"], data["village_code"], data["county_code"] = channel, village, (village or "341323")[:6]
    data["category"].update(code=code, proxy=proxy, volunteer_skill=skill, accept_minutes=accept,
                            resolve_minutes=resolve_minutes, resolve_hours=1)
    data["resident"]["vulnerable"] = vulnerable
    return env


def notify_event(name, ticket_id, **data):
    env = copy.deepcopy(NOTIFY.get(name) or NOTIFY["feedback_received"])
    env.update(event=name, event_id=str(uuid.uuid4()), ticket_id=ticket_id, correlation_id=ticket_id)
    env["data"] = {**env["data"], **data}
    return env


def tick(w, **jump):
    if jump:
        w.clock.advance(**jump)
    return w.call("watch_deadlines")


def case_of(w, ticket_id="SDJ-261127-TEST0001") -> Case:
    with w.db.transaction() as s:
        return s.get(Case, ticket_id)


def events_of(w, name=None):
    return [e for _, e in w.sent(name)]


def http(w, method_name, who, body=None, query=None, **kwargs):
    """Call an HTTP entrypoint as `who` (a Principal), with a query string (`query`); returns (status, json)."""
    w.deps["staff"].who = who
    request = EnvironBuilder(method="POST" if body is not None else "GET", json=body,
                             query_string=query).get_request()
    status, _headers, body = getattr(w.service(method_name), method_name)(request, **kwargs)
    return status, json.loads(body)


def worker_of(case):
    return Principal(case.assignee_id, "grid_worker", case.grid_code)


def holder(case):
    """Whoever may act on the case where it is now: the person, or someone at the desk."""
    kind, _, code = case.assignee_id.partition("-")
    roles = {"V": ("village_cadre", case.village_code), "town": ("town_dispatcher", code),
             "centre": ("county_dispatcher", code)}
    role, area = roles.get(kind, ("grid_worker", case.grid_code))
    return Principal(case.assignee_id, role, area)


# --- queues and the case view -----------------------------------------------------------------

def test_a_queue_lists_cases_in_the_states_asked_for_overdue_now_missed_or_escalated(dispatch):
    """state: one or several, or `open`; overdue: a deadline of the step it is at has passed (even before the
    timer has seen it); escalated: climbed the ladder at least once. Each case names its village and town."""
    a, b, c = (f"SDJ-261127-QUEUE00{n}" for n in (1, 2, 3))
    county = Principal("d-1", "county_dispatcher", COUNTY)

    def queue(**query):
        status, body = http(dispatch, "queue", county, query=query, area_code=COUNTY)
        assert status == 200, body
        return body

    def ids(**query):
        return [view["ticket_id"] for view in queue(**query)]

    dispatch.call("open_case", [received(a)])  # 10 minutes to accept
    dispatch.clock.advance(minutes=11)  # a's deadline has passed; the timer has not looked yet
    dispatch.call("open_case", [received(b)])
    dispatch.clock.advance(minutes=1)
    dispatch.call("open_case", [received(c)])
    assert http(dispatch, "accept", worker_of(case_of(dispatch, b)), ticket_id=b)[0] == 200
    assert http(dispatch, "cancel", county, {"reason": "重复来电"}, ticket_id=c)[0] == 200

    assert ids() == [a]  # offered, the default
    assert ids(state="offered,accepted") == ids(state="open") == [a, b]  # the most urgent first
    assert ids(state="cancelled") == [c] and ids(state="open,cancelled") == [a, b, c]
    assert ids(state="open", overdue="true") == ids(overdue="true") == [a]
    assert ids(state="open", overdue="false") == [a, b]  # false: no filter
    assert ids(state="open", missed="true") == []  # overdue, but nothing fired yet: no deadline on the record
    assert ids(state="open", escalated="true") == []
    late, on_time = queue(state="open")
    assert (late["overdue"], on_time["overdue"]) == (True, False)
    assert (late["village_name"], late["town_name"], late["address"]) == ("杨东村委会", "杨疃镇", "杨东村三组")
    assert late["received_at"] == "2026-11-27T01:00:00.110000+00:00"
    assert http(dispatch, "ticket", county, ticket_id=a)[1]["overdue"] is True

    status, body = http(dispatch, "queue", county, query={"state": "offered,shut"}, area_code=COUNTY)
    assert status == 400 and list(body["fields"]) == ["state"] and "'shut'" in body["fields"]["state"][0]

    tick(dispatch)  # a's missed offer climbs to the village's duty cadre, with the village's time to accept
    assert ids(state="open", escalated="true") == ids(escalated="true") == [a]
    assert ids(state="open", overdue="true") == []
    assert ids(state="open", missed="true") == [a]  # the missed deadline stays on the record
    view = http(dispatch, "ticket", county, ticket_id=a)[1]
    assert (view["overdue"], view["escalation_count"], view["village_name"]) == (False, 1, "杨东村委会")
    dispatch.clock.advance(minutes=31)  # past the cadre's 30 minutes and b's time to resolve
    assert ids(state="open", overdue="true") == [b, a]  # b's accept deadline (met) came before a's new one
    assert ids(state="accepted", overdue="true", escalated="true") == []


def test_an_unplaced_case_has_no_village_or_town_name(dispatch):
    dispatch.call("open_case", [received(village=None)])
    status, body = http(dispatch, "queue", Principal("d-1", "county_dispatcher", COUNTY), area_code=COUNTY)
    assert status == 200 and [(v["village_code"], v["village_name"], v["town_name"]) for v in body] == [
        (None, None, None)]


# --- the ladder ---------------------------------------------------------------------------------


def test_a_ticket_nobody_accepts_climbs_the_ladder_to_the_county_centre(dispatch):
    dispatch.call("open_case", [received()])
    first = case_of(dispatch)
    assert (first.state, first.level) == ("offered", 0)
    assert not tick(dispatch, minutes=7)  # the warning comes at 80 % of the 10 minutes
    assert tick(dispatch, minutes=2) and events_of(dispatch, "ticket_due_soon")[-1]["data"]["what"] == "accept"
    assert not events_of(dispatch, "ticket_overdue")
    tick(dispatch, minutes=2)  # past the 10-minute accept deadline: to the village's duty cadre
    case = case_of(dispatch)
    assert (case.state, case.level, case.assignee_id) == ("offered", 1, village_duty(VILLAGE, dispatch.clock.now()).id)
    assert case.work_key.endswith(f"{VILLAGE}.duty")
    tick(dispatch, minutes=31)  # the village's 30 minutes: to the town's desk
    assert (case_of(dispatch).level, case_of(dispatch).assignee_id) == (2, f"town-{TOWN}")
    tick(dispatch, minutes=61)  # the town's 60 minutes: to the county centre
    case = case_of(dispatch)
    assert (case.state, case.level, case.assignee_id) == ("offered", 3, f"centre-{COUNTY}")
    tick(dispatch, minutes=121)  # nobody above the county: the overdue is recorded, the centre keeps it
    case = case_of(dispatch)
    assert (case.level, case.assignee_id, case.overdue_count, case.escalation_count) == (3, f"centre-{COUNTY}", 4, 3)
    escalations = [e["data"] for e in events_of(dispatch, "ticket_escalated")]
    assert [(e["level_name"], e["mode"]) for e in escalations] == [("village", "reassign"), ("town", "reassign"),
                                                                   ("county", "reassign")]
    assert len(events_of(dispatch, "ticket_overdue")) == 4  # every missed deadline stays on the record


def test_the_county_centre_accepts_an_escalated_ticket_as_its_desk(dispatch):
    dispatch.call("open_case", [received()])
    tick(dispatch, minutes=11), tick(dispatch, minutes=31), tick(dispatch, minutes=61)
    status, body = http(dispatch, "accept", Principal("d-1", "county_dispatcher", COUNTY),
                        ticket_id="SDJ-261127-TEST0001")
    assert (status, body["state"]) == (200, "accepted")
    assert case_of(dispatch).accepted_on_time is False
    status, _ = http(dispatch, "accept", Principal("d-2", "county_dispatcher", "341321"),
                     ticket_id="SDJ-261127-TEST0001")
    assert status in (403, 409)


def test_work_not_resolved_in_time_gets_a_supervisor_and_keeps_its_assignee(dispatch):
    dispatch.call("open_case", [received()])
    worker = worker_of(case_of(dispatch))
    assert http(dispatch, "accept", worker, ticket_id="SDJ-261127-TEST0001")[0] == 200
    tick(dispatch, minutes=31)  # the goods' 30 minutes to resolve have passed
    case = case_of(dispatch)
    assert (case.state, case.assignee_id, case.supervisor_id, case.level) == (
        "accepted", worker.subject, village_duty(VILLAGE, dispatch.clock.now()).id, 1)
    [escalated] = events_of(dispatch, "ticket_escalated")
    assert (escalated["data"]["mode"], escalated["data"]["what"]) == ("supervise", "resolve")
    assert http(dispatch, "resolve", worker, {"note": "送到了"}, ticket_id="SDJ-261127-TEST0001")[0] == 200
    assert case_of(dispatch).resolved_on_time is False


def test_vulnerable_residents_get_half_the_time_but_never_below_the_floor():
    policy = Policy()
    case = Case(accept_minutes=30, resolve_minutes=240, resolve_hours=4, vulnerable=True, level=0)
    assert (policy.accept_within(case), policy.resolve_within(case)) == (timedelta(minutes=15), timedelta(hours=2))
    goods = Case(accept_minutes=10, resolve_minutes=30, resolve_hours=1, vulnerable=True, level=0)
    assert (policy.accept_within(goods), policy.resolve_within(goods)) == (timedelta(minutes=5),
                                                                           timedelta(minutes=30))
    assert Policy(scale=0.001).resolve_within(goods) == timedelta(seconds=1.8)


def test_a_restart_in_the_middle_of_an_escalation_fires_what_is_due_once(dispatch, tmp_path):
    dispatch.call("open_case", [received()])
    tick(dispatch, minutes=11)  # at the village
    # "restart": a new worker on the same database, its clock far ahead (it was down for two hours)
    again = Worker(DispatchService, tmp_path, clock=ManualClock(dispatch.clock.now() + timedelta(hours=2)),
                   areas=AreaMap.load(), policy=POLICY, staff=Staff())
    tick(again)
    tick(again)
    case = case_of(again)
    assert (case.level, case.escalation_count) == (2, 2)  # the village's deadline fired once; the town's runs
    with again.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Deadline).where(Deadline.fired_at.is_(None),
                                                                        Deadline.due_at <= again.clock.now())) == 0


def test_two_instances_ticking_on_one_database_fire_each_deadline_once(tmp_path, db_url):
    """Whichever instance fires a deadline marks it fired with its effect: the other finds nothing left.
    (Claims made at the same moment: the SKIP LOCKED test below.)"""
    clock = ManualClock(T0)
    dispatch, twin = (Worker(DispatchService, tmp_path, clock=clock, areas=AreaMap.load(), policy=POLICY,
                             staff=Staff(), db_url=db_url) for _ in range(2))
    for n in range(20):
        dispatch.call("open_case", [received(ticket_id=f"SDJ-261127-TWO{n:05d}")])
    clock.advance(minutes=11)
    assert tick(dispatch) == 40  # a warning (moot by now) and an overdue per ticket
    assert tick(twin) == 0 and tick(dispatch) == 0
    overdue = events_of(dispatch, "ticket_overdue")
    assert len(overdue) == 20 and len({e["ticket_id"] for e in overdue}) == 20
    with dispatch.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Case).where(Case.level == 1)) == 20


def test_while_one_instance_holds_due_deadlines_another_claims_none_of_them(tmp_path, postgres_url):
    """FOR UPDATE SKIP LOCKED, interleaved by hand: the second claim comes while the first is uncommitted."""
    from services.common.schedule import claim_due
    dispatch = Worker(DispatchService, tmp_path, clock=ManualClock(T0), areas=AreaMap.load(), policy=POLICY,
                      staff=Staff(), db_url=postgres_url)
    for n in range(5):
        dispatch.call("open_case", [received(ticket_id=f"SDJ-261127-SKIP{n:04d}")])
    due = select(Deadline).where(Deadline.fired_at.is_(None), Deadline.due_at <= T0 + timedelta(hours=1))
    with dispatch.db.transaction() as first:
        mine = claim_due(first, due.order_by(Deadline.id))
        with dispatch.db.transaction() as second:
            theirs = claim_due(second, due.order_by(Deadline.id))
        assert len(mine) == 10 and theirs == []
    with dispatch.db.transaction() as third:  # released at commit: claimable again (nothing was fired)
        assert len(claim_due(third, due)) == 10


def test_a_clock_that_jumps_back_fires_nothing_early_and_a_jump_forward_gives_each_level_its_own_time(dispatch):
    dispatch.call("open_case", [received()])
    tick(dispatch, minutes=-30)
    assert not events_of(dispatch, "ticket_due_soon") and not events_of(dispatch, "ticket_overdue")
    dispatch.clock.at = T0 + timedelta(days=1)  # e.g. the machine slept: what was due fires once, now
    for _ in range(3):
        tick(dispatch)
    assert [e["data"]["level_name"] for e in events_of(dispatch, "ticket_escalated")] == ["village"]
    assert not events_of(dispatch, "ticket_due_soon")  # a warning after its deadline helps nobody
    tick(dispatch, minutes=31)
    assert [e["data"]["level_name"] for e in events_of(dispatch, "ticket_escalated")] == ["village", "town"]


# --- return, reassign, transfer, proxy, cancel --------------------------------------------------


def test_a_returned_ticket_waits_at_the_town_desk_and_a_dispatcher_reassigns_it(dispatch):
    dispatch.call("open_case", [received()])
    worker = worker_of(case_of(dispatch))
    http(dispatch, "accept", worker, ticket_id="SDJ-261127-TEST0001")
    status, body = http(dispatch, "return_ticket", worker, {"reason": "不属于本网格"}, ticket_id="SDJ-261127-TEST0001")
    assert (status, body["state"], body["assignee_id"]) == (200, "returned", f"town-{TOWN}")
    assert http(dispatch, "return_ticket", worker, {"reason": "again"}, ticket_id="SDJ-261127-TEST0001")[0] == 403
    target = f"{VILLAGE}-G01"
    status, body = http(dispatch, "reassign", Principal("d-town", "town_dispatcher", TOWN),
                        {"grid_code": target, "reason": "改派一网格"}, ticket_id="SDJ-261127-TEST0001")
    assert (status, body["state"], body["grid_code"]) == (200, "offered", target)
    case = case_of(dispatch)
    assert (case.return_count, case.reassign_count, case.level) == (1, 1, 0)
    outsider = Principal("d-else", "town_dispatcher", "341323105")
    assert http(dispatch, "reassign", outsider, {"grid_code": target, "reason": "x"},
                ticket_id="SDJ-261127-TEST0001")[0] == 403
    work = [k for k, e in dispatch.sent("ticket_returned", exchange="dispatch.work")]
    assert f"area.3413.{COUNTY}.{TOWN}.desk" in work  # the town's console sees it


def test_a_returned_ticket_nobody_reassigns_climbs_to_the_county(dispatch):
    dispatch.call("open_case", [received()])
    worker = worker_of(case_of(dispatch))
    http(dispatch, "return_ticket", worker, {"reason": "不归我管"}, ticket_id="SDJ-261127-TEST0001")
    tick(dispatch, minutes=61)
    case = case_of(dispatch)
    assert (case.state, case.assignee_id) == ("offered", f"centre-{COUNTY}")


def test_a_proxy_item_goes_to_the_clerk_then_the_department_and_back(dispatch):
    dispatch.call("open_case", [received(code="101", proxy=True, skill=None, accept=60, resolve_minutes=240 * 60)])
    case = case_of(dispatch)
    clerk = proxy_clerk(VILLAGE)
    assert (case.handling, case.assignee_id, case.work_key) == ("proxy", clerk.id,
                                                               f"area.3413.{COUNTY}.{TOWN}.{VILLAGE}.proxy")
    as_clerk = Principal(clerk.id, "village_cadre", VILLAGE)
    assert http(dispatch, "accept", as_clerk, ticket_id="SDJ-261127-TEST0001")[0] == 200
    status, body = http(dispatch, "file", as_clerk, {"note": "材料齐全，报县人社局"}, ticket_id="SDJ-261127-TEST0001")
    assert (status, body["state"]) == (200, "filed")
    assert [k for k, _ in dispatch.sent("ticket_filed", exchange="dispatch.work")] == ["dept.commerce." + COUNTY]
    wrong = Principal("hr-2", "department_staff", COUNTY, department="hrss")
    assert http(dispatch, "decide", wrong, {"approved": True, "decision": "x"}, ticket_id="SDJ-261127-TEST0001")[0] == 403
    staff = Principal("co-1", "department_staff", COUNTY, department="commerce")
    dispatch.clock.advance(hours=48)  # the department's own time does not count against the village
    status, body = http(dispatch, "decide", staff, {"approved": True, "decision": "准予登记"},
                        ticket_id="SDJ-261127-TEST0001")
    assert (status, body["state"]) == (200, "in_progress")
    assert http(dispatch, "resolve", as_clerk, {"note": "已告知结果"}, ticket_id="SDJ-261127-TEST0001")[0] == 200
    assert case_of(dispatch).resolved_on_time is True


def test_a_department_that_does_not_decide_in_time_is_supervised(dispatch):
    dispatch.call("open_case", [received(code="101", proxy=True, skill=None, accept=60, resolve_minutes=600)])
    clerk = Principal(proxy_clerk(VILLAGE).id, "village_cadre", VILLAGE)
    http(dispatch, "accept", clerk, ticket_id="SDJ-261127-TEST0001")
    http(dispatch, "file", clerk, {"note": ""}, ticket_id="SDJ-261127-TEST0001")
    tick(dispatch, hours=73)
    [escalated] = events_of(dispatch, "ticket_escalated")
    assert (escalated["data"]["what"], escalated["data"]["mode"]) == ("decision", "supervise")


def test_a_dispatcher_transfers_to_a_department_whose_staff_work_it(dispatch):
    dispatch.call("open_case", [received(code="661", skill=None)])
    status, body = http(dispatch, "transfer", Principal("d-1", "county_dispatcher", COUNTY),
                        {"department": "power", "reason": "供电所负责"}, ticket_id="SDJ-261127-TEST0001")
    assert (status, body["assignee_id"], body["handling"]) == (200, f"dept-power-{COUNTY}", "department")
    assert f"dept.power.{COUNTY}" in [k for k, _ in dispatch.sent("ticket_offered", exchange="dispatch.work")]
    power = Principal("p-1", "department_staff", COUNTY, department="power")
    assert http(dispatch, "accept", power, ticket_id="SDJ-261127-TEST0001")[0] == 200


def test_cancellation_by_a_dispatcher_or_the_resident_ends_the_loop_and_its_tasks(dispatch):
    dispatch.call("open_case", [received(channel="hotline")])
    status, body = http(dispatch, "cancel", Principal("d-1", "county_dispatcher", COUNTY), {"reason": "重复来电"},
                        ticket_id="SDJ-261127-TEST0001")
    assert (status, body["state"]) == (200, "cancelled")
    with dispatch.db.transaction() as s:
        assert s.scalars(select(Task.outcome)).all() == ["cancelled"]
    tick(dispatch, days=1)
    assert not events_of(dispatch, "ticket_overdue")  # its timers are moot
    dispatch.call("open_case", [received(ticket_id="SDJ-261127-TEST0002")])
    withdrawal = copy.deepcopy(INTAKE["ticket_cancelled"])
    withdrawal.update(event_id=str(uuid.uuid4()), ticket_id="SDJ-261127-TEST0002")
    dispatch.call("withdraw", withdrawal)
    dispatch.call("withdraw", withdrawal)  # a redelivery changes nothing
    cancelled = events_of(dispatch, "ticket_cancelled")
    assert [(e["ticket_id"], e["data"]["by"]) for e in cancelled] == [("SDJ-261127-TEST0001", "dispatcher"),
                                                                     ("SDJ-261127-TEST0002", "resident")]


# --- follow-up and calls ------------------------------------------------------------------------


def resolved(dispatch, **kwargs):
    dispatch.call("open_case", [received(**kwargs)])
    worker = worker_of(case_of(dispatch))
    http(dispatch, "accept", worker, ticket_id="SDJ-261127-TEST0001")
    http(dispatch, "resolve", worker, {"note": "done"}, ticket_id="SDJ-261127-TEST0001")
    return worker


def test_reopened_by_the_resident_it_is_routed_again_and_too_many_reopens_go_to_the_town(dispatch):
    for round_ in (1, 2, 3):
        if round_ == 1:
            worker = resolved(dispatch)
        else:
            worker = worker_of(case_of(dispatch))
            assert http(dispatch, "accept", worker, ticket_id="SDJ-261127-TEST0001")[0] == 200
            http(dispatch, "resolve", worker, {"note": "again"}, ticket_id="SDJ-261127-TEST0001")
        dispatch.call("follow_up", [notify_event("feedback_received", "SDJ-261127-TEST0001", satisfied=False,
                                                comment="没解决", round=round_)])
        case = case_of(dispatch)
        if round_ < 3:
            assert (case.state, case.level, case.reopen_count) == ("offered", 0, round_)
    assert (case.state, case.level, case.assignee_id) == ("offered", 2, f"town-{TOWN}")
    assert events_of(dispatch, "ticket_escalated")[-1]["data"]["what"] == "reopened"


def test_one_relay_round_of_new_tickets_opens_a_case_for_each_once(dispatch):
    """intake's `received` digest brings a round's tickets in one call; a repeat inside it changes nothing."""
    first, second = received(), received(ticket_id="SDJ-261127-TEST0002", channel="hotline")
    dispatch.call("open_case", [first, second, first])
    assert [e["ticket_id"] for e in events_of(dispatch, "ticket_routed")] == ["SDJ-261127-TEST0001",
                                                                              "SDJ-261127-TEST0002"]
    assert case_of(dispatch).state == case_of(dispatch, "SDJ-261127-TEST0002").state == "offered"


def test_one_relay_round_of_answers_is_applied_in_the_order_sent(dispatch):
    """notify's `residents` digest: an answer repeated in the round counts once; the case reopens once."""
    resolved(dispatch)
    unhappy = notify_event("feedback_received", "SDJ-261127-TEST0001", satisfied=False, comment="没解决", round=1)
    dispatch.call("follow_up", [unhappy, unhappy])
    case = case_of(dispatch)
    assert (case.state, case.reopen_count) == ("offered", 1)
    assert len(events_of(dispatch, "ticket_reopened")) == 1


def test_a_hotline_request_has_a_callback_task_for_the_person_on_duty_at_once(dispatch):
    dispatch.call("open_case", [received(channel="hotline")])
    [task] = events_of(dispatch, "task_assigned")
    case = case_of(dispatch)
    assert (task["data"]["kind"], task["data"]["task_assignee_id"]) == ("callback", case.assignee_id)
    assert task["occurred_at"] == dispatch.clock.now().isoformat()  # created with the case: no wait
    status, body = http(dispatch, "task_done", worker_of(case), {"outcome": "need_confirmed", "note": "米和油"},
                        task_id=task["data"]["task_id"])
    assert (status, body["outcome"]) == (200, "need_confirmed")
    assert http(dispatch, "task_done", worker_of(case), {"outcome": "reached"}, task_id=task["data"]["task_id"])[0] == 409


def test_a_callback_not_made_in_time_moves_up(dispatch):
    dispatch.call("open_case", [received(channel="hotline", accept=60)])
    tick(dispatch, minutes=6)
    with dispatch.db.transaction() as s:
        task = s.scalars(select(Task)).one()
        assert (task.overdue, task.level) == (True, 1)
    assert events_of(dispatch, "ticket_overdue")[0]["data"]["what"] == "task"


def test_an_unanswered_survey_becomes_a_call_for_the_village_cadre_who_closes_it(dispatch):
    resolved(dispatch)
    dispatch.call("call_back_unanswered", notify_event("survey_unanswered", "SDJ-261127-TEST0001"))
    [task] = [e["data"] for e in events_of(dispatch, "task_assigned")]
    cadre = village_duty(VILLAGE, dispatch.clock.now())
    assert (task["kind"], task["task_assignee_id"]) == ("follow_up", cadre.id)
    as_cadre = Principal(cadre.id, "village_cadre", VILLAGE)
    status, _ = http(dispatch, "task_done", as_cadre, {"outcome": "satisfied", "note": "电话回访，满意"},
                     task_id=task["task_id"])
    assert status == 200
    case = case_of(dispatch)
    assert (case.state, case.closed_how, case.satisfied) == ("closed", "follow_up_call", True)


def test_a_resident_the_cadre_cannot_reach_is_closed_as_unreached(dispatch):
    resolved(dispatch)
    dispatch.call("call_back_unanswered", notify_event("survey_unanswered", "SDJ-261127-TEST0001"))
    task_id = events_of(dispatch, "task_assigned")[0]["data"]["task_id"]
    cadre = Principal(village_duty(VILLAGE, dispatch.clock.now()).id, "village_cadre", VILLAGE)
    assert http(dispatch, "task_done", cadre, {"outcome": "reached"}, task_id=task_id)[0] == 400
    http(dispatch, "task_done", cadre, {"outcome": "unreachable", "note": "三次未接"}, task_id=task_id)
    case = case_of(dispatch)
    assert (case.state, case.closed_how, case.satisfied) == ("closed", "unreached", None)
    closed = events_of(dispatch, "ticket_closed")[-1]["data"]
    assert (closed["how"], closed["satisfied"]) == ("unreached", None)


def test_history_carries_each_event_s_data_for_the_ledger(dispatch):
    dispatch.call("open_case", [received()])
    with dispatch.db.transaction() as s:
        offered = s.scalars(select(HistoryEntry).where(HistoryEntry.event == "ticket_offered")).one()
        assert json.loads(offered.data)["accept_due_at"] == (T0 + timedelta(minutes=10)).isoformat()


def test_routing_a_village_request_uses_the_grid_worker_on_duty(dispatch):
    dispatch.call("open_case", [received()])
    case = case_of(dispatch)
    expected = route(VILLAGE, case.address, AreaMap.load(), T0)
    assert (case.grid_code, case.assignee_id) == (expected.grid_code, expected.assignee_id)


# --- the ledger, from what the real lifecycle recorded -------------------------------------------


def test_the_ledger_of_real_tickets_agrees_with_their_history(dispatch):
    """Tickets taken down every path by the handlers and the timer; the ledger's rates are recomputed
    from the history alone (tests/ledger_evidence.py) and must agree at every level."""
    from services.dispatch.ledger import LEVELS, ledger_of
    from services.dispatch.service import handling_of
    from tests.ledger_evidence import recompute_from_history

    arrivals, villages = {}, (VILLAGE, "341323104201", "341302100200")
    for n in range(24):
        ticket = f"SDJ-261127-LEDG{n:04d}"
        village = villages[n % 3]
        proxy = n % 6 == 5
        env = received(ticket_id=ticket, channel="hotline" if n % 4 == 0 else "wechat", village=village,
                       code="101" if proxy else "801", proxy=proxy, skill=None if proxy else "delivery",
                       vulnerable=n % 5 == 0)
        dispatch.call("open_case", [env])
        data = env["data"]
        arrivals[ticket] = {"received_at": datetime.fromisoformat(data["received_at"]),
                            "county_code": data["county_code"], "village_code": village,
                            "department": data["category"]["department"], "handling": handling_of(data["category"])}
        if n % 3 == 0:  # acknowledged within 10 s, or (every other one) not
            ack = notify_event("resident_acknowledged", ticket, template="ack",
                               delivered_at=(T0 + timedelta(seconds=3 if n % 2 else 30)).isoformat())
            dispatch.call("note_acknowledged", [ack])
    dispatch.clock.advance(minutes=3)
    for n in range(24):
        ticket, case = f"SDJ-261127-LEDG{n:04d}", case_of(dispatch, f"SDJ-261127-LEDG{n:04d}")
        who = (Principal(case.assignee_id, "village_cadre", case.village_code) if case.handling == "proxy"
               else worker_of(case))
        path = n % 8
        if path == 1:
            http(dispatch, "cancel", Principal("d", "county_dispatcher", case.county_code), {"reason": "重复"},
                 ticket_id=ticket)
        elif path == 2:
            http(dispatch, "return_ticket", who, {"reason": "非本网格"}, ticket_id=ticket)
        elif path == 3:
            continue  # nobody accepts: it will climb
        elif path in (0, 4, 5, 6, 7):
            http(dispatch, "accept", who, ticket_id=ticket)
            if case.handling == "proxy":
                http(dispatch, "file", who, {"note": ""}, ticket_id=ticket)
                staff = Principal("s", "department_staff", case.county_code, department=case.department)
                http(dispatch, "decide", staff, {"approved": True, "decision": "准予"}, ticket_id=ticket)
            if path != 7:  # 7: accepted, never resolved: it will be supervised
                http(dispatch, "resolve", who, {"note": "done"}, ticket_id=ticket)
            if path in (4, 5):
                dispatch.call("follow_up", [notify_event("feedback_received", ticket, satisfied=path == 4,
                                                        comment="", round=1)])
    for n in range(0, 24, 2):  # a dispatcher reassigns half of what came back; the rest climbs
        ticket = f"SDJ-261127-LEDG{n:04d}"
        if case_of(dispatch, ticket).state == "returned":
            grid = f"{case_of(dispatch, ticket).village_code}-G01"
            desk = Principal("d", "county_dispatcher", case_of(dispatch, ticket).county_code)
            status, _ = http(dispatch, "reassign", desk, {"grid_code": grid, "reason": "改派"}, ticket_id=ticket)
            assert status == 200
    tick(dispatch, minutes=20)
    tick(dispatch, minutes=45)
    for n in range(3, 24, 8):  # whoever the climbing ones reached takes them, late
        ticket = f"SDJ-261127-LEDG{n:04d}"
        assert http(dispatch, "accept", holder(case_of(dispatch, ticket)), ticket_id=ticket)[0] == 200

    with dispatch.db.transaction() as s:
        history = [{"ticket_id": h.ticket_id, "at": h.at, "event": h.event, "state": h.state, "actor": h.actor,
                    "data": h.data, "id": h.id} for h in s.scalars(select(HistoryEntry).order_by(HistoryEntry.id))]
        now = dispatch.clock.now() + timedelta(hours=3)  # later than some deadlines the timer has not fired yet
        checked = 0
        for area in ("3413", COUNTY, TOWN, VILLAGE):
            for level in (None, *LEVELS):
                for period in (None, "2026-11", "2026-11-27", "2026-W48"):
                    ledger = ledger_of(s, area, level, period, now=now)
                    expected = recompute_from_history(history, arrivals, area=area, level=level, period=period,
                                                      now=now)
                    where = (area, level, period)
                    assert [r["key"] for r in ledger["rows"]] == [r["key"] for r in expected["rows"]], where
                    for got, want in zip(ledger["rows"] + [ledger["totals"]], expected["rows"] + [expected["totals"]]):
                        assert {k: v for k, v in got.items() if v != want.get(k)} == {}, (where, got["key"], want)
                    checked += bool(ledger["rows"])
        totals = ledger_of(s, "3413", now=now)["totals"]
    assert checked > 50
    for count in ("acknowledged_10s", "accepted_on_time", "resolved_on_time", "overdue_now", "escalated", "returned",
                  "reassigned", "reopened", "cancelled", "closed", "proxy_handled"):
        assert totals[count] > 0, count  # every path was taken
    assert totals["accepted"] > totals["accepted_on_time"]  # and some were late


def test_changes_to_one_case_are_serialised_across_instances(tmp_path, postgres_url):
    """Instance A holds the case mid-change; B's accept waits for it, then sees A's result (409), and no
    change is lost (PostgreSQL: the case row is read FOR UPDATE)."""
    import eventlet
    from sqlalchemy import text
    from tests.waiting import wait_until
    a, b = (Worker(DispatchService, tmp_path, clock=ManualClock(T0), areas=AreaMap.load(), policy=POLICY,
                   staff=Staff(), db_url=postgres_url) for _ in range(2))
    a.call("open_case", [received()])
    worker = worker_of(case_of(a))
    with a.db.transaction() as s:
        case = s.get(Case, "SDJ-261127-TEST0001", with_for_update=True)
        case.state, case.version = "accepted", case.version + 1  # A's change, not committed yet
        s.flush()
        b_accepts = eventlet.spawn(http, b, "accept", worker, ticket_id="SDJ-261127-TEST0001")
        with b.db.transaction() as probe:
            wait_until(lambda: probe.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")) > 0,
                       timeout=10, message="B waiting for A's lock")
    status, body = b_accepts.wait()
    assert status == 409 and "is accepted" in body["error"]
    assert case_of(a).version == 3  # routed, offered, A's change: B changed nothing
