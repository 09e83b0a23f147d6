"""A ticket's life in dispatch, on a plain object: route, offer, accept, resolve, follow up."""
from __future__ import annotations

import json

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from services.common.envelope import seal
from services.dispatch import lifecycle
from services.dispatch.areas import AreaMap
from services.dispatch.events import SCHEMAS
from services.dispatch.roster import on_duty
from services.dispatch.routing import Assignment, route as route_ticket, route_to_county_centre
from services.dispatch.supervision import Policy

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)
POLICY = Policy()
YANGDONG = "341323104214"
GRID = f"{YANGDONG}-G10"
WORKER, OTHER_WORKER = f"W-{GRID}-1", f"W-{GRID}-2"
ASSIGNMENT = Assignment(
    grid_code=GRID, assignee_id=WORKER, assignee_name="李桂兰",
    area_path=("3413", "341323", "341323104", YANGDONG, GRID),
    work_key=f"area.3413.341323.341323104.{YANGDONG}.{GRID}")


@dataclass
class FakeCase:
    """The attributes of `services.dispatch.models.Case`, without SQLAlchemy."""
    id: str = "SDJ-261127-7KQ2M4XA"
    state: str = "received"
    version: int = 0
    category_code: str = "801"
    department: str = "civil"
    priority: int = 1
    village_code: str | None = YANGDONG
    county_code: str = "341323"
    address: str = "杨东村三组"
    grid_code: str | None = None
    work_key: str | None = None
    assignee_id: str | None = None
    assignee_name: str | None = None
    volunteer_skill: str | None = "delivery"
    volunteer_id: str | None = None
    accept_minutes: int = 10
    resolve_hours: int = 2
    follow_up_hours: int = 24
    accept_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
    received_at: datetime = NOW
    resolved_at: datetime | None = None
    updated_at: datetime = NOW
    reopen_count: int = 0
    channel: str = "hotline"
    vulnerable: bool = False
    handling: str = "grid"
    level: int = 0
    supervisor_id: str | None = None
    supervisor_name: str | None = None
    resolve_minutes: int | None = None
    filed_at: datetime | None = None
    decision_due_at: datetime | None = None
    decision: str | None = None
    approved: bool | None = None
    acknowledged_at: datetime | None = None
    accepted_at: datetime | None = None
    closed_at: datetime | None = None
    accepted_on_time: bool | None = None
    resolved_on_time: bool | None = None
    overdue_count: int = 0
    escalation_count: int = 0
    return_count: int = 0
    reassign_count: int = 0
    satisfied: bool | None = None
    closed_how: str | None = None
    late: bool = False


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def names(events) -> list[str]:
    return [e.name for e in events]


def offered_case(**attrs) -> FakeCase:
    case = FakeCase(**attrs)
    lifecycle.route(case, ASSIGNMENT, NOW, POLICY)
    return case


def resolved_case() -> FakeCase:
    case = offered_case()
    lifecycle.accept(case, at(5), POLICY)
    lifecycle.resolve(case, "已代购米面油送到家", at(60))
    return case


def test_model_and_stand_in_have_the_same_attributes():
    from services.dispatch.models import Case
    assert set(Case.__table__.columns.keys()) == set(FakeCase.__dataclass_fields__)


def test_routing_offers_the_ticket_to_the_worker_on_duty():
    case = FakeCase(volunteer_skill=None)
    events = lifecycle.route(case, ASSIGNMENT, NOW, POLICY)
    assert names(events) == ["ticket_routed", "ticket_offered"]
    assert (case.state, case.version) == ("offered", 2)
    assert (case.grid_code, case.assignee_id, case.assignee_name) == (GRID, WORKER, "李桂兰")
    assert case.work_key == ASSIGNMENT.work_key
    assert case.accept_due_at == NOW + timedelta(minutes=10)
    routed, offered = (e.data for e in events)
    assert routed["area_path"] == ["3413", "341323", "341323104", YANGDONG, GRID]
    assert offered == {"state": "offered", "ticket_version": 2, "assignee_id": WORKER,
                       "assignee_name": "李桂兰", "grid_code": GRID, "work_key": ASSIGNMENT.work_key,
                       "accept_due_at": "2026-11-27T01:10:00+00:00", "priority": 1,
                       "category_code": "801"}


