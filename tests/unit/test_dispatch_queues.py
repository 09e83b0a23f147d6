"""A queue's query (states, `open`, overdue, escalated), what is overdue now for one case, and a case as staff
see it: names of its village and town, its address, whether it is overdue."""
from __future__ import annotations

from datetime import timedelta

import pytest
from marshmallow import ValidationError

from services.dispatch import lifecycle
from services.dispatch.areas import AreaMap
from services.dispatch.ledger import DEADLINE_OF_STATE, is_overdue
from services.dispatch.schemas import CaseView, QueueQuery
from services.dispatch.service import case_view
from tests.unit.test_dispatch_lifecycle import NOW, FakeCase, offered_case

AREAS = AreaMap.load()
MICROSECOND = timedelta(microseconds=1)


def test_a_queue_lists_offered_cases_by_default_with_no_other_filter():
    assert QueueQuery().load({}) == {"state": "offered", "states": ["offered"], "overdue": False, "missed": False,
                                     "escalated": False}


@pytest.mark.parametrize("state, states", [
    ("returned", ["returned"]),
    ("offered,returned", ["offered", "returned"]),
    (" accepted , in_progress,accepted", ["accepted", "in_progress"]),  # spaces and repeats do not matter
    ("open", sorted(lifecycle.OPEN_STATES)),
    ("open,closed", sorted(set(lifecycle.OPEN_STATES) | {"closed"})),
])
def test_a_queue_s_state_is_a_list_of_states_or_open(state, states):
    assert QueueQuery().load({"state": state})["states"] == states


def test_open_is_every_state_but_closed_and_cancelled():
    states = QueueQuery().load({"state": "open"})["states"]
    assert set(states) == set(lifecycle.ALLOWED) - {"closed", "cancelled"}
    assert {"offered", "returned", "accepted", "in_progress", "filed", "resolved", "followed_up"} <= set(states)


@pytest.mark.parametrize("query, field, says", [
    ({"state": "offerd"}, "state", "'offerd'"),
    ({"state": "offered,nope"}, "state", "'nope'"),
    ({"state": ""}, "state", "not a state"),
    ({"state": "offered,"}, "state", "not a state"),
    ({"overdue": "maybe"}, "overdue", "boolean"),
    ({"escalated": "2"}, "escalated", "boolean"),
])
def test_a_bad_queue_query_names_its_field(query, field, says):
    with pytest.raises(ValidationError) as refused:
        QueueQuery().load(query)
    assert list(refused.value.messages) == [field] and says in str(refused.value.messages[field])


def test_overdue_and_escalated_are_booleans():
    q = QueueQuery().load({"overdue": "true", "escalated": "1"})
    assert (q["overdue"], q["escalated"]) == (True, True)
    assert QueueQuery().load({"overdue": "false"})["overdue"] is False


@pytest.mark.parametrize("state, column, due, overdue", [
    ("offered", "accept_due_at", -MICROSECOND, True),
    ("offered", "accept_due_at", timedelta(0), False),  # on the deadline: not yet
    ("offered", "resolve_due_at", -timedelta(days=1), False),  # not the deadline of its step
    ("returned", "accept_due_at", -timedelta(minutes=1), True),  # the desk's time to reassign
    ("accepted", "resolve_due_at", -MICROSECOND, True),
    ("accepted", "accept_due_at", -timedelta(days=1), False),  # accepted late: that step is over
    ("in_progress", "resolve_due_at", timedelta(minutes=1), False),
    ("in_progress", "resolve_due_at", -timedelta(minutes=1), True),
    ("filed", "decision_due_at", -timedelta(minutes=1), True),
    ("filed", "resolve_due_at", -timedelta(minutes=1), False),  # the department's time does not count
    ("resolved", "resolve_due_at", -timedelta(days=1), False),
    ("followed_up", "resolve_due_at", -timedelta(days=1), False),
    ("closed", "accept_due_at", -timedelta(days=1), False),
    ("cancelled", "accept_due_at", -timedelta(days=1), False),
    ("escalated", "accept_due_at", -timedelta(days=1), False),  # for an instant: routed on at once
    ("offered", None, None, False),  # no deadline at all
])
def test_overdue_now_is_the_deadline_of_the_step_a_case_is_at(state, column, due, overdue):
    case = FakeCase(state=state)
    if column:
        setattr(case, column, NOW + due)
    assert is_overdue(case, NOW) is overdue


def test_every_state_with_a_deadline_names_a_deadline_of_a_case():
    assert set(DEADLINE_OF_STATE) < set(lifecycle.OPEN_STATES)
    assert {column for column in DEADLINE_OF_STATE.values()} <= set(vars(FakeCase()))


def test_a_case_view_names_its_village_and_town_and_says_whether_it_is_overdue():
    case = offered_case()
    view = case_view(case, AREAS, NOW)
    assert CaseView().validate(view) == {}
    assert (view["village_name"], view["town_name"], view["address"]) == ("杨东村委会", "杨疃镇", "杨东村三组")
    assert view["received_at"] == NOW.isoformat() and view["overdue"] is False
    assert case_view(case, AREAS, case.accept_due_at + MICROSECOND)["overdue"] is True


@pytest.mark.parametrize("village", [None, "341323104999"], ids=["unplaced", "unknown"])
def test_a_case_without_a_known_village_has_no_names(village):
    view = case_view(FakeCase(state="offered", village_code=village), AREAS, NOW)
    assert (view["village_name"], view["town_name"]) == (None, None if village is None else "杨疃镇")
    assert CaseView().validate(view) == {}
