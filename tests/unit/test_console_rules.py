"""The web console's own rules, without HTTP, nameko or a browser: which queue a case is in and what runs for it,
which forms a case's page offers, whose pages hear of new work, the session cookie, and what the pages say."""
from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.common.staff import Principal
from services.console import feed, sessions, texts, views
from services.console.texts import Texts
from services.dispatch import lifecycle, supervision
from services.intake.tickets import CHANNELS as INTAKE_CHANNELS
from songdaojia import broker

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)
CITY, COUNTY, TOWN, VILLAGE = "3413", "341323", "341323104", "341323104214"
GRID, NEIGHBOUR_GRID = f"{VILLAGE}-G10", f"{VILLAGE}-G11"
WORKER = f"W-{GRID}-1"
TEMPLATES = Path(views.__file__).parent / "templates"

# the keys dispatch publishes work under (README "Dispatch consoles", feed.visible)
GRID_KEY = f"area.{CITY}.{COUNTY}.{TOWN}.{VILLAGE}.{GRID}"
NEIGHBOUR_KEY = f"area.{CITY}.{COUNTY}.{TOWN}.{VILLAGE}.{NEIGHBOUR_GRID}"
PROXY_KEY = f"area.{CITY}.{COUNTY}.{TOWN}.{VILLAGE}.proxy"
DESK_KEY = f"area.{CITY}.{COUNTY}.{TOWN}.desk"
UNPLACED_KEY = f"area.{CITY}.{COUNTY}.unplaced"
OTHER_TOWN_KEY = f"area.{CITY}.{COUNTY}.341323105.341323105201.341323105201-G01"
OTHER_COUNTY_KEY = f"area.{CITY}.341324.341324100.desk"
CIVIL_DESK, HEALTH_DESK, CIVIL_ELSEWHERE = f"dept.civil.{COUNTY}", f"dept.health.{COUNTY}", "dept.civil.341324"


def who(role, area, subject="someone", department=None):
    return Principal(subject, role, area, department)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def case(ticket_id="SDJ-1", state="offered", priority=3, **fields):
    return {"ticket_id": ticket_id, "state": state, "priority": priority, "assignee_id": WORKER,
            "village_code": VILLAGE, **fields}


def ids(rows):
    return [row.case["ticket_id"] for row in rows]


# --- queues: waiting and in hand ----------------------------------------------------------------

def test_cases_nobody_has_taken_wait_and_cases_being_worked_are_in_hand():
    cases = [case(f"SDJ-{state}", state, accept_due_at=iso(NOW + timedelta(hours=1)),
                  resolve_due_at=iso(NOW + timedelta(hours=1)), decision_due_at=iso(NOW + timedelta(hours=1)))
             for state in lifecycle.ALLOWED]
    waiting, in_hand = views.queue_rows(cases, NOW)
    assert sorted(ids(waiting)) == sorted(f"SDJ-{s}" for s in
                                          ("offered", "returned", "escalated", "routed", "received", "reopened"))
    assert sorted(ids(in_hand)) == sorted(f"SDJ-{s}" for s in ("accepted", "in_progress", "filed"))
    # done, closed and cancelled cases are in neither list
    shown = set(ids(waiting)) | set(ids(in_hand))
    assert not shown & {"SDJ-resolved", "SDJ-followed_up", "SDJ-closed", "SDJ-cancelled"}


def test_a_queue_is_most_urgent_first_priority_one_before_the_nearest_deadline():
    cases = [case("SDJ-p3-soon", priority=3, accept_due_at=iso(NOW + timedelta(minutes=5))),
             case("SDJ-p1-late", priority=1, accept_due_at=iso(NOW + timedelta(hours=5))),
             case("SDJ-p1-soon", priority=1, accept_due_at=iso(NOW + timedelta(minutes=30))),
             case("SDJ-p1-none", priority=1, state="routed"),
             case("SDJ-p2", priority=2, accept_due_at=iso(NOW + timedelta(hours=9)))]
    waiting, in_hand = views.queue_rows(cases, NOW)
    assert ids(waiting) == ["SDJ-p1-soon", "SDJ-p1-late", "SDJ-p1-none", "SDJ-p2", "SDJ-p3-soon"]
    assert in_hand == []


def test_in_hand_cases_are_ordered_by_the_deadline_that_runs_for_them():
    cases = [case("SDJ-filed", "filed", priority=2, decision_due_at=iso(NOW + timedelta(hours=1)),
                  resolve_due_at=iso(NOW - timedelta(days=3))),
             case("SDJ-accepted", "accepted", priority=2, resolve_due_at=iso(NOW + timedelta(hours=2)),
                  accept_due_at=iso(NOW - timedelta(days=3))),
             case("SDJ-working", "in_progress", priority=2, resolve_due_at=iso(NOW + timedelta(minutes=10)))]
    _, in_hand = views.queue_rows(cases, NOW)
    assert ids(in_hand) == ["SDJ-working", "SDJ-filed", "SDJ-accepted"]
    assert not any(row.overdue for row in in_hand)  # the old deadlines of other steps do not count