def test_routing_through_the_area_map_offers_the_ticket_to_the_worker_on_duty_there():
    areas = AreaMap.load()
    assignment = route_ticket(YANGDONG, "杨东村三组", areas, NOW)
    case = FakeCase()
    lifecycle.route(case, assignment, NOW, POLICY)
    grid = areas.grid_for(YANGDONG, "杨东村三组")
    assert case.grid_code == grid.code
    assert case.assignee_id == on_duty(grid, NOW).id
    assert case.work_key.startswith(f"area.3413.341323.341323104.{YANGDONG}.")


def test_volunteer_is_requested_only_for_categories_that_need_one():
    with_skill = lifecycle.route(FakeCase(volunteer_skill="delivery"), ASSIGNMENT, NOW, POLICY)
    without_skill = lifecycle.route(FakeCase(volunteer_skill=None), ASSIGNMENT, NOW, POLICY)
    assert names(with_skill) == ["ticket_routed", "ticket_offered", "volunteer_requested"]
    assert with_skill[-1].data == {"skill": "delivery", "village_code": YANGDONG,
                                   "town_code": "341323104", "priority": 1, "exclude": []}
    assert names(without_skill) == ["ticket_routed", "ticket_offered"]


def test_an_unplaced_request_waits_at_its_county_centre_and_asks_no_volunteer_yet():
    areas = AreaMap.load()
    case = FakeCase(village_code=None, volunteer_skill="delivery")
    events = lifecycle.route(case, route_to_county_centre("341323", areas), NOW, POLICY)
    assert names(events) == ["ticket_routed", "ticket_offered"]  # "nearby" needs a village
    assert (case.state, case.grid_code, case.assignee_id) == ("offered", None, "centre-341323")
    assert case.assignee_name == "灵璧县调度中心"
    assert case.work_key == "area.3413.341323.unplaced"
    assert events[0].data["area_path"] == ["3413", "341323"]


def test_placing_routes_on_to_the_village_grid_and_now_asks_for_a_volunteer():
    areas = AreaMap.load()
    case = FakeCase(village_code=None)
    lifecycle.route(case, route_to_county_centre("341323", areas), NOW, POLICY)
    events = lifecycle.place(case, YANGDONG, ASSIGNMENT, at(3), POLICY)
    assert names(events) == ["ticket_routed", "ticket_offered", "volunteer_requested"]
    assert (case.village_code, case.grid_code, case.assignee_id) == (YANGDONG, GRID, WORKER)
    assert events[0].data["area_path"][3] == YANGDONG
    with pytest.raises(lifecycle.AlreadyPlaced):
        lifecycle.place(case, YANGDONG, ASSIGNMENT, at(4), POLICY)


def test_volunteer_is_not_requested_again_while_one_is_on_the_ticket():
    case = FakeCase(state="returned", version=5, volunteer_id="V004211")
    assert "volunteer_requested" not in names(lifecycle.route(case, ASSIGNMENT, NOW, POLICY))


def test_accepting_sets_the_time_to_resolve():
    case = offered_case()
    events = lifecycle.accept(case, at(5), POLICY)
    assert names(events) == ["ticket_accepted"]
    assert (case.state, case.version) == ("accepted", 3)
    assert case.resolve_due_at == at(5) + timedelta(hours=2)
    assert events[0].data["resolve_due_at"] == "2026-11-27T03:05:00+00:00"


def test_a_ticket_cannot_be_accepted_twice():
    case = offered_case()
    lifecycle.accept(case, at(5), POLICY)
    with pytest.raises(lifecycle.InvalidTransition, match="is accepted; it cannot become accepted"):
        lifecycle.accept(case, at(6), POLICY)
    assert case.version == 3


