"""outreach's pure rules: when visits fall (China calendar days), who answers for them, what a miss does."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from services.common.clock import Clock
from services.common.staff import Forbidden, Principal
from services.outreach import access, schedules, visits
from services.outreach.schedules import BadPlan, Plan

UTC = timezone.utc
VILLAGE, GRID, OTHER_GRID = "341323104214", "341323104214-G10", "341323104214-G11"
SPAN = Clock(1).span  # unscaled minutes
LADDER = visits.Ladder(grid_worker=240, village=1440)


def household(**changes):
    base = dict(id="HH00000001", village_code=VILLAGE, grid_code=GRID, head_id="H0000001",
                grid_worker_id=f"W-{GRID}-1")
    return SimpleNamespace(**{**base, **changes})


def visit_for(home, due: datetime, day=date(2026, 12, 2), kind="phone") -> SimpleNamespace:
    plan = SimpleNamespace(id=7, kind=kind)
    return SimpleNamespace(id="V20261202-00000007", missed=False, done_at=None, done_by=None, contact_made=None,
                           on_time=None, **visits.new_visit(home, plan, day, due))


# --- the calendar: China days, whatever the server's zone -----------------------------------------

def test_a_china_day_begins_at_1600_utc():
    assert schedules.local_day(datetime(2026, 12, 1, 15, 59, 59, tzinfo=UTC)) == date(2026, 12, 1)
    assert schedules.local_day(datetime(2026, 12, 1, 16, 0, tzinfo=UTC)) == date(2026, 12, 2)
    assert schedules.day_begins(date(2026, 12, 2)) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


def test_a_daily_visit_across_midnight_china_time():
    """A daily call due by 10:00: at 23:59 China time (15:59 UTC) it is still the 1st's; at 00:00 (16:00 UTC,
    still the 1st in UTC) the 2nd's visit falls, due at 10:00 China time, 02:00 UTC on the 2nd."""
    daily = Plan("phone", 1, 600, date(2026, 12, 1)).check()
    before, after = datetime(2026, 12, 1, 15, 59, tzinfo=UTC), datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert schedules.local_day(before) == date(2026, 12, 1) and schedules.local_day(after) == date(2026, 12, 2)
    assert after.date() == date(2026, 12, 1)  # the UTC date has not moved: the visit's day has
    assert schedules.falls_on(daily, date(2026, 12, 1)) and schedules.falls_on(daily, date(2026, 12, 2))
    assert schedules.due_at(daily, date(2026, 12, 2), after, SPAN) == datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def test_an_evening_visit_runs_past_midnight_and_stays_the_day_it_began():
    """due_minutes past 1,440: a visit of the 1st's evening, done by 02:00 China time on the 2nd."""
    evening = Plan("door", 1, 26 * 60, date(2026, 12, 1)).check()
    opened = schedules.day_begins(date(2026, 12, 1))
    due = schedules.due_at(evening, date(2026, 12, 1), opened, SPAN)
    assert due == datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    assert schedules.local_day(due) == date(2026, 12, 2)


def test_a_day_opened_late_still_gives_the_whole_window_and_a_scaled_one_runs_from_its_opening():
    daily = Plan("phone", 1, 600, date(2026, 12, 1))
    late = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)  # 09:00 China time: the service was down at midnight
    assert schedules.due_at(daily, date(2026, 12, 2), late, SPAN) == late + timedelta(minutes=600)
    demo = Clock(0.001)
    assert schedules.due_at(daily, date(2026, 12, 2), late, demo.span) == late + timedelta(seconds=36)


def test_weekly_and_monthly_plans_fall_on_their_days_from_their_start():
    weekly = Plan("door", 7, 600, date(2026, 12, 2)).check()
    falls = [d for d in (date(2026, 12, 2) + timedelta(days=n) for n in range(-3, 16)) if schedules.falls_on(weekly, d)]
    assert falls == [date(2026, 12, 2), date(2026, 12, 9), date(2026, 12, 16)]
    assert schedules.next_visit_day(weekly, date(2026, 12, 2)) == date(2026, 12, 9)
    assert schedules.next_visit_day(weekly, date(2026, 11, 1)) == date(2026, 12, 2)
    monthly = Plan("door", 30, 600, date(2026, 12, 1))
    assert schedules.next_visit_day(monthly, date(2026, 12, 15)) == date(2026, 12, 31)


