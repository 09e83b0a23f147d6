"""A resident withdraws a request (撤单) through a gateway, proved as answers to the follow-up are.

intake runs on SQLite and PostgreSQL with its real broker plumbing; dispatch is played by publishing
its events. A good call is answered 202 and puts exactly one `ticket_cancelled` on intake.events; a
forged, replayed, wrong-sender, merged or closed one is refused (401/401/403/409/409) and puts none.
"""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.dispatch import events as dispatch_events
from services.intake.client import IntakeClient
from services.intake.models import CancelAttempt, OutboxRow, Ticket
from services.intake.service import IntakeService
from songdaojia.loop import signed_headers
from tests.amqp_helpers import Probe, publish_event
from tests.waiting import wait_until

VILLAGE, COUNTY = "341323104214", "341323"
PHONE, EMAIL = "13812345678", "wang@village.example.cn"


def request(description: str, category: str = "652", phone: str = PHONE) -> dict:
    return {"channel": "hotline", "category": category, "village_code": VILLAGE, "description": description,
            "submitted_at": datetime.now(timezone.utc).isoformat(),
            "resident": {"name": "王秀英", "phone": phone, "email": EMAIL},
            "attributes": {"items": ["staples"]} if category == "801" else {}}


@pytest.fixture
def intake(fresh_vhost_uri, db_url, start_service):
    """intake with three tickets of one resident (a leak, its repeat, a goods order) and a probe on its events."""
    url = start_service(IntakeService, fresh_vhost_uri, db_url).url
    events = Probe(fresh_vhost_uri, "intake.events")
    with IntakeClient(fresh_vhost_uri) as client:
        client.submit("hotline", request("三组水管爆了，水一直在流"))
        client.submit("hotline", request("独居老人需要代购米面油", "801"))
        wait_until(lambda: len(events.events("ticket_received")) == 2, message="two tickets")
        client.submit("hotline", request("三组水管爆了，水一直在流！"))  # the same leak again
        merged = wait_until(lambda: events.events("ticket_merged"), message="the repeat merged")[0]["data"]
    by_category = {e["data"]["category"]["code"]: e["ticket_id"] for e in events.events("ticket_received")}
    leak, goods = merged["ticket_no"], by_category["801"]  # workers may commit in any order
    engine = make_engine(db_url)
    yield url, {"leak": leak, "goods": goods, "repeat": merged["report_no"]}, events, engine, fresh_vhost_uri
    events.close()
    engine.dispose()


def cancel(url: str, keys, ticket_no: str, body: dict, secret: str | None = None):
    raw = json.dumps({"ticket_no": ticket_no, **body}, ensure_ascii=False).encode()
    headers = signed_headers("sms", secret or keys.gateway_secret("sms"), raw)
    return requests.post(f"{url}/tickets/{ticket_no}/cancel", data=raw, headers=headers), raw, headers


def cancellations_in_outbox(engine) -> list[dict]:
    with Session(engine) as s:
        bodies = [json.loads(b) for b in s.scalars(select(OutboxRow.body).order_by(OutboxRow.id))]
    return [b for b in bodies if b.get("event") == "ticket_cancelled"]


