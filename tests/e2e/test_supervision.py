"""Supervision across the four service processes: a ticket nobody accepts climbs to the county centre,
a returned ticket is reassigned and closed, an unanswered survey becomes a 回访 call that closes it,
and a proxy item goes to its department and back. Deadlines are scaled (SLA_SCALE) to seconds."""
from __future__ import annotations

import re

import pytest
import requests

from services.intake.client import IntakeClient
from tests.waiting import wait_until

from .requests_helpers import case_in, submission
from .test_closed_loop import REMINDER, SUPERVISOR, answer, mails_about

VILLAGE, TOWN, COUNTY = "341323104214", "341323104", "341323"


def submit(running_stack, index: int, **overrides) -> str:
    stack, sink = running_stack.stack, running_stack.sink
    channel = overrides.pop("channel", "wechat")
    with IntakeClient(stack.uri("publisher-channels"), source="e2e-supervision") as client:
        client.submit(channel, submission(index, channel=channel, **overrides))
    email = f"resident{index:06d}@village.example.cn"
    ack = wait_until(lambda: [m for m in sink.messages if "已受理" in str(m["Subject"]) and m["To"] == email],
                     timeout=30, message="the acknowledgement")
    return re.search(r"SDJ-\d{6}-[0-9A-Z]{8}", str(ack[0]["Subject"])).group(0)


def history(dispatch, ticket_no, signed_in) -> list[str]:
    return [h["event"] for h in requests.get(f"{dispatch}/tickets/{ticket_no}", headers=signed_in).json()["history"]]


@pytest.mark.sla(dispatch=0.0005)  # 10 minutes to accept: 0.3 s; the village 0.9 s, the town 1.8 s
def test_a_ticket_nobody_accepts_climbs_to_the_county_centre(running_stack):
    stack, sink = running_stack.stack, running_stack.sink
    dispatch, supervisor = stack.http("dispatch"), running_stack.token(*SUPERVISOR)
    ticket_no = submit(running_stack, 11, category="801")

    case = wait_until(lambda: (c := case_in(dispatch, ticket_no, "offered", supervisor)) and c["level"] == 3 and c,
                      timeout=60, message="the offer at the county centre")
    assert case["assignee_id"] == f"centre-{COUNTY}"
    events = history(dispatch, ticket_no, supervisor)
    assert events.count("ticket_overdue") == 3 and events.count("ticket_escalated") == 3  # all on the record
    # the resident hears it is being supervised (已督办)
    wait_until(lambda: mails_about(sink, ticket_no, "督办"), timeout=30, message="the 已督办 mail")
    # the county centre's dispatcher takes it; one of another county cannot
    elsewhere = running_stack.token("d-341321", "county_dispatcher", "341321")
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/accept", headers=elsewhere).status_code == 403
    centre = running_stack.token("d-341323", "county_dispatcher", COUNTY)
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/accept", headers=centre).status_code == 200


def test_a_returned_ticket_is_reassigned_and_closed(running_stack):
    stack, sink = running_stack.stack, running_stack.sink
    dispatch, supervisor = stack.http("dispatch"), running_stack.token(*SUPERVISOR)
    ticket_no = submit(running_stack, 12, category="633")  # a street light: no volunteer
    case = wait_until(lambda: case_in(dispatch, ticket_no, "offered", supervisor), message="offered")
    worker = running_stack.token(case["assignee_id"], "grid_worker", case["grid_code"])
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/accept", headers=worker).status_code == 200
    r = requests.post(f"{dispatch}/tickets/{ticket_no}/return", json={"reason": "路灯归供电所，非本网格"},
                      headers=worker)
    assert (r.status_code, r.json()["state"], r.json()["assignee_id"]) == (200, "returned", f"town-{TOWN}")
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/return", json={}, headers=worker).status_code in (400, 403)

    town = running_stack.token("d-town", "town_dispatcher", TOWN)
    other_grid = f"{VILLAGE}-G01" if not case["grid_code"].endswith("G01") else f"{VILLAGE}-G02"
    r = requests.post(f"{dispatch}/tickets/{ticket_no}/reassign", json={"grid_code": other_grid, "reason": "改派"},
                      headers=town)
    assert (r.status_code, r.json()["grid_code"]) == (200, other_grid), r.text
    case = r.json()
    second = running_stack.token(case["assignee_id"], "grid_worker", other_grid)
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/accept", headers=second).status_code == 200
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/resolve", json={"note": "已修复"},
                         headers=second).status_code == 200
    survey = wait_until(lambda: mails_about(sink, ticket_no, "请您评价"), timeout=30, message="the survey")[0]
    assert answer(stack, survey, "1", "修好了").status_code == 200
    closed = wait_until(lambda: case_in(dispatch, ticket_no, "closed", supervisor), message="closed")
    assert closed["return_count"] == 1


