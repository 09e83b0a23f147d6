"""A message notify could deliver on none of its channels (`notification_failed`) becomes a `reach` task in
dispatch: a person phones the resident. Driven without a broker (tests/service_layer.py)."""
from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from werkzeug.test import EnvironBuilder

from services.common.clock import ManualClock
from services.common.staff import Principal
from services.dispatch.areas import AreaMap
from services.dispatch.models import Case, HistoryEntry, Task
from services.dispatch.roster import village_duty
from services.dispatch.service import DispatchService
from services.dispatch.supervision import Policy
from services.intake.events import EXAMPLES as INTAKE
from services.notify.events import EXAMPLES as NOTIFY
from tests.service_layer import Staff, Worker

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)
TICKET, VILLAGE = "SDJ-261127-REACH001", "341323104214"
POLICY = Policy()


@pytest.fixture
def dispatch(tmp_path):
    w = Worker(DispatchService, tmp_path, clock=ManualClock(T0), areas=AreaMap.load(), policy=POLICY, staff=Staff())
    env = copy.deepcopy(INTAKE["ticket_received"])
    env["event_id"], env["ticket_id"], env["correlation_id"] = str(uuid.uuid4()), TICKET, TICKET
    env["data"]["channel"] = "wechat"  # no callback task of its own
    w.call("open_case", [env])
    return w


def failed(message_id: str | None = "ev-1.ack", template: str = "ack", **data) -> dict:
    env = copy.deepcopy(NOTIFY["notification_failed"])
    env.update(event_id=str(uuid.uuid4()), ticket_id=TICKET, correlation_id=TICKET)
    env["data"].update(template=template, message_id=message_id, **data)
    if message_id is None:
        del env["data"]["message_id"]
    return env


def tasks(w) -> list[Task]:
    with w.db.transaction() as s:
        return list(s.scalars(select(Task).order_by(Task.id)))


def case(w) -> Case:
    with w.db.transaction() as s:
        return s.get(Case, TICKET)


def history(w, event: str) -> list[HistoryEntry]:
    with w.db.transaction() as s:
        return list(s.scalars(select(HistoryEntry).where(HistoryEntry.event == event).order_by(HistoryEntry.id)))


def http(w, method_name, who, body=None, **kwargs):
    w.deps["staff"].who = who
    request = EnvironBuilder(method="POST" if body is not None else "GET", json=body).get_request()
    status, _headers, body = getattr(w.service(method_name), method_name)(request, **kwargs)
    return status, json.loads(body)


def holder(c: Case) -> Principal:
    return Principal(c.assignee_id, "grid_worker", c.grid_code)


def test_a_message_that_reached_nobody_becomes_a_call_for_whoever_has_the_case(dispatch):
    dispatch.call("reach_unnotified", failed())
    c = case(dispatch)
    [task] = tasks(dispatch)
    assert (task.kind, task.assignee_id, task.level, task.about) == ("reach", c.assignee_id, 0, "ev-1.ack")
    assert task.due_at.replace(tzinfo=timezone.utc) == T0 + timedelta(minutes=POLICY.callback_minutes)
    [assigned] = [e for _, e in dispatch.sent("task_assigned")]
    assert (assigned["data"]["kind"], assigned["data"]["work_key"]) == ("reach", c.work_key)
    [noted] = history(dispatch, "notification_failed")
    assert json.loads(noted.data)["channels_tried"] == ["email", "sms"] and noted.note.startswith("ack: ")
    assert history(dispatch, "task_assigned")  # on the ticket's record, as every call task
    assert case(dispatch).state == c.state  # a call to make, nothing else changes

    status, body = http(dispatch, "task_done", holder(c), {"outcome": "satisfied"}, task_id=task.id)
    assert status == 400  # not an outcome of this kind of call
    status, body = http(dispatch, "task_done", holder(c), {"outcome": "reached", "note": "已电话告知受理"},
                        task_id=task.id)
    assert (status, body["outcome"], body["kind"]) == (200, "reached", "reach")
    assert case(dispatch).state == c.state


def test_one_task_per_failed_message_however_often_it_is_reported(dispatch):
    event = failed()
    dispatch.call("reach_unnotified", event)
    dispatch.call("reach_unnotified", event)  # redelivered: the inbox
    dispatch.call("reach_unnotified", failed())  # the same message in another event
    assert [t.about for t in tasks(dispatch)] == ["ev-1.ack"]
    assert len(history(dispatch, "notification_failed")) == 1


def test_while_a_call_is_open_another_failed_message_is_only_noted(dispatch):
    dispatch.call("reach_unnotified", failed("ev-1.ack"))
    dispatch.call("reach_unnotified", failed("ev-2.escalated", template="escalated"))
    assert len(tasks(dispatch)) == 1 and len(history(dispatch, "notification_failed")) == 2
    first = tasks(dispatch)[0]
    assert http(dispatch, "task_done", holder(case(dispatch)), {"outcome": "unreached"}, task_id=first.id)[0] == 200
    dispatch.call("reach_unnotified", failed("ev-3.closed", template="closed"))
    assert [(t.about, t.done_at is None) for t in tasks(dispatch)] == [("ev-1.ack", False), ("ev-3.closed", True)]


def test_staff_and_a_repeat_reports_resident_get_no_call_only_a_note(dispatch):
    dispatch.call("reach_unnotified", failed("ev-4.staff_escalated", template="staff_escalated", recipient="staff"))
    dispatch.call("reach_unnotified", failed("ev-5.merged", template="merged", recipient="reporter"))
    assert tasks(dispatch) == []
    assert [json.loads(h.data)["recipient"] for h in history(dispatch, "notification_failed")] == ["staff", "reporter"]


def test_an_older_notify_without_the_new_fields_still_gets_its_call(dispatch):
    old = failed(None)
    for key in ("channels_tried", "recipient"):
        del old["data"][key]
    dispatch.call("reach_unnotified", old)
    [task] = tasks(dispatch)
    assert (task.kind, task.about) == ("reach", old["event_id"])
    staff = failed(None, template="staff_escalated")
    del staff["data"]["recipient"]
    dispatch.call("reach_unnotified", staff)
    assert len(tasks(dispatch)) == 1


def test_once_nobody_has_the_case_the_village_cadre_calls_and_a_call_not_made_moves_up(dispatch):
    c = case(dispatch)
    worker = holder(c)
    assert http(dispatch, "accept", worker, ticket_id=TICKET)[0] == 200
    assert http(dispatch, "resolve", worker, {"note": "done"}, ticket_id=TICKET)[0] == 200
    dispatch.call("reach_unnotified", failed("ev-6.survey", template="survey"))
    [task] = tasks(dispatch)
    assert (task.assignee_id, task.level) == (village_duty(VILLAGE, dispatch.clock.now()).id, 1)
    dispatch.clock.advance(minutes=POLICY.callback_minutes + 1)
    dispatch.call("watch_deadlines")
    [task] = tasks(dispatch)
    assert (task.overdue, task.level) == (True, 2)