def attempts(engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return [(a.ticket_id, a.outcome) for a in s.scalars(select(CancelAttempt).order_by(CancelAttempt.id))]


def status(engine, ticket_no: str) -> str:
    with Session(engine) as s:
        return s.get(Ticket, ticket_no).status


def test_the_resident_withdraws_a_request_and_intake_tells_dispatch_once(intake, keys):
    url, tickets, events, engine, _ = intake
    r, raw, headers = cancel(url, keys, tickets["goods"], {"sender": "+86 138 1234 5678", "reason": "邻居帮忙买了"})
    assert r.status_code == 202, r.text
    assert r.json() == {"ticket_no": tickets["goods"], "status": "cancellation requested"}
    [cancelled] = wait_until(lambda: events.events("ticket_cancelled"), message="ticket_cancelled on intake.events")
    assert (cancelled["ticket_id"], cancelled["data"]) == (
        tickets["goods"], {"ticket_no": tickets["goods"], "by": "resident", "reason": "邻居帮忙买了"})
    again, _, _ = cancel(url, keys, tickets["goods"], {"sender": EMAIL})  # a new call, by mail this time
    assert again.status_code == 202
    assert len(cancellations_in_outbox(engine)) == 1  # dispatch is told once
    assert attempts(engine) == [(tickets["goods"], "requested"), (tickets["goods"], "again")]


def test_forged_replayed_wrong_sender_merged_and_closed_calls_withdraw_nothing(intake, keys):
    url, tickets, events, engine, uri = intake
    unsigned = requests.post(f"{url}/tickets/{tickets['leak']}/cancel", json={"ticket_no": tickets["leak"],
                                                                              "sender": PHONE})
    assert unsigned.status_code == 401 and "X-Sdj-Gateway" in unsigned.json()["error"]
    forged, _, _ = cancel(url, keys, tickets["leak"], {"sender": PHONE}, secret="guessed-" + "x" * 20)
    assert forged.status_code == 401 and "does not verify" in forged.json()["error"]

    stranger, raw, headers = cancel(url, keys, tickets["leak"], {"sender": "13900000000"})
    assert stranger.status_code == 403 and "sender" in stranger.json()["error"]
    assert PHONE not in stranger.text and EMAIL not in stranger.text  # a refusal names no-one
    replayed = requests.post(f"{url}/tickets/{tickets['leak']}/cancel", data=raw, headers=headers)
    assert replayed.status_code == 401 and "replay" in replayed.json()["error"]
    elsewhere = requests.post(f"{url}/tickets/{tickets['goods']}/cancel", data=raw, headers=headers)
    assert elsewhere.status_code == 401  # a signed call for one ticket, posted for another

    repeat, _, _ = cancel(url, keys, tickets["repeat"], {"sender": PHONE})
    assert repeat.status_code == 409 and tickets["leak"] in repeat.json()["error"]  # names the ticket it joined

    publish_event(uri, "dispatch", dispatch_events.EXAMPLES["ticket_closed"], tickets["leak"], ticket_version=9)
    wait_until(lambda: status(engine, tickets["leak"]) == "closed", message="the leak closed")
    closed, _, _ = cancel(url, keys, tickets["leak"], {"sender": PHONE, "reason": "不要了"})  # another call
    assert closed.status_code == 409 and "closed" in closed.json()["error"]

    assert cancellations_in_outbox(engine) == []
    assert [outcome for _, outcome in attempts(engine)] == ["forged", "forged", "refused", "forged", "forged",
                                                            "unexpected", "unexpected"]
    # a good call after all of them: its event is the only one on the broker
    good, _, _ = cancel(url, keys, tickets["goods"], {"sender": PHONE})
    assert good.status_code == 202
    wait_until(lambda: events.events("ticket_cancelled"), message="the good call's event")
    assert [e["ticket_id"] for e in events.events("ticket_cancelled")] == [tickets["goods"]]


def dispatch_cancelled() -> dict:
    """dispatch's ticket_cancelled (its own example once it has one; until then the contract's fields)."""
    if "ticket_cancelled" in dispatch_events.EXAMPLES:
        return dispatch_events.EXAMPLES["ticket_cancelled"]
    closed = copy.deepcopy(dispatch_events.EXAMPLES["ticket_closed"])
    return {**closed, "event": "ticket_cancelled", "data": {
        "state": "cancelled", "ticket_version": 3, "assignee_id": None, "assignee_name": None,
        "by": "resident", "reason": "不需要了"}}


def test_the_status_follows_dispatch_s_cancellation_and_a_cancelled_ticket_is_closed_for_good(intake, keys):
    url, tickets, events, engine, uri = intake
    assert cancel(url, keys, tickets["leak"], {"sender": PHONE})[0].status_code == 202
    publish_event(uri, "dispatch", dispatch_cancelled(), tickets["leak"], state="cancelled", ticket_version=3)
    wait_until(lambda: status(engine, tickets["leak"]) == "cancelled", message="the mirror cancelled")
    open311 = requests.get(f"{url}/open311/v2/requests/{tickets['leak']}.json").json()[0]
    assert open311["status"] == "closed" and "撤" in open311["status_notes"]
    again, _, _ = cancel(url, keys, tickets["leak"], {"sender": PHONE, "reason": "再撤一次"})  # another call
    assert again.status_code == 409 and "cancelled" in again.json()["error"]
    with IntakeClient(uri) as client:  # the same leak reported again is a new ticket, not a repeat of the cancelled
        client.submit("hotline", request("三组水管爆了，水一直在流"))
        wait_until(lambda: len(events.events("ticket_received")) == 3, message="a new ticket for the leak")
    assert len(events.events("ticket_merged")) == 1
    with Session(engine) as s:
        ticket = s.get(Ticket, tickets["leak"])
        assert ticket.status == "cancelled" and ticket.closed_at is not None  # retention counts from here


def test_the_mirror_takes_dispatch_s_changes_arriving_together_and_out_of_order(intake):
    """In progress, accepted and routed published at once, the newest first (they are handled several to a
    transaction): the mirror ends at the newest, and the older ones change nothing; the other ticket is
    untouched until its own routing comes, which sets its grid."""
    url, tickets, _events, engine, uri = intake
    ticket = tickets["goods"]
    for name in ("ticket_in_progress", "ticket_accepted", "ticket_routed"):
        publish_event(uri, "dispatch", dispatch_events.EXAMPLES[name], ticket)
    wait_until(lambda: status(engine, ticket) == "in_progress", message="the mirror at the newest change")
    with Session(engine) as s:
        mirrored, other = s.get(Ticket, ticket), s.get(Ticket, tickets["leak"])
        assert (mirrored.status_version, mirrored.assignee_name) == (4, "李桂兰")
        assert mirrored.grid_code is None  # the routing came after in_progress: older, it changed nothing
        assert mirrored.updated_at is not None and other.status == "received" and other.updated_at is None
    publish_event(uri, "dispatch", dispatch_events.EXAMPLES["ticket_routed"], tickets["leak"])
    wait_until(lambda: status(engine, tickets["leak"]) == "routed", message="the other ticket routed")
    with Session(engine) as s:
        assert s.get(Ticket, tickets["leak"]).grid_code == "341323104214-G10"