def test_a_case_is_overdue_past_its_deadline_or_when_dispatch_says_so():
    cases = [case("SDJ-past", accept_due_at=iso(NOW - timedelta(seconds=1))),
             case("SDJ-ahead", accept_due_at=iso(NOW + timedelta(minutes=1))),
             case("SDJ-flagged", accept_due_at=iso(NOW + timedelta(minutes=1)), overdue=True),
             case("SDJ-flagged-no-deadline", "routed", overdue=True),
             case("SDJ-no-deadline", "routed")]
    waiting, _ = views.queue_rows(cases, NOW)
    overdue = {row.case["ticket_id"]: row.overdue for row in waiting}
    assert overdue == {"SDJ-past": True, "SDJ-ahead": False, "SDJ-flagged": True,
                       "SDJ-flagged-no-deadline": True, "SDJ-no-deadline": False}


def test_the_supervisors_list_mixes_waiting_and_in_hand_by_urgency():
    cases = [case("SDJ-a", "accepted", priority=2, resolve_due_at=iso(NOW + timedelta(hours=1))),
             case("SDJ-b", "offered", priority=1, accept_due_at=iso(NOW + timedelta(hours=3))),
             case("SDJ-c", "returned", priority=2, accept_due_at=iso(NOW + timedelta(minutes=5))),
             case("SDJ-d", "closed", priority=1)]
    assert ids(views.all_rows(cases, NOW)) == ["SDJ-b", "SDJ-c", "SDJ-a"]


@pytest.mark.parametrize("state, field", [
    ("offered", "accept_due_at"), ("returned", "accept_due_at"), ("escalated", "accept_due_at"),
    ("accepted", "resolve_due_at"), ("in_progress", "resolve_due_at"), ("filed", "decision_due_at")])
def test_the_running_deadline_is_the_one_of_the_step_the_case_is_at(state, field):
    moments = {"accept_due_at": NOW + timedelta(minutes=1), "resolve_due_at": NOW + timedelta(minutes=2),
               "decision_due_at": NOW + timedelta(minutes=3)}
    assert views.running_deadline(case(state=state, **{k: iso(v) for k, v in moments.items()})) == moments[field]


@pytest.mark.parametrize("state", ["received", "routed", "reopened", "resolved", "followed_up", "closed",
                                   "cancelled"])
def test_no_deadline_runs_in_the_other_states(state):
    every = {f: iso(NOW) for f in ("accept_due_at", "resolve_due_at", "decision_due_at")}
    assert views.running_deadline(case(state=state, **every)) is None


def test_a_deadline_without_a_time_zone_is_read_as_utc():
    assert views.running_deadline(case(accept_due_at="2026-11-27T01:30:00")) == NOW + timedelta(minutes=30)
    assert views.running_deadline(case(accept_due_at="2026-11-27T09:30:00+08:00")) == NOW + timedelta(minutes=30)
    assert views.running_deadline(case(accept_due_at=None)) is None
    assert views.running_deadline(case(accept_due_at="")) is None


# --- the forms a case's page offers --------------------------------------------------------------

def test_the_assigned_grid_worker_gets_the_forms_of_the_step_the_case_is_at():
    me = who("grid_worker", GRID, WORKER)
    assert views.actions_for(me, case(state="offered")) == ["accept", "return"]
    assert views.actions_for(me, case(state="accepted")) == ["start", "resolve", "return"]
    assert views.actions_for(me, case(state="in_progress")) == ["resolve", "return"]
    for state in ("routed", "returned", "escalated", "filed", "resolved", "closed", "cancelled"):
        assert views.actions_for(me, case(state=state)) == [], state


def test_a_worker_who_is_not_the_assignee_gets_no_forms():
    neighbour = who("grid_worker", GRID, f"W-{GRID}-2")
    for state in ("offered", "accepted", "in_progress"):
        assert views.actions_for(neighbour, case(state=state)) == []
        assert views.actions_for(neighbour, case(state=state, village_code=None)) == []


@pytest.mark.parametrize("dispatcher", [who("town_dispatcher", TOWN, "T-1"), who("county_dispatcher", COUNTY, "C-1")])
def test_a_dispatcher_reassigns_waiting_and_worked_cases(dispatcher):
    for state in ("offered", "returned", "accepted", "in_progress"):
        assert views.actions_for(dispatcher, case(state=state))[:1] == ["reassign"], state
    for state in ("escalated", "resolved", "followed_up", "closed", "cancelled"):  # escalated: re-routed at once
        assert "reassign" not in views.actions_for(dispatcher, case(state=state)), state


def test_only_the_county_s_dispatch_centre_places_a_map_point():
    county, town = who("county_dispatcher", COUNTY, "C-1"), who("town_dispatcher", TOWN, "T-1")
    assert views.actions_for(county, case(state="offered", village_code=None)) == ["reassign", "transfer", "place",
                                                                                   "cancel"]
    assert views.actions_for(county, case(state="routed", village_code=None)) == ["place", "cancel"]
    assert views.actions_for(county, case(state="offered")) == ["reassign", "transfer", "cancel"]  # placed already
    for state in ("closed", "cancelled"):
        assert views.actions_for(county, case(state=state, village_code=None)) == [], state
    assert "place" not in views.actions_for(town, case(state="offered", village_code=None))