@pytest.mark.parametrize("plan, field", [
    (Plan("email", 1, 600, date(2026, 12, 1)), "kind"),
    (Plan("phone", 3, 600, date(2026, 12, 1)), "every_days"),
    (Plan("phone", 1, 0, date(2026, 12, 1)), "due_minutes"),
    (Plan("phone", 1, 3000, date(2026, 12, 1)), "due_minutes"),
])
def test_a_plan_that_cannot_be_kept_names_its_field(plan, field):
    with pytest.raises(BadPlan) as refused:
        plan.check()
    assert refused.value.field == field and str(refused.value).startswith(f"{field}: ")


# --- who answers, and what a miss does -------------------------------------------------------------

def test_a_visit_goes_to_the_head_or_without_one_to_the_grid_worker():
    due = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    with_head = visit_for(household(), due)
    assert (with_head.level, with_head.responsible_id, with_head.state) == (visits.HEAD, "H0000001", "due")
    without = visit_for(household(head_id=None), due)
    assert (without.level, without.responsible_id) == (visits.GRID_WORKER, f"W-{GRID}-1")


def test_a_missed_visit_climbs_head_grid_worker_village_then_stays_at_the_village():
    home, due = household(), datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    visit = visit_for(home, due)
    assert visits.escalate(visit, home, due - timedelta(seconds=1), LADDER, SPAN) == []  # not yet

    [first] = visits.escalate(visit, home, due, LADDER, SPAN)
    assert (visit.level, visit.responsible_id, visit.missed) == (visits.GRID_WORKER, f"W-{GRID}-1", True)
    assert visit.due_at == due + timedelta(minutes=240)
    assert (first.name, first.data["from_level"], first.data["level"]) == ("visit_escalated", "household_head",
                                                                           "grid_worker")
    [second] = visits.escalate(visit, home, visit.due_at, LADDER, SPAN)
    assert (visit.level, visit.responsible_id) == (visits.VILLAGE, VILLAGE)
    assert visit.due_at == due + timedelta(minutes=240 + 1440)
    [last] = visits.escalate(visit, home, visit.due_at, LADDER, SPAN)
    assert (visit.level, visit.due_at, last.data["due_at"]) == (visits.VILLAGE, None, None)
    assert visits.escalate(visit, home, visit.first_due_at + timedelta(days=30), LADDER, SPAN) == []


def test_on_time_is_by_the_first_deadline_whoever_did_it():
    home, due = household(), datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    early = visit_for(home, due)
    [recorded] = visits.record(early, "H0000001", True, 2, due)
    assert (early.state, early.on_time, early.due_at) == ("done", True, None)
    assert recorded.data["needs_found"] == 2 and recorded.data["on_time"] is True
    late = visit_for(home, due)
    visits.escalate(late, home, due, LADDER, SPAN)
    visits.record(late, f"W-{GRID}-1", False, 0, due + timedelta(minutes=5))
    assert (late.state, late.on_time, late.contact_made, late.done_by) == ("done", False, False, f"W-{GRID}-1")
    with pytest.raises(visits.VisitClosed, match="cannot be recorded again"):
        visits.record(late, "H0000001", True, 0, due)


def test_a_household_moving_grid_takes_its_open_visits_to_who_answers_there():
    home, due = household(head_id=None), datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    visit = visit_for(home, due)
    moved = household(head_id=None, grid_code=OTHER_GRID, grid_worker_id=f"W-{OTHER_GRID}-1")
    assert visits.reassign(visit, moved) is True
    assert (visit.grid_code, visit.responsible_id, visit.level, visit.due_at) == (
        OTHER_GRID, f"W-{OTHER_GRID}-1", visits.GRID_WORKER, due)  # the deadline stays
    assert visits.reassign(visit, moved) is False  # nothing more to move