def test_an_unanswered_survey_becomes_a_call_task_and_is_closed_by_it(running_stack):
    stack, sink = running_stack.stack, running_stack.sink
    dispatch, supervisor = stack.http("dispatch"), running_stack.token(*SUPERVISOR)
    ticket_no = submit(running_stack, 13, category="633")
    case = wait_until(lambda: case_in(dispatch, ticket_no, "offered", supervisor), message="offered")
    worker = running_stack.token(case["assignee_id"], "grid_worker", case["grid_code"])
    requests.post(f"{dispatch}/tickets/{ticket_no}/accept", headers=worker)
    requests.post(f"{dispatch}/tickets/{ticket_no}/resolve", json={"note": "已修复"}, headers=worker)

    # the resident answers neither the survey nor its reminder: the village's duty cadre is given the call
    village = running_stack.token("d-town", "town_dispatcher", TOWN)
    task = wait_until(lambda: [t for t in requests.get(f"{dispatch}/tasks", params={"area": VILLAGE},
                                                       headers=village).json()
                               if t["ticket_id"] == ticket_no and t["kind"] == "follow_up"],
                      timeout=60, message="the 回访 call task")[0]
    assert mails_about(sink, ticket_no, "请您评价") and mails_about(sink, ticket_no, REMINDER)  # asked twice first
    cadre = running_stack.token(task["assignee_id"], "village_cadre", VILLAGE)
    mine = requests.get(f"{dispatch}/tasks", headers=cadre).json()
    assert task["task_id"] in [t["task_id"] for t in mine]
    r = requests.post(f"{dispatch}/tasks/{task['task_id']}/done", json={"outcome": "satisfied",
                                                                        "note": "电话回访，居民满意"}, headers=cadre)
    assert r.status_code == 200, r.text
    closed = wait_until(lambda: case_in(dispatch, ticket_no, "closed", supervisor), message="closed by the call")
    assert "task_done" in history(dispatch, ticket_no, supervisor)
    assert closed["state"] == "closed"


def test_a_proxy_item_goes_to_a_department_and_back(running_stack):
    stack, sink = running_stack.stack, running_stack.sink
    dispatch, supervisor = stack.http("dispatch"), running_stack.token(*SUPERVISOR)
    ticket_no = submit(running_stack, 14, category="101")  # 城乡居民养老保险参保登记: 代办, decided by hrss
    case = wait_until(lambda: case_in(dispatch, ticket_no, "offered", supervisor), message="offered")
    assert (case["handling"], case["assignee_id"]) == ("proxy", f"P-{VILLAGE}")
    clerk = running_stack.token(case["assignee_id"], "village_cadre", VILLAGE)
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/accept", headers=clerk).status_code == 200
    r = requests.post(f"{dispatch}/tickets/{ticket_no}/file", json={"note": "材料齐全，报县人社局"}, headers=clerk)
    assert (r.status_code, r.json()["state"]) == (200, "filed")

    hrss = {"Authorization": f"Bearer {stack.secrets.token('hrss-1', 'department_staff', COUNTY, department='hrss')}"}
    civil = {"Authorization": f"Bearer {stack.secrets.token('civil-1', 'department_staff', COUNTY, department='civil')}"}
    queue = requests.get(f"{dispatch}/queues/{COUNTY}", params={"state": "filed"}, headers=hrss).json()
    assert ticket_no in [c["ticket_id"] for c in queue]
    decision = {"approved": True, "decision": "符合条件，准予参保登记"}
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/decide", json=decision, headers=civil).status_code == 403
    r = requests.post(f"{dispatch}/tickets/{ticket_no}/decide", json=decision, headers=hrss)
    assert (r.status_code, r.json()["state"]) == (200, "in_progress"), r.text
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/resolve", json={"note": "已告知参保结果"},
                         headers=clerk).status_code == 200
    survey = wait_until(lambda: mails_about(sink, ticket_no, "请您评价"), timeout=30, message="the survey")[0]
    assert answer(stack, survey, "1").status_code == 200
    wait_until(lambda: case_in(dispatch, ticket_no, "closed", supervisor), message="closed")
    events = history(dispatch, ticket_no, supervisor)
    assert events.index("ticket_filed") < events.index("ticket_decided") < events.index("ticket_resolved")