def test_a_dispatcher_who_is_also_named_assignee_does_not_get_a_workers_forms():
    desk = who("town_dispatcher", TOWN, WORKER)
    assert views.actions_for(desk, case(state="offered")) == ["reassign", "transfer", "cancel"]


def test_a_dispatcher_cancels_until_the_work_is_done():
    dispatcher = who("county_dispatcher", COUNTY, "C-1")
    for state in ("offered", "accepted", "in_progress", "returned", "filed", "routed"):
        assert "cancel" in views.actions_for(dispatcher, case(state=state)), state
    for state in ("resolved", "followed_up", "closed", "cancelled"):
        assert "cancel" not in views.actions_for(dispatcher, case(state=state)), state


def test_a_proxy_clerk_files_an_accepted_proxy_item_and_its_department_decides():
    clerk = who("village_cadre", VILLAGE, "P-341323104214")
    proxy = {"handling": "proxy", "assignee_id": clerk.subject, "department": "hrss"}
    assert views.actions_for(clerk, case(state="accepted", **proxy)) == ["start", "resolve", "file", "return"]
    assert "file" not in views.actions_for(clerk, case(state="accepted", **{**proxy, "handling": "grid"}))
    hrss = who("department_staff", COUNTY, "hrss-1", department="hrss")
    civil = who("department_staff", COUNTY, "civil-1", department="civil")
    assert views.actions_for(hrss, case(state="filed", **proxy)) == ["decide"]
    assert views.actions_for(civil, case(state="filed", **proxy)) == []  # another department's: not offered


def test_a_supervisor_gets_no_forms():
    boss = who("supervisor", CITY, WORKER)
    for state in lifecycle.ALLOWED:
        assert views.actions_for(boss, case(state=state)) == []
        assert views.actions_for(boss, case(state=state, village_code=None)) == []


def test_every_form_offered_is_one_the_console_knows():
    people = [who("grid_worker", GRID, WORKER), who("village_cadre", VILLAGE, WORKER),
              who("department_staff", COUNTY, WORKER, "civil"), who("town_dispatcher", TOWN),
              who("county_dispatcher", COUNTY)]
    for person in people:
        for state in lifecycle.ALLOWED:
            for village in (VILLAGE, None):
                assert set(views.actions_for(person, case(state=state, village_code=village))) <= set(views.ACTIONS)


# --- calls to make -------------------------------------------------------------------------------

def test_a_person_sees_only_their_own_open_calls_about_this_ticket_with_the_outcomes_of_each_kind():
    me = who("grid_worker", GRID, WORKER)
    tasks = [{"task_id": 1, "ticket_id": "SDJ-1", "kind": "callback", "assignee_id": WORKER, "done_at": None},
             {"task_id": 2, "ticket_id": "SDJ-1", "kind": "follow_up", "assignee_id": WORKER},
             {"task_id": 3, "ticket_id": "SDJ-1", "kind": "reach", "assignee_id": WORKER,
              "done_at": iso(NOW)},                                                          # done
             {"task_id": 4, "ticket_id": "SDJ-1", "kind": "reach", "assignee_id": "W-other"},  # someone else's
             {"task_id": 5, "ticket_id": "SDJ-2", "kind": "reach", "assignee_id": WORKER}]     # another ticket
    calls = views.calls_for(me, tasks, "SDJ-1")
    assert [(c["task_id"], c["outcomes"]) for c in calls] == [
        (1, ("reached", "not_reached", "need_confirmed")), (2, ("satisfied", "unsatisfied", "unreachable"))]
    assert views.calls_for(me, tasks, "SDJ-2")[0]["outcomes"] == ("reached", "unreached")
    assert views.calls_for(me, tasks, "SDJ-9") == []


def test_a_call_of_a_kind_the_console_does_not_know_offers_no_outcome():
    me = who("grid_worker", GRID, WORKER)
    tasks = [{"task_id": 1, "ticket_id": "SDJ-1", "kind": "telepathy", "assignee_id": WORKER}]
    assert views.calls_for(me, tasks, "SDJ-1")[0]["outcomes"] == ()


def test_the_console_offers_exactly_the_call_outcomes_dispatch_takes():
    assert views.CALL_OUTCOMES == supervision.CALL_OUTCOMES


# --- the ledger's charts, days and clocks ----------------------------------------------------------

