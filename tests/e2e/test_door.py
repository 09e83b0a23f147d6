"""Going to the door across the service processes: a missed visit climbs head → grid worker → village, and a
need found on a visit becomes a ticket through intake (channel grid_visit) that the loop closes, its
household acknowledged and asked the 回访 like anyone. outreach's deadlines are scaled (SLA_SCALE)."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
import requests

from services.outreach.schedules import local_day
from tests.amqp_helpers import Probe
from tests.waiting import wait_until

from .requests_helpers import case_in
from .test_closed_loop import SUPERVISOR, answer, mails_about

VILLAGE, GRID = "341323104214", "341323104214-G10"
WORKER = f"W-{GRID}-1"
HOUSEHOLD_MAIL = "household-door@village.example.cn"


def register(outreach: str, signed_in: dict, due_minutes: int, head: str | None = None, **extra) -> str:
    r = requests.post(f"{outreach}/households", headers=signed_in, json={
        "village_code": VILLAGE, "grid_code": GRID, "address": "杨东村三组 7 号", "phone": "13912345678",
        "key_groups": ["elderly_alone"], "grid_worker_id": WORKER, "head_id": head, **extra,
        "plans": [{"kind": "phone", "every_days": 1, "due_minutes": due_minutes,
                   "starts_on": local_day(datetime.now(timezone.utc)).isoformat()}]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def visit_of(outreach: str, household: str, signed_in: dict) -> dict:
    def found():
        listed = requests.get(f"{outreach}/visits", params={"state": "all"}, headers=signed_in).json()["visits"]
        return next((v for v in listed if v["household_id"] == household), None)
    return wait_until(found, timeout=20, message=f"the visit of {household}")


@pytest.mark.services("intake", "dispatch", "notify", "outreach")
@pytest.mark.sla(outreach=0.001)  # a minute of outreach's rules is 60 ms
@pytest.mark.service_env(outreach={"OUTREACH_LADDER_GRID_WORKER": "1"})  # the grid worker's rung: 60 ms
def test_a_missed_visit_climbs_to_the_village_and_a_need_found_closes_through_the_loop(running_stack):
    stack, sink = running_stack.stack, running_stack.sink
    outreach, dispatch = stack.http("outreach"), stack.http("dispatch")
    cadre = running_stack.token(f"C-{VILLAGE}-1", "village_cadre", VILLAGE)
    worker = running_stack.token(WORKER, "grid_worker", GRID)
    visits_seen = Probe(stack.uri("monitor"), "outreach.events", passive=True)

    # a head's daily call, due at once (1 minute, 60 ms): missed, to the grid worker, missed again, to the village
    head = requests.post(f"{outreach}/heads", headers=cadre, json={
        "name": "王秀兰", "phone": "13812345678", "village_code": VILLAGE, "party_member": True}).json()["id"]
    missed = register(outreach, worker, due_minutes=1, head=head)
    at_village = wait_until(lambda: (v := visit_of(outreach, missed, cadre))["level"] == "village" and v,
                            timeout=20, message="the missed visit at the village")
    assert (at_village["responsible_id"], at_village["missed"], at_village["state"]) == (VILLAGE, True, "due")
    climbed = wait_until(lambda: len(visits_seen.events("visit_escalated")) >= 2 and visits_seen.events(
        "visit_escalated"), timeout=20, message="both escalations published")
    assert [(e["data"]["from_level"], e["data"]["level"]) for e in climbed] == [
        ("household_head", "grid_worker"), ("grid_worker", "village")]

    # the grid worker calls on another household in time and finds a need: a ticket through intake
    found_at = register(outreach, worker, due_minutes=2880, email=HOUSEHOLD_MAIL)
    visit = visit_of(outreach, found_at, worker)
    r = requests.post(f"{outreach}/visits/{visit['id']}/record", headers=worker, json={
        "contact_made": True, "note": "老人反映低保年审材料不会准备",
        "needs": [{"category": "219", "description": "入户了解到：低保年审材料需要帮助准备"}]})
    assert (r.status_code, r.json()["on_time"]) == (200, True), r.text
    [need] = r.json()["needs"]

    def ticket_of_need():
        listed = requests.get(f"{outreach}/needs", params={"area": GRID}, headers=worker).json()["needs"]
        return next((n["ticket_no"] for n in listed if n["id"] == need and n["status"] == "received"), None)
    ticket_no = wait_until(ticket_of_need, timeout=30, message="intake's receipt for the need")
    ack = wait_until(lambda: [m for m in sink.messages if ticket_no in str(m["Subject"])
                              and "已受理" in str(m["Subject"])], timeout=30, message="the household's acknowledgement")
    assert ack[0]["To"] == HOUSEHOLD_MAIL

    # the loop works it like any request: offered in the village, accepted, resolved, followed up, closed
    supervisor = running_stack.token(*SUPERVISOR)
    case = wait_until(lambda: case_in(dispatch, ticket_no, "offered", supervisor), timeout=30, message="offered")
    assert (case["channel"], case["grid_code"].startswith(VILLAGE)) == ("grid_visit", True)
    on_duty = running_stack.token(case["assignee_id"], "grid_worker", case["grid_code"])
    for step, body in (("accept", None), ("resolve", {"note": "已协助准备年审材料"})):
        assert requests.post(f"{dispatch}/tickets/{ticket_no}/{step}", json=body, headers=on_duty).status_code == 200
    survey = wait_until(lambda: mails_about(sink, ticket_no, "请您评价"), timeout=30, message="the survey")[0]
    answer(stack, survey, "1").raise_for_status()  # 1: satisfied
    assert wait_until(lambda: case_in(dispatch, ticket_no, "closed", supervisor), timeout=30, message="closed")

    book = requests.get(f"{outreach}/ledger/visits", params={"area": VILLAGE}, headers=supervisor).json()
    assert {k: book["totals"][k] for k in ("due", "done", "on_time", "missed", "at_village", "needs_found")} == {
        "due": 2, "done": 1, "on_time": 1, "missed": 1, "at_village": 1, "needs_found": 1}
    assert re.fullmatch(r"SDJ-\d{6}-[0-9A-Z]{8}", ticket_no)