def test_resolve_before_accept_is_refused():
    case = offered_case()
    with pytest.raises(lifecycle.InvalidTransition) as caught:
        lifecycle.resolve(case, "done", at(5))
    assert str(caught.value) == f"ticket {case.id} is offered; it cannot become resolved"
    assert (case.state, case.version, case.resolved_at) == ("offered", 2, None)


def test_resolving_tells_when_to_follow_up():
    case = offered_case()
    lifecycle.accept(case, at(5), POLICY)
    events = lifecycle.resolve(case, "已代购米面油送到家", at(60))
    assert (case.state, case.version, case.resolved_at) == ("resolved", 4, at(60))
    assert events[0].data == {"state": "resolved", "ticket_version": 4, "assignee_id": WORKER,
                              "assignee_name": "李桂兰", "note": "已代购米面油送到家",
                              "resolved_at": "2026-11-27T02:00:00+00:00", "follow_up_hours": 24}


def test_the_assignee_marks_the_work_started_and_then_resolves_it():
    case = offered_case()
    with pytest.raises(lifecycle.InvalidTransition, match="is offered; it cannot become in_progress"):
        lifecycle.start(case, at(4))
    lifecycle.accept(case, at(5), POLICY)
    events = lifecycle.start(case, at(20))
    assert names(events) == ["ticket_in_progress"] and (case.state, case.version) == ("in_progress", 4)
    assert names(lifecycle.resolve(case, "送到了", at(40))) == ["ticket_resolved"]


def test_satisfied_follow_up_closes_the_ticket():
    case = resolved_case()
    events = lifecycle.record_follow_up(case, True, "满意", at(120))
    assert names(events) == ["ticket_closed"]
    assert (case.state, case.version, case.reopen_count) == ("closed", 6, 0)
    assert events[0].data == {"state": "closed", "ticket_version": 6, "assignee_id": WORKER,
                              "assignee_name": "李桂兰", "satisfied": True, "comment": "满意", "how": "resident"}


def test_unsatisfied_follow_up_reopens_and_counts():
    case = resolved_case()
    case.volunteer_id = "V004211"
    events = lifecycle.record_follow_up(case, False, "还没送到", at(120))
    assert names(events) == ["ticket_reopened"]
    assert (case.state, case.version, case.reopen_count) == ("reopened", 6, 1)
    assert events[0].data["comment"] == "还没送到" and events[0].data["reopen_count"] == 1
    assert case.volunteer_id is None

    again = lifecycle.route(case, ASSIGNMENT, at(121), POLICY)
    assert names(again) == ["ticket_routed", "ticket_offered", "volunteer_requested"]
    lifecycle.accept(case, at(125), POLICY)
    lifecycle.resolve(case, "补送到家", at(180))
    lifecycle.record_follow_up(case, False, "还是不满意", at(240))
    assert (case.state, case.reopen_count) == ("reopened", 2)


@pytest.mark.parametrize("step", [
    lambda case: lifecycle.route(case, ASSIGNMENT, at(200), POLICY),
    lambda case: lifecycle.accept(case, at(200), POLICY),
    lambda case: lifecycle.resolve(case, "again", at(200)),
    lambda case: lifecycle.record_follow_up(case, False, "再办一次", at(200)),
], ids=["route", "accept", "resolve", "follow_up"])
def test_a_closed_ticket_cannot_change(step):
    case = resolved_case()
    lifecycle.record_follow_up(case, True, "满意", at(120))
    before = vars(case).copy()
    with pytest.raises(lifecycle.InvalidTransition, match="is closed; it cannot become"):
        step(case)
    assert vars(case) == before


def test_follow_up_is_refused_before_the_ticket_is_resolved():
    case = offered_case()
    with pytest.raises(lifecycle.InvalidTransition, match="is offered; it cannot become followed_up"):
        lifecycle.record_follow_up(case, True, "", at(10))