def test_a_rate_bar_shows_its_percentage_and_width_and_a_dash_when_there_is_nothing_to_rate():
    rows = [{"key": "341323104", "name": "杨疃镇", "resolved_on_time_rate": 0.875, "resolved": 8},
            {"key": "341323105", "resolved_on_time_rate": None, "resolved": 0},
            {"key": "341323106", "name": "", "resolved_on_time_rate": 1.0, "resolved": None},
            {"key": "341323107", "name": "某镇"}]
    bars = views.rate_bars(rows, "resolved_on_time_rate", "resolved")
    assert [(b.label, b.percent, b.width(360), b.count) for b in bars] == [
        ("杨疃镇", "87.5%", 315, 8), ("341323105", "—", 0, 0), ("341323106", "100.0%", 360, 0), ("某镇", "—", 0, 0)]
    assert views.Bar("x", 0.0, 3).percent == "0.0%"
    assert views.Bar("x", 0.0, 3).width(360) == 0
    assert views.Bar("x", 1 / 3, 3).percent == "33.3%"
    assert views.Bar("x", 1 / 3, 3).width(100) == 33


def test_the_trend_is_the_last_seven_days_ending_today_oldest_first_across_a_month_end():
    days = views.last_days(date(2026, 12, 1))
    assert days == ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28", "2026-11-29", "2026-11-30",
                    "2026-12-01"]
    assert views.month_of(days[0]) == "2026-11" and views.month_of(days[-1]) == "2026-12"
    assert views.last_days(date(2026, 3, 2), 3) == ["2026-02-28", "2026-03-01", "2026-03-02"]
    assert views.last_days(date(2026, 1, 1), 2) == ["2025-12-31", "2026-01-01"]


def test_a_day_without_tickets_is_zeros_in_the_trend():
    days = ["2026-11-29", "2026-11-30", "2026-12-01"]
    rows = [{"key": "2026-11-29", "received": 4, "resolved_on_time_rate": 0.5, "satisfaction_rate": 1.0},
            {"key": "2026-12-01", "received": 2, "resolved_on_time_rate": 1.0, "satisfaction_rate": None},
            {"key": "2026-11-01", "received": 9}]  # not one of the days: left out
    line = views.trend(days, rows)
    assert [day for day, _ in line] == days
    assert [totals["received"] for _, totals in line] == [4, 0, 2]
    assert line[1][1] == {"received": 0, "resolved_on_time_rate": None, "satisfaction_rate": None}
    assert [d for d, _ in views.trend(days, [])] == days


def test_times_are_shown_in_china_time():
    assert views.china_time("2026-12-01T23:29:21+00:00") == "2026-12-02 07:29:21"
    assert views.china_time("2026-12-01T23:29:21") == "2026-12-02 07:29:21"        # naive: UTC
    assert views.china_time("2026-12-02T07:29:21+08:00") == "2026-12-02 07:29:21"
    assert views.china_time(datetime(2026, 12, 1, 23, 29, 21, tzinfo=timezone.utc)) == "2026-12-02 07:29:21"
    assert views.china_time(None) == ""
    assert views.china_time("") == ""


def test_a_naive_moment_is_utc_whatever_the_servers_time_zone(monkeypatch):
    if not hasattr(time, "tzset"):
        pytest.skip("no time.tzset here")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert views.china_time(datetime(2026, 12, 1, 23, 29, 21)) == "2026-12-02 07:29:21"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_today_is_chinas_today_near_midnight():
    assert views.china_today(datetime(2026, 11, 30, 15, 59, 59, tzinfo=timezone.utc)) == date(2026, 11, 30)
    assert views.china_today(datetime(2026, 11, 30, 16, 0, tzinfo=timezone.utc)) == date(2026, 12, 1)
    assert views.last_days(views.china_today(datetime(2026, 11, 30, 16, 0, tzinfo=timezone.utc)))[-1] == "2026-12-01"


def test_the_countdown_shows_hours_minutes_seconds_and_whether_the_deadline_passed():
    assert views.countdown(NOW + timedelta(hours=1, minutes=2, seconds=3), NOW) == ("1:02:03", False)
    assert views.countdown(NOW + timedelta(hours=27, seconds=9), NOW) == ("27:00:09", False)
    assert views.countdown(NOW - timedelta(minutes=5, seconds=1), NOW) == ("0:05:01", True)
    assert views.countdown(NOW, NOW) == ("0:00:00", False)
    assert views.countdown(None, NOW) == ("", False)


# --- the live feed: what a console binds, who hears what ------------------------------------------

def test_an_areas_path_is_the_codes_down_to_it():
    assert feed.area_path(CITY) == [CITY]
    assert feed.area_path(COUNTY) == [CITY, COUNTY]
    assert feed.area_path(TOWN) == [CITY, COUNTY, TOWN]
    assert feed.area_path(VILLAGE) == [CITY, COUNTY, TOWN, VILLAGE]


def test_a_console_binds_its_areas_subtree_and_the_departments_desks_in_it():
    assert feed.work_keys(CITY) == ["area.3413.#", "dept.#"]
    assert feed.work_keys(COUNTY) == ["area.3413.341323.#", "dept.*.341323"]
    assert feed.work_keys(TOWN) == ["area.3413.341323.341323104.#"]


