"""Staff HTTP APIs on the real services: clear errors for bad input, and the volunteer offer cycle."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pika
import pytest
import requests
from nameko.containers import ServiceContainer
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.common.migrations import upgrade
from services.dispatch.service import DispatchService
from services.notify.service import NotifyService
from services.volunteer.models import VolunteerRow
from services.volunteer.service import VolunteerService
from songdaojia.peers import free_port
from tests.amqp_helpers import Probe, connect
from tests.waiting import wait_until

VILLAGE, TOWN = "341323104214", "341323104"


def started(service_cls, name, uri, db_url, **config):
    upgrade(name, db_url)
    port = free_port()
    container = ServiceContainer(service_cls, {"AMQP_URI": uri, "DB_URL": db_url,
                                               "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}", **config})
    container.start()
    return container, f"http://127.0.0.1:{port}"


@pytest.fixture
def dispatch(fresh_vhost_uri, sqlite_url):
    container, url = started(DispatchService, "dispatch", fresh_vhost_uri, sqlite_url)
    yield url
    container.stop()


@pytest.mark.parametrize("body, content_type, status, says", [
    (b"{not json", "application/json", 400, "not UTF-8 JSON"),
    (b"[1]", "application/json", 400, "JSON object"),
    (json.dumps({}).encode(), "application/json", 400, "worker_id"),
    (json.dumps({"worker_id": ""}).encode(), "application/json", 400, "worker_id"),
    (json.dumps({"worker_id": "W-1"}).encode(), "application/json", 404, "SDJ-000000-NOTHERE"),
], ids=["not-json", "array", "missing-field", "empty-field", "unknown-ticket"])
def test_dispatch_answers_bad_requests_with_what_is_wrong(dispatch, body, content_type, status, says):
    r = requests.post(f"{dispatch}/tickets/SDJ-000000-NOTHERE/accept", data=body,
                      headers={"Content-Type": content_type})
    assert r.status_code == status
    assert says in r.text
    if status == 400 and "worker_id" in says:
        assert "worker_id" in r.json()["fields"]


def test_dispatch_refuses_an_oversized_body(dispatch):
    r = requests.post(f"{dispatch}/tickets/SDJ-1/accept", data=b"x" * 70_000)
    assert r.status_code == 413


@pytest.fixture
def notify(fresh_vhost_uri, sqlite_url):
    container, url = started(NotifyService, "notify", fresh_vhost_uri, sqlite_url,
                             CHANNEL="email", EMAIL={"host": "127.0.0.1", "port": free_port(),
                                                     "sender": "songdaojia@localhost"})
    yield url
    container.stop()


def test_a_reply_must_say_satisfied_or_not(notify):
    r = requests.post(f"{notify}/replies", json={"ticket_id": "SDJ-1", "answer": "3"})
    assert r.status_code == 400 and "answer" in r.json()["fields"]
    r = requests.post(f"{notify}/replies", json={"ticket_id": "SDJ-1"})
    assert r.status_code == 400 and "answer" in r.json()["fields"]


def test_a_reply_to_a_ticket_nobody_asked_about_is_refused(notify):
    r = requests.post(f"{notify}/replies", json={"ticket_id": "SDJ-1", "answer": "1"})
    assert r.status_code == 409 and "no follow-up waiting" in r.json()["error"]


@pytest.fixture
def volunteer(fresh_vhost_uri, sqlite_url):
    upgrade("volunteer", sqlite_url)
    engine = make_engine(sqlite_url)
    with Session(engine) as s, s.begin():  # two errand volunteers in the village, one in the next village
        for vid, village in (("V1", VILLAGE), ("V2", VILLAGE), ("V3", TOWN + "215")):
            s.add(VolunteerRow(id=vid, name=f"志愿者{vid}", team_id="T1", village_code=village,
                               town_code=TOWN, skills="errand,delivery", max_load=2, service_points=0))
    engine.dispose()
    probe = Probe(fresh_vhost_uri, "volunteer.events")
    container, url = started(VolunteerService, "volunteer", fresh_vhost_uri, sqlite_url)
    yield url, probe, fresh_vhost_uri
    container.stop()
    probe.close()


def request_volunteer(uri: str, ticket_id: str) -> None:
    conn = connect(uri)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("dispatch.events", "volunteer_requested", json.dumps({
        "event_id": str(uuid.uuid4()), "event": "volunteer_requested", "version": 1,
        "occurred_at": datetime.now(timezone.utc).isoformat(), "ticket_id": ticket_id,
        "correlation_id": ticket_id, "data": {"skill": "errand", "village_code": VILLAGE,
                                              "town_code": TOWN, "priority": 1, "exclude": []}}),
        pika.BasicProperties(content_type="application/json", delivery_mode=2))
    conn.close()


def test_a_declined_offer_goes_to_the_next_volunteer_and_never_back(volunteer):
    url, probe, uri = volunteer
    request_volunteer(uri, "SDJ-V-1")
    first = wait_until(lambda: probe.events("volunteer_offered"), message="the first offer")[0]["data"]
    assert first["volunteer_id"] == "V1" and first["distance"] == "village"

    r = requests.post(f"{url}/offers/SDJ-V-1/decline", json={"volunteer_id": "V1"})
    assert r.status_code == 200 and r.json()["offered_to"] == "V2"
    requests.post(f"{url}/offers/SDJ-V-1/decline", json={"volunteer_id": "V2"}).raise_for_status()
    offers = wait_until(lambda: len(probe.events("volunteer_offered")) == 3 and probe.events("volunteer_offered"),
                        message="three offers")
    assert [o["data"]["volunteer_id"] for o in offers] == ["V1", "V2", "V3"]
    assert offers[2]["data"]["distance"] == "town"

    requests.post(f"{url}/offers/SDJ-V-1/decline", json={"volunteer_id": "V3"}).raise_for_status()
    failed = wait_until(lambda: probe.events("match_failed"), message="nobody left")
    assert "errand" in failed[0]["data"]["reason"]
    assert len(probe.events("volunteer_declined")) == 3


def test_answering_an_offer_that_does_not_exist_says_so(volunteer):
    url, _, _ = volunteer
    r = requests.post(f"{url}/offers/SDJ-NONE/accept", json={"volunteer_id": "V1"})
    assert r.status_code == 404 and "no open offer" in r.json()["error"]
    r = requests.post(f"{url}/offers/SDJ-NONE/accept", json={})
    assert r.status_code == 400 and "volunteer_id" in r.json()["fields"]