def test_every_event_s_version_increases_and_every_event_passes_the_producer_schema():
    case = FakeCase()
    events = lifecycle.route(case, ASSIGNMENT, NOW, POLICY)
    events += lifecycle.accept(case, at(5), POLICY)
    events += lifecycle.resolve(case, "送到了", at(60))
    events += lifecycle.record_follow_up(case, False, "还没送到", at(120))
    events += lifecycle.route(case, ASSIGNMENT, at(121), POLICY)
    events += lifecycle.accept(case, at(125), POLICY)
    events += lifecycle.start(case, at(130))
    events += lifecycle.resolve(case, "补送到家", at(180))
    events += lifecycle.record_follow_up(case, True, "满意", at(240))

    versions = [e.data["ticket_version"] for e in events if "ticket_version" in e.data]
    assert versions == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13]
    assert case.version == versions[-1]
    assert names(events).count("volunteer_requested") == 2
    for event in events:
        assert event.ticket_id == event.correlation_id == case.id
        wire = json.loads(seal(event, SCHEMAS))  # raises when the lifecycle breaks its own published contract
        assert wire["event"] == event.name


# --- supervision's transitions, table-driven -----------------------------------------------------

DESK = Assignment(grid_code=None, assignee_id="town-341323104", assignee_name="冯庙镇调度",
                  area_path=("3413", "341323", "341323104"), work_key="area.3413.341323.341323104.desk", level=2)
CADRE = Assignment(grid_code=None, assignee_id=f"V-{YANGDONG}-1", assignee_name="周明", level=1,
                   area_path=("3413", "341323", "341323104", YANGDONG),
                   work_key=f"area.3413.341323.341323104.{YANGDONG}.duty")
ACTIONS = {
    "accept": lambda c: lifecycle.accept(c, at(5), POLICY),
    "start": lambda c: lifecycle.start(c, at(6)),
    "resolve": lambda c: lifecycle.resolve(c, "done", at(7)),
    "return": lambda c: lifecycle.return_ticket(c, "非本网格", DESK, at(8), POLICY),
    "reassign": lambda c: lifecycle.reassign(c, ASSIGNMENT, "改派", at(9), POLICY),
    "file": lambda c: lifecycle.file_with_department(c, "报送", at(10), POLICY, "dept.civil.341323"),
    "decide": lambda c: lifecycle.decide(c, True, "准予", at(11)),
    "cancel": lambda c: lifecycle.cancel(c, "dispatcher", "重复", at(12)),
    "escalate accept": lambda c: lifecycle.escalate(c, "accept", CADRE, at(13), POLICY),
    "escalate resolve": lambda c: lifecycle.escalate(c, "resolve", CADRE, at(14), POLICY),
}
# (state the case is in, action) -> state after it, and the events it causes; None: refused (409)
TRANSITIONS = [
    ("offered", "accept", "accepted", ["ticket_accepted"]),
    ("offered", "return", "returned", ["ticket_returned"]),
    ("offered", "reassign", "offered", ["ticket_routed", "ticket_offered", "volunteer_requested"]),
    ("offered", "cancel", "cancelled", ["ticket_cancelled"]),
    ("offered", "escalate accept", "offered", ["ticket_escalated", "ticket_routed", "ticket_offered"]),
    ("offered", "file", None, None),
    ("offered", "resolve", None, None),
    ("accepted", "start", "in_progress", ["ticket_in_progress"]),
    ("accepted", "return", "returned", ["ticket_returned"]),
    ("accepted", "file", "filed", ["ticket_filed"]),
    ("accepted", "reassign", "offered", ["ticket_routed", "ticket_offered", "volunteer_requested"]),
    ("accepted", "escalate resolve", "accepted", ["ticket_escalated"]),
    ("accepted", "cancel", "cancelled", ["ticket_cancelled"]),
    ("in_progress", "file", "filed", ["ticket_filed"]),
    ("in_progress", "resolve", "resolved", ["ticket_resolved"]),
    ("in_progress", "return", "returned", ["ticket_returned"]),
    ("filed", "decide", "in_progress", ["ticket_decided"]),
    ("filed", "resolve", None, None),
    ("filed", "return", None, None),
    ("filed", "cancel", "cancelled", ["ticket_cancelled"]),
    ("returned", "reassign", "offered", ["ticket_routed", "ticket_offered", "volunteer_requested"]),
    ("returned", "escalate accept", "offered", ["ticket_escalated", "ticket_routed", "ticket_offered"]),
    ("returned", "accept", None, None),
    ("returned", "cancel", "cancelled", ["ticket_cancelled"]),
    ("resolved", "cancel", None, None),
    ("resolved", "return", None, None),
    ("resolved", "reassign", None, None),
    ("closed", "cancel", None, None),
    ("cancelled", "accept", None, None),
    ("cancelled", "reassign", None, None),
]