@pytest.mark.parametrize("area", [CITY, COUNTY, TOWN])
def test_every_key_a_console_binds_is_one_its_broker_login_may_bind(area):
    # RabbitMQ checks a binding key against the topic read permission as it is, '#' and '*' included
    allowed = broker.console_rights(tuple(feed.area_path(area)))["topics"]["dispatch.work"]["read"]
    for key in feed.work_keys(area):
        assert re.fullmatch(allowed, key), (area, key, allowed)


def test_a_consoles_broker_login_may_not_bind_beyond_its_area():
    county = broker.console_rights(tuple(feed.area_path(COUNTY)))["topics"]["dispatch.work"]["read"]
    for key in ("area.3413.#", "area.3413.341324.#", "area.#", "#", "dept.#", "dept.*.341324", "dept.civil.341324",
                "area.3413.3413230.#"):
        assert not re.fullmatch(county, key), key
    town = broker.console_rights(tuple(feed.area_path(TOWN)))["topics"]["dispatch.work"]["read"]
    for key in ("area.3413.341323.#", "area.3413.341323.341323105.#", "dept.#", "dept.*.341323"):
        assert not re.fullmatch(town, key), key


def test_a_grid_worker_hears_of_work_in_their_grid_only():
    me = who("grid_worker", GRID, WORKER)
    assert feed.visible(me, GRID_KEY)
    for key in (NEIGHBOUR_KEY, PROXY_KEY, DESK_KEY, UNPLACED_KEY, OTHER_TOWN_KEY, CIVIL_DESK):
        assert not feed.visible(me, key), key


def test_a_village_cadre_hears_of_the_villages_grids_and_its_proxy_items():
    cadre = who("village_cadre", VILLAGE)
    for key in (GRID_KEY, NEIGHBOUR_KEY, PROXY_KEY):
        assert feed.visible(cadre, key), key
    for key in (DESK_KEY, UNPLACED_KEY, OTHER_TOWN_KEY, CIVIL_DESK):
        assert not feed.visible(cadre, key), key


def test_a_town_dispatcher_hears_of_the_towns_work_and_its_desk():
    town = who("town_dispatcher", TOWN)
    for key in (GRID_KEY, NEIGHBOUR_KEY, PROXY_KEY, DESK_KEY):
        assert feed.visible(town, key), key
    for key in (UNPLACED_KEY, OTHER_TOWN_KEY, OTHER_COUNTY_KEY, CIVIL_DESK):
        assert not feed.visible(town, key), key


def test_a_county_dispatcher_hears_of_unplaced_requests_and_every_departments_desk_in_the_county():
    county = who("county_dispatcher", COUNTY)
    for key in (GRID_KEY, PROXY_KEY, DESK_KEY, UNPLACED_KEY, OTHER_TOWN_KEY, CIVIL_DESK, HEALTH_DESK):
        assert feed.visible(county, key), key
    for key in (OTHER_COUNTY_KEY, CIVIL_ELSEWHERE):
        assert not feed.visible(county, key), key


def test_department_staff_hear_only_of_their_departments_desk_in_their_county():
    civil = who("department_staff", COUNTY, department="civil")
    assert feed.visible(civil, CIVIL_DESK)
    for key in (HEALTH_DESK, CIVIL_ELSEWHERE, GRID_KEY, DESK_KEY, UNPLACED_KEY, PROXY_KEY):
        assert not feed.visible(civil, key), key


def test_a_supervisor_of_the_city_hears_of_everything_in_the_city():
    boss = who("supervisor", CITY)
    for key in (GRID_KEY, NEIGHBOUR_KEY, PROXY_KEY, DESK_KEY, UNPLACED_KEY, OTHER_TOWN_KEY, OTHER_COUNTY_KEY,
                CIVIL_DESK, HEALTH_DESK, CIVIL_ELSEWHERE):
        assert feed.visible(boss, key), key
    assert not feed.visible(boss, "area.3414.341401.desk")
    assert not feed.visible(boss, "dept.civil.341401")


def test_keys_of_no_known_shape_are_heard_by_nobody():
    for person in (who("supervisor", CITY), who("county_dispatcher", COUNTY), who("grid_worker", GRID, WORKER)):
        for key in ("", "dept", "dept.civil", "dept.civil.341323.extra", "work.3413", "3413.341323"):
            assert not feed.visible(person, key), (person.role, key)


def test_news_reaches_only_the_pages_of_people_who_may_see_it():
    hub = feed.Hub()
    _, grid_inbox = hub.open(who("grid_worker", GRID, WORKER))
    _, neighbour_inbox = hub.open(who("grid_worker", NEIGHBOUR_GRID, "W-2"))
    _, town_inbox = hub.open(who("town_dispatcher", TOWN))
    _, civil_inbox = hub.open(who("department_staff", COUNTY, department="civil"))
    news = {"ticket_id": "SDJ-1", "event": "ticket_offered", "key": GRID_KEY}
    assert hub.publish(GRID_KEY, news) == 2
    assert grid_inbox.get_nowait() == news and town_inbox.get_nowait() == news
    assert neighbour_inbox.empty() and civil_inbox.empty()
    assert hub.publish(CIVIL_DESK, news) == 1
    assert civil_inbox.get_nowait() == news
    assert hub.publish(OTHER_COUNTY_KEY, news) == 0


