"""One ticket through every state of the loop, across four service processes."""
from __future__ import annotations

import re

import requests

from services.intake.client import IntakeClient
from songdaojia.peers import body_text
from tests.amqp_helpers import Probe
from tests.waiting import wait_until

from .requests_helpers import case_in, submission


def mails_about(sink, ticket_no: str, marker: str) -> list:
    return [m for m in sink.messages if ticket_no in str(m["Subject"]) and marker in str(m["Subject"])]


def test_one_ticket_travels_the_whole_closed_loop(running_stack):
    stack, sink = running_stack.stack, running_stack.sink
    dispatch, notify = stack.http("dispatch"), stack.http("notify")
    probe = Probe(stack.amqp_uri, "dispatch.events")
    volunteers = Probe(stack.amqp_uri, "volunteer.events")
    with IntakeClient(stack.amqp_uri, source="e2e") as client:
        client.submit("hotline", submission(category="801"))  # daily goods for a vulnerable resident

    # acknowledged: the resident gets the ticket number by email
    ack = wait_until(lambda: [m for m in sink.messages if "已受理" in str(m["Subject"])],
                     timeout=20, message="the acknowledgement email")
    ticket_no = re.search(r"SDJ-\d{6}-[0-9A-Z]{8}", str(ack[0]["Subject"])).group(0)
    assert ticket_no in body_text(ack[0])
    assert ack[0]["To"] == "resident000001@village.example.cn"

    # a neighbour reports the same need: no second ticket; she is told the number already in hand
    with IntakeClient(stack.amqp_uri, source="e2e") as client:
        client.submit("wechat", submission(2, channel="wechat", description="独居老人需要代购米面油！"))
    merged = wait_until(lambda: [m for m in sink.messages if "并入工单" in str(m["Subject"])],
                        timeout=20, message="the merged notice")
    assert ticket_no in str(merged[0]["Subject"]) and merged[0]["To"] == "resident000002@village.example.cn"

    # routed and offered to the grid worker on duty; a volunteer is found for the errand
    case = wait_until(lambda: case_in(dispatch, ticket_no, "offered"), message="offered")
    assert case["grid_code"].startswith("341323104214-G")
    offer = wait_until(lambda: volunteers.events("volunteer_offered"), message="a volunteer offer")
    assert offer[0]["ticket_id"] == ticket_no

    worker = case["assignee_id"]
    # someone else cannot take it; the worker on duty can
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/accept", json={"worker_id": "W-someone-else"}).status_code == 403
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/accept", json={"worker_id": worker}).status_code == 200
    # resolving twice is refused the second time
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/resolve", json={"worker_id": worker, "note": "米面油已送到"}).status_code == 200
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/resolve", json={"worker_id": worker}).status_code == 409

    # follow-up (回访): the resident is asked, is not satisfied, and the ticket is reopened and routed again
    wait_until(lambda: mails_about(sink, ticket_no, "请您评价"), message="the survey email")
    r = requests.post(f"{notify}/replies", json={"ticket_id": ticket_no, "answer": "2", "comment": "油没送到"})
    assert r.status_code == 200, r.text
    case = wait_until(lambda: case_in(dispatch, ticket_no, "offered", reopened=1), message="re-offered")
    wait_until(lambda: mails_about(sink, ticket_no, "重新受理"), message="the reopened email")

    # handled again, and this time the resident is satisfied: closed
    requests.post(f"{dispatch}/tickets/{ticket_no}/accept", json={"worker_id": case["assignee_id"]}).raise_for_status()
    requests.post(f"{dispatch}/tickets/{ticket_no}/resolve", json={"worker_id": case["assignee_id"]}).raise_for_status()
    wait_until(lambda: len(mails_about(sink, ticket_no, "请您评价")) == 2, message="the second survey")
    requests.post(f"{notify}/replies", json={"ticket_id": ticket_no, "answer": "1"}).raise_for_status()
    case = wait_until(lambda: case_in(dispatch, ticket_no, "closed", reopened=1), message="closed")
    wait_until(lambda: mails_about(sink, ticket_no, "已关闭"), message="the closing email")

    states = [h["state"] for h in case["history"] if h["event"].startswith("ticket_")]
    assert states == ["routed", "offered", "accepted", "resolved", "reopened", "routed", "offered",
                      "accepted", "resolved", "closed"]
    assert [e["data"]["ticket_version"] for e in probe.events("ticket_closed")] == [case["version"]]

    # intake answers status look-ups from dispatch's events; the ledger counts it
    status = wait_until(lambda: _status(stack.http("intake"), ticket_no, "closed"), message="intake status")
    assert status["resident_phone"].count("*") == 4
    ledger = requests.get(f"{dispatch}/ledger").json()
    assert ledger["by_state"] == {"closed": 1} and ledger["reopened"] == 1
    assert len([m for m in sink.messages if "已受理" in str(m["Subject"])]) == 1
    probe.close(), volunteers.close()


def _status(intake: str, ticket_no: str, state: str):
    r = requests.get(f"{intake}/tickets/{ticket_no}")
    return r.json() if r.status_code == 200 and r.json()["status"] == state else None