def case_in_state(state: str) -> FakeCase:
    case = offered_case(resolve_minutes=120)
    path = {"offered": [], "accepted": ["accept"], "in_progress": ["accept", "start"],
            "filed": ["accept", "file"], "returned": ["return"], "resolved": ["accept", "resolve"],
            "cancelled": ["cancel"]}
    if state == "closed":
        case = resolved_case()
        lifecycle.record_follow_up(case, True, "满意", at(100))
        return case
    for action in path[state]:
        ACTIONS[action](case)
    assert case.state == state
    return case


@pytest.mark.parametrize("state, action, after, events", TRANSITIONS)
def test_supervision_transitions(state, action, after, events):
    case = case_in_state(state)
    version = case.version
    if after is None:
        with pytest.raises(lifecycle.InvalidTransition):
            ACTIONS[action](case)
        assert (case.state, case.version) == (state, version)  # refused: nothing changed
        return
    caused = ACTIONS[action](case)
    assert (case.state, names(caused)) == (after, events)
    for event in caused:  # every event is what the producer contract allows
        if event.name in SCHEMAS:
            json.loads(seal(event, SCHEMAS))


def test_a_missed_accept_is_counted_late_even_if_the_next_level_accepts_in_its_time():
    case = offered_case()
    lifecycle.overdue(case, "accept", case.accept_due_at, at(11))
    lifecycle.escalate(case, "accept", CADRE, at(11), POLICY)
    lifecycle.accept(case, at(12), POLICY)
    assert (case.accepted_on_time, case.overdue_count, case.escalation_count, case.level) == (False, 1, 1, 1)
    lifecycle.resolve(case, "done", at(20))
    assert case.resolved_on_time is True  # resolving is a step of its own


def test_supervising_keeps_the_assignee_and_sets_a_new_deadline_of_the_level():
    case = offered_case()
    lifecycle.accept(case, at(5), POLICY)
    [escalated] = lifecycle.escalate(case, "resolve", CADRE, at(40), POLICY)
    assert (case.assignee_id, case.supervisor_id) == (WORKER, CADRE.assignee_id)
    assert case.resolve_due_at == at(40) + timedelta(minutes=30)
    assert escalated.data["mode"] == "supervise" and escalated.data["due_at"] == case.resolve_due_at.isoformat()


def test_an_escalated_offer_names_the_new_assignee_who_is_told():
    case = offered_case()
    escalated = lifecycle.escalate(case, "accept", CADRE, at(11), POLICY)[0]
    assert (escalated.data["state"], escalated.data["assignee_id"]) == ("escalated", CADRE.assignee_id)


def test_the_department_s_time_does_not_count_against_the_village():
    case = offered_case(resolve_minutes=60)
    lifecycle.accept(case, at(0), POLICY)
    lifecycle.file_with_department(case, "", at(30), POLICY, "dept.civil.341323")
    lifecycle.decide(case, True, "准予", at(30 + 2 * 24 * 60))
    assert case.resolve_due_at == at(60 + 2 * 24 * 60)


def test_unreached_closes_with_no_satisfaction_and_too_many_reopens_are_noticed():
    case = resolved_case()
    events = lifecycle.close_unreached(case, "三次未接", at(200))
    assert (case.state, case.closed_how, events[0].data["satisfied"], events[0].data["how"]) == (
        "closed", "unreached", None, "unreached")
    assert not lifecycle.too_often_reopened(FakeCase(reopen_count=2), POLICY)
    assert lifecycle.too_often_reopened(FakeCase(reopen_count=3), POLICY)