def test_each_page_of_a_person_is_told_on_its_own():
    hub = feed.Hub()
    me = who("grid_worker", GRID, WORKER)
    (first, one), (second, two) = hub.open(me), hub.open(me)
    assert first != second
    assert hub.publish(GRID_KEY, {"ticket_id": "SDJ-1"}) == 2
    assert one.qsize() == two.qsize() == 1


def test_a_page_that_stopped_reading_drops_news_without_holding_up_the_others():
    hub = feed.Hub()
    _, stuck = hub.open(who("grid_worker", GRID, WORKER))
    _, reading = hub.open(who("village_cadre", VILLAGE))
    for n in range(feed.PENDING_PER_PAGE):
        hub.publish(GRID_KEY, {"ticket_id": f"SDJ-{n}"})
        reading.get_nowait()
    assert stuck.full()
    assert hub.publish(GRID_KEY, {"ticket_id": "SDJ-late"}) == 2  # returns at once: nothing waits for `stuck`
    assert stuck.qsize() == feed.PENDING_PER_PAGE  # still has news to make it look again
    assert reading.get_nowait() == {"ticket_id": "SDJ-late"}


def test_a_closed_page_hears_nothing_more():
    hub = feed.Hub()
    page, inbox = hub.open(who("grid_worker", GRID, WORKER))
    hub.close(page)
    assert hub.publish(GRID_KEY, {"ticket_id": "SDJ-1"}) == 0
    assert inbox.empty()
    hub.close(page)  # twice: nothing happens
    hub.close("no-such-page")


def test_the_news_names_the_ticket_and_the_event_from_the_envelope():
    envelope = {"event": "ticket_offered", "ticket_id": "SDJ-261127-7KQ2M4XA", "payload": {"secret": "x"}}
    expected = {"ticket_id": "SDJ-261127-7KQ2M4XA", "event": "ticket_offered", "key": GRID_KEY}
    assert feed.news_of(json.dumps(envelope).encode(), GRID_KEY) == expected
    assert feed.news_of(json.dumps(envelope), GRID_KEY) == expected
    assert feed.news_of(envelope, GRID_KEY) == expected


@pytest.mark.parametrize("body", [b"\xff\xfe\xfa not utf-8", b"{not json", b"", b"[1, 2]", b"null", b'"a string"',
                                  "{broken", 42, None, ["a"], b"1" * 5000, b"[" * 100_000])
def test_a_message_that_is_not_an_envelope_still_wakes_the_pages_of_its_key(body):
    assert feed.news_of(body, DESK_KEY) == {"ticket_id": "", "event": "", "key": DESK_KEY}


def test_the_news_is_cut_short():
    news = feed.news_of({"ticket_id": "T" * 500, "event": "E" * 500}, "area." + "9" * 1000)
    assert (len(news["ticket_id"]), len(news["event"]), len(news["key"])) == (40, 40, 200)
    assert feed.news_of({"ticket_id": 12345, "event": None}, "k") == {"ticket_id": "12345", "event": "", "key": "k"}


# --- sessions ------------------------------------------------------------------------------------

def test_the_database_keeps_the_sha256_of_the_cookie_not_the_cookie():
    cookie = sessions.new_secret()
    key = sessions.key_of(cookie)
    assert key == hashlib.sha256(cookie.encode("utf-8")).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", key) and cookie not in key
    assert sessions.key_of(cookie) == key and sessions.key_of(cookie + "x") != key
    assert len(cookie) >= 43 and sessions.new_secret() != cookie  # 256 random bits, each time new


@pytest.mark.parametrize("expected, given", [("abc", None), ("abc", ""), ("abc", "abd"), (None, "abc"), ("", ""),
                                             (None, None), ("abc", "abc "), ("abc", "ab")])
def test_a_form_without_this_sessions_csrf_token_is_refused(expected, given):
    with pytest.raises(sessions.BadForm):
        sessions.check_csrf(expected, given)


def test_a_form_with_this_sessions_csrf_token_passes():
    token = sessions.new_secret()
    sessions.check_csrf(token, token)
    sessions.check_csrf("令牌", "令牌")


def test_a_session_ends_with_its_token_or_after_the_session_hours_whichever_is_first():
    soon = NOW + timedelta(hours=2)
    late = NOW + timedelta(hours=48)
    assert sessions.expiry(soon.timestamp(), NOW, 12) == soon
    assert sessions.expiry(late.timestamp(), NOW, 12) == NOW + timedelta(hours=12)
    assert sessions.expiry(None, NOW, 12) == NOW + timedelta(hours=12)
    assert sessions.expiry(soon.timestamp(), NOW, 12).tzinfo is not None


@pytest.mark.parametrize("scheme, forwarded, setting, secure", [
    ("http", None, "true", True), ("http", "http", "1", True), ("https", None, "false", False),
    ("https", "https", "no", False), ("http", None, "TRUE", True),
    ("https", None, "auto", True), ("http", "https", "auto", True), ("http", "https, http", "auto", True),
    ("http", " HTTPS ", "auto", True), ("http", "http", "auto", False), ("http", None, "auto", False),
    ("http", "http, https", "auto", False), ("http", "", "auto", False)])
