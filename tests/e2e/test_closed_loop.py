"""One ticket through every state of the loop, across four service processes, each actor signed in as themself."""
from __future__ import annotations

import json
import re

import requests

from services.intake.client import IntakeClient
from songdaojia.loop import SURVEY_CODE, signed_headers
from tests.smtp_sink import body_text
from tests.amqp_helpers import Probe
from tests.waiting import wait_until

from .requests_helpers import case_in, submission

SUPERVISOR = ("supervisor-1", "supervisor", "3413")


REMINDER = "温馨提醒"  # the survey's reminder carries the survey's own markers too


def mails_about(sink, ticket_no: str, marker: str) -> list:
    """Mails about a ticket whose subject has `marker` (reminders only when the marker asks for them)."""
    return [m for m in sink.messages if ticket_no in str(m["Subject"]) and marker in str(m["Subject"])
            and (REMINDER not in str(m["Subject"]) or REMINDER in marker)]


def answer(stack, mail, answer_: str, comment: str = "") -> requests.Response:
    """The resident answers the survey mail; the mail system forwards it to notify, signed."""
    ticket_no = re.search(r"SDJ-\d{6}-[0-9A-Z]{8}", str(mail["Subject"])).group(0)
    body = json.dumps({"ticket_id": ticket_no, "survey_code": SURVEY_CODE.search(str(mail["Subject"])).group(1),
                       "sender": str(mail["To"]), "answer": answer_, "comment": comment}).encode()
    return requests.post(f"{stack.http('notify')}/replies", data=body,
                         headers=signed_headers("mail", stack.secrets.gateway_secret("mail"), body))


def test_one_ticket_travels_the_whole_closed_loop(running_stack):
    stack, sink = running_stack.stack, running_stack.sink
    dispatch = stack.http("dispatch")
    supervisor = running_stack.token(*SUPERVISOR)
    probe = Probe(stack.uri("monitor"), "dispatch.events", passive=True)
    volunteers = Probe(stack.uri("monitor"), "volunteer.events", passive=True)
    with IntakeClient(stack.uri("publisher-channels"), source="e2e") as client:
        client.submit("hotline", submission(category="801"))  # daily goods for a vulnerable resident

    # acknowledged: the resident gets the ticket number by email
    ack = wait_until(lambda: [m for m in sink.messages if "已受理" in str(m["Subject"])],
                     timeout=20, message="the acknowledgement email")
    ticket_no = re.search(r"SDJ-\d{6}-[0-9A-Z]{8}", str(ack[0]["Subject"])).group(0)
    assert ticket_no in body_text(ack[0])
    assert ack[0]["To"] == "resident000001@village.example.cn"

    # a neighbour reports the same need: no second ticket; she is told the number already in hand
    with IntakeClient(stack.uri("publisher-channels"), source="e2e") as client:
        client.submit("wechat", submission(2, channel="wechat", description="独居老人需要代购米面油！"))
    merged = wait_until(lambda: [m for m in sink.messages if "并入工单" in str(m["Subject"])],
                        timeout=20, message="the merged notice")
    assert ticket_no in str(merged[0]["Subject"]) and merged[0]["To"] == "resident000002@village.example.cn"

    # routed and offered to the grid worker on duty; a volunteer is found for the errand
    case = wait_until(lambda: case_in(dispatch, ticket_no, "offered", supervisor), message="offered")
    assert case["grid_code"].startswith("341323104214-G")
    offer = wait_until(lambda: volunteers.events("volunteer_offered"), message="a volunteer offer")
    assert offer[0]["ticket_id"] == ticket_no

    worker = running_stack.token(case["assignee_id"], "grid_worker", case["grid_code"])
    someone_else = running_stack.token("W-someone-else", "grid_worker", case["grid_code"])
    # someone else cannot take it, not even by naming the worker; the worker on duty can
    refused = requests.post(f"{dispatch}/tickets/{ticket_no}/accept", json={"worker_id": case["assignee_id"]},
                            headers=someone_else)
    assert refused.status_code == 403 and case["assignee_id"] not in refused.text
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/accept", headers=worker).status_code == 200
    # resolving twice is refused the second time
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/resolve", json={"note": "米面油已送到"},
                         headers=worker).status_code == 200
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/resolve", json={}, headers=worker).status_code == 409

    # follow-up (回访): the resident is asked, is not satisfied, and the ticket is reopened and routed again
    survey = wait_until(lambda: mails_about(sink, ticket_no, "请您评价"), message="the survey email")[0]
    r = answer(stack, survey, "2", "油没送到")
    assert r.status_code == 200, r.text
    case = wait_until(lambda: case_in(dispatch, ticket_no, "offered", supervisor, reopened=1), message="re-offered")
    wait_until(lambda: mails_about(sink, ticket_no, "重新受理"), message="the reopened email")

    # handled again, and this time the resident is satisfied: closed
    worker = running_stack.token(case["assignee_id"], "grid_worker", case["grid_code"])
    requests.post(f"{dispatch}/tickets/{ticket_no}/accept", headers=worker).raise_for_status()
    requests.post(f"{dispatch}/tickets/{ticket_no}/resolve", json={}, headers=worker).raise_for_status()
    surveys = wait_until(lambda: len(mails_about(sink, ticket_no, "请您评价")) == 2 and
                         mails_about(sink, ticket_no, "请您评价"), message="the second survey")
    assert answer(stack, surveys[0], "1").status_code == 403  # the first round's code is spent
    answer(stack, surveys[1], "1").raise_for_status()
    case = wait_until(lambda: case_in(dispatch, ticket_no, "closed", supervisor, reopened=1), message="closed")
    wait_until(lambda: mails_about(sink, ticket_no, "已关闭"), message="the closing email")

    states = [h["state"] for h in case["history"] if h["event"].startswith("ticket_")]
    assert states == ["routed", "offered", "accepted", "resolved", "reopened", "routed", "offered",
                      "accepted", "resolved", "closed"]
    assert [e["data"]["ticket_version"] for e in probe.events("ticket_closed")] == [case["version"]]

    # intake answers status look-ups from dispatch's events; the ledger counts it
    status = wait_until(lambda: _status(stack.http("intake"), ticket_no, "closed", supervisor), message="status")
    assert status["resident_phone"].count("*") == 7
    ledger = requests.get(f"{dispatch}/ledger", headers=supervisor).json()
    assert ledger["by_state"] == {"closed": 1} and ledger["reopened"] == 1
    assert len([m for m in sink.messages if "已受理" in str(m["Subject"])]) == 1
    probe.close(), volunteers.close()


def _status(intake: str, ticket_no: str, state: str, signed_in: dict):
    r = requests.get(f"{intake}/tickets/{ticket_no}", headers=signed_in)
    return r.json() if r.status_code == 200 and r.json()["status"] == state else None