def test_a_head_deactivated_with_visits_pending_hands_them_to_the_grid_worker():
    home, due = household(), datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    pending, done = visit_for(home, due), visit_for(home, due)
    visits.record(done, "H0000001", True, 0, due)
    headless = household(head_id=None)
    assert visits.reassign(pending, headless) and not visits.reassign(done, headless)
    assert (pending.level, pending.responsible_id, pending.due_at) == (visits.GRID_WORKER, f"W-{GRID}-1", due)
    assert (done.responsible_id, done.done_by) == ("H0000001", "H0000001")  # history is not rewritten
    new_head = household(head_id="H0000002")
    visits.reassign(pending, new_head)  # a new head does not take back what already went up a rung
    assert pending.level == visits.GRID_WORKER


def test_a_deactivated_household_s_open_visits_are_cancelled_not_deleted():
    home = household()
    visit = visit_for(home, datetime(2026, 12, 2, 2, 0, tzinfo=UTC))
    assert visits.cancel(visit) and (visit.state, visit.due_at) == ("cancelled", None)
    assert not visits.cancel(visit)


def test_the_ladder_from_config_refuses_unknown_rungs_and_nonsense():
    assert visits.Ladder.from_config({"grid_worker": "60"}).grid_worker == 60
    with pytest.raises(ValueError, match="unknown rungs"):
        visits.Ladder.from_config({"town": 60})
    with pytest.raises(ValueError, match="positive"):
        visits.Ladder.from_config({"village": 0})


# --- who may -------------------------------------------------------------------------------------

def test_who_may_record_a_visit():
    home, due = household(), datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    visit = visit_for(home, due)
    access.may_record(Principal("H0000001", "household_head", VILLAGE), visit)
    access.may_record(Principal(f"W-{GRID}-1", "grid_worker", GRID), visit)  # the rung above may
    access.may_record(Principal("C-1", "village_cadre", VILLAGE), visit)
    for who in (Principal("H0000002", "household_head", VILLAGE), Principal("W-x", "grid_worker", OTHER_GRID),
                Principal("D-1", "town_dispatcher", "341323104"), Principal("V-1", "volunteer", VILLAGE)):
        with pytest.raises(Forbidden):
            access.may_record(who, visit)
    visits.escalate(visit, home, due, LADDER, SPAN)
    with pytest.raises(Forbidden):  # gone up a rung: no longer the head's to record
        access.may_record(Principal("H0000001", "household_head", VILLAGE), visit)


def test_who_may_read_a_household_and_keep_the_register():
    home = household()
    access.may_read_household(Principal("H0000001", "household_head", VILLAGE), home)
    access.may_read_household(Principal("S-1", "supervisor", "341323"), home)
    for who in (Principal("H0000002", "household_head", VILLAGE), Principal("W-x", "grid_worker", OTHER_GRID),
                Principal("V-1", "volunteer", VILLAGE)):
        with pytest.raises(Forbidden):
            access.may_read_household(who, home)
    access.may_keep_heads(Principal("C-1", "village_cadre", VILLAGE), VILLAGE)
    with pytest.raises(Forbidden):
        access.may_keep_heads(Principal(f"W-{GRID}-1", "grid_worker", GRID), VILLAGE)
    access.may_keep_household(Principal(f"W-{GRID}-1", "grid_worker", GRID), GRID)
    with pytest.raises(Forbidden):
        access.may_keep_household(Principal(f"W-{GRID}-1", "grid_worker", GRID), OTHER_GRID)


@pytest.mark.parametrize("name, place, committee", [
    ("杨东村委会", "杨东村", "杨东村村民委员会"), ("城东社区居委会", "城东社区", "城东社区居民委员会"),
    ("虞姬村", "虞姬村", "虞姬村")])
def test_a_village_s_place_and_committee_from_its_division_name(name, place, committee):
    from services.outreach.register import place_and_committee
    assert place_and_committee(name) == (place, committee)