def test_the_cookie_is_secure_when_set_so_or_when_the_request_came_over_tls(scheme, forwarded, setting, secure):
    assert sessions.over_tls(scheme, forwarded, setting) is secure


def test_the_session_cookie_is_httponly_strict_and_for_the_whole_console():
    options = sessions.cookie_options(True, 3600)
    assert options == {"max_age": 3600, "httponly": True, "secure": True, "samesite": "Strict", "path": "/"}
    assert sessions.cookie_options(False, None)["secure"] is False


# --- what the pages say ----------------------------------------------------------------------------

def keys_in_templates() -> set[str]:
    """Every literal key of t("…") or t('…') in the templates."""
    found = set()
    for page in TEMPLATES.glob("*.html"):
        for double, single in re.findall(r"""\bt\(\s*(?:"([^"]+)"|'([^']+)')""", page.read_text(encoding="utf-8")):
            found.add(double or single)
    return found


def test_every_text_a_template_asks_for_exists():
    used = keys_in_templates()
    assert {"app", "queue", "waiting", "in_hand", "place_it", "task_done"} <= used  # the scan finds them
    assert sorted(used - set(texts.TEXTS)) == []


def test_every_text_the_pages_name_at_run_time_exists():
    # ticket.html: t("place_it" if action == "place" else action); error.html t(title); signin.html t(notice)
    asked = {"place_it" if action == "place" else action for action in views.ACTIONS}
    asked |= {"forbidden", "not_found", "error", "signed_out", "csrf", "bad_token", "not_staff", "done"}
    asked |= set(texts.DONE.values())
    assert sorted(asked - set(texts.TEXTS)) == []
    assert set(texts.DONE) == set(views.ACTIONS) | {"task"}


def test_the_texts_methods_the_templates_call_exist():
    used = set()
    for page in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"\bt\.([a-z_]+)\(", page.read_text(encoding="utf-8")))
    assert used and all(callable(getattr(Texts("en"), name, None)) for name in used), used


def test_every_text_is_there_in_both_languages():
    for table in (texts.TEXTS, texts.STATES, texts.CHANNELS, texts.ROLES, texts.TASK_KINDS, texts.OUTCOMES):
        for key, pair in table.items():
            assert len(pair) == len(texts.LANGUAGES) and all(s.strip() for s in pair), key
    assert all(zh.strip() and en.strip() for zh, en in texts.CALL_REASONS)


def test_every_state_of_a_ticket_has_a_name():
    assert set(texts.STATES) == set(lifecycle.ALLOWED)


def test_every_role_channel_call_and_outcome_has_a_name():
    from services.common.staff import ROLES
    assert set(ROLES) <= set(texts.ROLES)
    assert set(INTAKE_CHANNELS) <= set(texts.CHANNELS)
    assert set(supervision.CALL_OUTCOMES) <= set(texts.TASK_KINDS)
    assert {o for outcomes in supervision.CALL_OUTCOMES.values() for o in outcomes} <= set(texts.OUTCOMES)


def test_the_console_speaks_chinese_or_english():
    zh, en = Texts("zh-CN"), Texts("en")
    assert (zh.lang, en.lang) == ("zh-CN", "en")
    assert (zh("queue"), en("queue")) == ("工作队列", "Work queue")
    assert (zh.state("offered"), en.state("offered")) == ("待签收", "offered")
    assert (zh.channel("hotline"), en.channel("hotline")) == ("12345 热线", "hotline")
    assert (zh.role("grid_worker"), en.role("grid_worker")) == ("网格员", "grid worker")
    assert (zh.task_kind("follow_up"), en.task_kind("follow_up")) == ("回访", "follow-up call")
    assert (zh.outcome("satisfied"), en.outcome("satisfied")) == ("满意", "satisfied")


def test_an_unknown_language_is_chinese():
    for lang in (None, "", "fr", "EN", "zh", "en-US"):
        assert Texts(lang).lang == "zh-CN" and Texts(lang)("queue") == "工作队列"
        assert texts.language(lang) == "zh-CN"


def test_something_without_a_name_is_shown_as_it_is():
    assert Texts("en").state("teleported") == "teleported"
    assert Texts("zh-CN").channel(None) == ""
    with pytest.raises(KeyError):
        Texts("en")("no_such_text")


def test_the_reason_for_a_call_is_sent_in_chinese_in_both_languages():
    zh, en = Texts("zh-CN").reasons(), Texts("en").reasons()
    assert [value for value, _ in zh] == [value for value, _ in en] == ["回访", "上门", "核实诉求"]
    assert [label for _, label in zh] == ["回访", "上门", "核实诉求"]
    assert [label for _, label in en] == ["follow-up", "visit", "confirm the need"]


# --- what a console binds for the pages open ----------------------------------------------------------------

ALL_KEYS = (GRID_KEY, NEIGHBOUR_KEY, PROXY_KEY, DESK_KEY, UNPLACED_KEY, OTHER_TOWN_KEY, OTHER_COUNTY_KEY, CIVIL_DESK,
            HEALTH_DESK, CIVIL_ELSEWHERE)
PEOPLE = (who("grid_worker", GRID), who("village_cadre", VILLAGE), who("town_dispatcher", TOWN),
          who("county_dispatcher", COUNTY), who("supervisor", CITY), who("department_staff", COUNTY, department="civil"),
          who("admin", "341324"))


def topic_matches(binding: str, key: str) -> bool:
    """RabbitMQ's topic match: '*' one word, '#' zero or more."""
    pattern = r"\.".join({"*": r"[^.]+", "#": r".*"}.get(w, re.escape(w)) for w in binding.split("."))
    return re.fullmatch(pattern.replace(r"\..*", r"(\..*)?"), key) is not None


@pytest.mark.parametrize("console_area", [CITY, COUNTY, TOWN])
def test_a_page_is_followed_by_keys_the_consoles_login_may_bind_and_that_carry_all_it_may_see(console_area):
    allowed = broker.console_rights(tuple(feed.area_path(console_area)))["topics"]["dispatch.work"]["read"]
    for person in PEOPLE:
        keys = feed.keys_for(person, console_area)
        for key in keys:
            assert re.fullmatch(allowed, key), (console_area, person.role, key)
        for work in ALL_KEYS:
            if feed.visible(person, work) and any(topic_matches(b, work) for b in feed.work_keys(console_area)):
                assert any(topic_matches(b, work) for b in keys), (console_area, person.role, work, keys)


def test_a_page_binds_its_own_area_not_the_consoles():
    assert feed.keys_for(who("grid_worker", GRID), CITY) == {f"{GRID_KEY}.#"}
    assert feed.keys_for(who("village_cadre", VILLAGE), CITY) == {f"area.{CITY}.{COUNTY}.{TOWN}.{VILLAGE}.#"}
    assert feed.keys_for(who("county_dispatcher", COUNTY), CITY) == {f"area.{CITY}.{COUNTY}.#", f"dept.*.{COUNTY}"}
    assert feed.keys_for(who("department_staff", COUNTY, department="civil"), CITY) == {CIVIL_DESK}
    assert feed.keys_for(who("supervisor", CITY), COUNTY) == set(feed.work_keys(COUNTY))  # all the console follows
    assert feed.keys_for(who("grid_worker", GRID), "341324") == set()  # another county's console: nothing
    assert feed.keys_for(who("department_staff", COUNTY, department="civil"), TOWN) == set()  # no desks in a town


def test_the_topic_matcher_of_these_tests_is_rabbitmqs():
    assert topic_matches(f"{GRID_KEY}.#", GRID_KEY) and not topic_matches(f"{GRID_KEY}.#", NEIGHBOUR_KEY)
    assert topic_matches("dept.*.341323", CIVIL_DESK) and not topic_matches("dept.*.341323", CIVIL_ELSEWHERE)
    assert topic_matches("dept.#", CIVIL_ELSEWHERE) and not topic_matches("area.3413.341323.#", OTHER_COUNTY_KEY)


def test_a_page_opened_looks_again_once_its_keys_are_bound():
    hub = feed.Hub()
    page, inbox = hub.open(who("grid_worker", GRID))
    assert inbox.qsize() == 0 and hub.unbound == {page}
    hub.bound()
    assert inbox.get_nowait()["event"] == "following" and hub.unbound == set()
    hub.bound()
    assert inbox.qsize() == 0  # once


def test_the_supervisors_page_also_shows_the_level_below():
    assert views.finer(None, CITY) == "town"  # the city's default is county: and its towns
    assert views.finer(None, COUNTY) == "village"  # a county's towns, and its villages
    assert views.finer("town", CITY) == "village" and views.finer("village", COUNTY) == "grid"
    assert views.finer("grid", COUNTY) == "grid"  # nothing finer: the same table is shown once
    assert views.finer("worker", COUNTY) == "worker" and views.finer("day", COUNTY) == "day"


def test_the_queue_lists_a_call_to_make_with_the_time_left_before_any_script_runs():
    from datetime import datetime, timezone

    from services.console.service import render
    now = datetime(2026, 12, 2, 0, 55, tzinfo=timezone.utc)
    task = {"ticket_id": "SDJ-1", "kind": "callback", "assignee_name": "刘磊", "assignee_id": WORKER,
            "due_at": "2026-12-02T01:00:00", "overdue": False}  # naive, as SQLite hands it back: UTC
    html = render("queue_sections.html", t=Texts("zh-CN"), waiting=[], in_hand=[], tasks=[task], now=now, names={},
                  countdown=views.countdown)
    assert 'id="calls"' in html and "10 秒回拨" in html and "刘磊" in html
    assert 'datetime="2026-12-02T01:00:00+00:00"' in html and "剩余 0:05:00" in html
    assert html.count('<p class="empty">') == 2  # nothing waiting, nothing in hand
