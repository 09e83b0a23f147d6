"""Staff HTTP APIs on the real services: clear errors for bad input, and the volunteer offer cycle."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pika
import pytest
import requests
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.common.migrations import upgrade
from services.dispatch.service import DispatchService
from services.intake.client import IntakeClient
from services.intake.service import IntakeService
from services.notify.service import NotifyService
from services.volunteer.models import VolunteerRow
from services.volunteer.service import VolunteerService
from songdaojia.peers import free_port
from tests.amqp_helpers import Probe, connect
from tests.waiting import wait_until

VILLAGE, TOWN = "341323104214", "341323104"
GRID = f"{VILLAGE}-G10"


@pytest.fixture
def dispatch(fresh_vhost_uri, sqlite_url, start_service, keys):
    url = start_service(DispatchService, fresh_vhost_uri, sqlite_url).url
    return url, {"Authorization": f"Bearer {keys.token(f'W-{GRID}-1', 'grid_worker', GRID)}"}


@pytest.mark.parametrize("body, content_type, status, says", [
    (b"{not json", "application/json", 400, "not UTF-8 JSON"),
    (b"[1]", "application/json", 400, "JSON object"),
    (json.dumps({"note": 7}).encode(), "application/json", 400, "note"),
    (json.dumps({"note": "x" * 2001}).encode(), "application/json", 400, "note"),
    (json.dumps({"note": "done"}).encode(), "text/plain", 415, "application/json"),
    (json.dumps({"note": "done"}).encode(), "application/x-www-form-urlencoded", 415, "application/json"),
], ids=["not-json", "array", "wrong-type", "too-long", "text-plain", "form"])
def test_dispatch_answers_bad_requests_with_what_is_wrong(dispatch, body, content_type, status, says):
    url, signed_in = dispatch
    r = requests.post(f"{url}/tickets/SDJ-000000-NOTHERE/resolve", data=body,
                      headers={"Content-Type": content_type, **signed_in})
    assert (r.status_code, r.headers["Content-Type"]) == (status, "application/json; charset=utf-8")
    assert says in r.text
    if status == 400 and says == "note":
        assert "note" in r.json()["fields"]


def test_an_unknown_ticket_is_404_naming_it(dispatch):
    url, signed_in = dispatch
    r = requests.post(f"{url}/tickets/SDJ-000000-NOTHERE/accept", headers=signed_in)
    assert r.status_code == 404 and "SDJ-000000-NOTHERE" in r.json()["error"]


def test_dispatch_refuses_an_oversized_body(dispatch):
    url, signed_in = dispatch
    r = requests.post(f"{url}/tickets/SDJ-1/resolve", data=b"x" * 70_000,
                      headers={"Content-Type": "application/json", **signed_in})
    assert r.status_code == 413 and "body" in r.json()["error"]


def test_everything_the_server_refuses_by_itself_is_json(dispatch):
    url, _ = dispatch
    for r, status in ((requests.get(f"{url}/no/such/path"), 404),
                      (requests.delete(f"{url}/ledger"), 405),
                      (requests.get(f"{url}/queues/{'3' * 20_000}"), 414),
                      (requests.get(f"{url}/ledger", headers={"X-Padding": "x" * 20_000}), 431)):
        assert r.status_code == status and r.headers["Content-Type"].startswith("application/json")
        assert r.json()["error"]
    assert "GET" in requests.delete(f"{url}/ledger").headers["Allow"]


def test_a_queue_takes_a_list_of_states_or_open_and_filters_overdue_and_escalated(dispatch):
    url, signed_in = dispatch
    for query in ({"state": "offered,returned"}, {"state": "open", "overdue": "true"},
                  {"state": "open", "overdue": "false", "escalated": "true"}, {"escalated": "1"}):
        r = requests.get(f"{url}/queues/{GRID}", params=query, headers=signed_in)
        assert (r.status_code, r.json()) == (200, []), query
    for query, field in (({"state": "offered,gone"}, "state"), ({"state": ""}, "state"),
                         ({"overdue": "soon"}, "overdue"), ({"escalated": "maybe"}, "escalated")):
        r = requests.get(f"{url}/queues/{GRID}", params=query, headers=signed_in)
        assert r.status_code == 400 and list(r.json()["fields"]) == [field], (query, r.text)
    assert "'gone'" in requests.get(f"{url}/queues/{GRID}", params={"state": "offered,gone"},
                                    headers=signed_in).json()["fields"]["state"][0]


def test_intake_s_staff_view_shows_what_was_asked_and_where_but_masks_who(fresh_vhost_uri, sqlite_url,
                                                                          start_service, keys):
    url = start_service(IntakeService, fresh_vhost_uri, sqlite_url, OPEN311_DEMO=True).url
    received = Probe(fresh_vhost_uri, "intake.events")
    with IntakeClient(fresh_vhost_uri) as client:
        client.submit("hotline", {"channel": "hotline", "category": "801", "village_code": VILLAGE,
                                  "address": "杨东村三组12号", "description": "独居老人需要代购米面油",
                                  "submitted_at": datetime.now(timezone.utc).isoformat(),
                                  "attributes": {"items": ["staples", "vegetables"],
                                                 "recipient_group": "solitary_elderly"},
                                  "resident": {"name": "王秀英", "phone": "13812345678", "vulnerable": True}})
    ticket_no = wait_until(lambda: received.events("ticket_received"), message="the ticket")[0]["ticket_id"]
    received.close()
    supervisor = {"Authorization": f"Bearer {keys.token('S-1', 'supervisor', '3413')}"}
    view = requests.get(f"{url}/tickets/{ticket_no}", headers=supervisor).json()
    assert {k: view[k] for k in ("description", "address", "attributes", "village_name", "status", "status_note")} == {
        "description": "独居老人需要代购米面油", "address": "杨东村三组12号",
        "attributes": {"items": ["staples", "vegetables"], "recipient_group": "solitary_elderly"},
        "village_name": "灵璧县杨疃镇杨东村委会", "status": "received", "status_note": "已受理"}
    assert datetime.fromisoformat(view["received_at"]) >= datetime.fromisoformat(view["submitted_at"])
    assert (view["resident_phone"], view["resident_name"]) == ("*******5678", "王**")
    assert "13812345678" not in json.dumps(view, ensure_ascii=False) and "王秀英" not in json.dumps(
        view, ensure_ascii=False)

    posted = requests.post(f"{url}/open311/v2/requests.json", data={  # a map point: no village yet
        "api_key": "songdaojia-demo-key", "service_code": "801", "lat": "33.55", "long": "117.55",
        "description": "路边有位老人需要帮忙", "phone": "13812345678", "attribute[items]": "staples"})
    assert posted.status_code == 200, posted.text
    unplaced = requests.get(f"{url}/tickets/{posted.json()[0]['service_request_id']}", headers=supervisor).json()
    assert (unplaced["village_code"], unplaced["village_name"]) == (None, None)
    assert unplaced["address"].startswith("灵璧县 (33.55")  # the nearest county and the point, until placed
    assert unplaced["attributes"] == {"items": ["staples"]} and unplaced["status_note"].startswith("已转县调度中心")


@pytest.fixture
def notify(fresh_vhost_uri, sqlite_url, start_service):
    return start_service(NotifyService, fresh_vhost_uri, sqlite_url, CHANNEL="email",
                         EMAIL={"host": "127.0.0.1", "port": free_port(), "sender": "songdaojia@localhost"}).url


def test_a_reply_without_a_gateway_s_signature_is_refused_before_anything_else(notify):
    r = requests.post(f"{notify}/replies", json={"ticket_id": "SDJ-1", "answer": "3"})
    assert r.status_code == 401 and "X-Sdj-Gateway" in r.json()["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.fixture
def volunteer(fresh_vhost_uri, sqlite_url, start_service, keys):
    upgrade("volunteer", sqlite_url)
    engine = make_engine(sqlite_url)
    with Session(engine) as s, s.begin():  # two errand volunteers in the village, one in the next village
        for vid, village in (("V1", VILLAGE), ("V2", VILLAGE), ("V3", TOWN + "215")):
            s.add(VolunteerRow(id=vid, name=f"志愿者{vid}", team_id="T1", village_code=village,
                               town_code=TOWN, skills="errand,delivery", max_load=2, service_points=0))
    engine.dispose()
    probe = Probe(fresh_vhost_uri, "volunteer.events")
    url = start_service(VolunteerService, fresh_vhost_uri, sqlite_url).url
    yield url, probe, fresh_vhost_uri, lambda vid: {"Authorization": f"Bearer {keys.token(vid, 'volunteer', VILLAGE)}"}
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
        pika.BasicProperties(content_type="application/json", delivery_mode=2, user_id="guest"))
    conn.close()


def test_a_declined_offer_goes_to_the_next_volunteer_and_never_back(volunteer):
    url, probe, uri, as_volunteer = volunteer
    request_volunteer(uri, "SDJ-V-1")
    first = wait_until(lambda: probe.events("volunteer_offered"), message="the first offer")[0]["data"]
    assert first["volunteer_id"] == "V1" and first["distance"] == "village"

    r = requests.post(f"{url}/offers/SDJ-V-1/decline", headers=as_volunteer("V1"))
    assert r.status_code == 200 and r.json()["offered_to"] == "V2"
    requests.post(f"{url}/offers/SDJ-V-1/decline", headers=as_volunteer("V2")).raise_for_status()
    offers = wait_until(lambda: len(probe.events("volunteer_offered")) == 3 and probe.events("volunteer_offered"),
                        message="three offers")
    assert [o["data"]["volunteer_id"] for o in offers] == ["V1", "V2", "V3"]
    assert offers[2]["data"]["distance"] == "town"

    requests.post(f"{url}/offers/SDJ-V-1/decline", headers=as_volunteer("V3")).raise_for_status()
    failed = wait_until(lambda: probe.events("match_failed"), message="nobody left")
    assert "errand" in failed[0]["data"]["reason"]
    assert len(probe.events("volunteer_declined")) == 3


def test_a_volunteer_answers_only_their_own_offers(volunteer):
    url, probe, uri, as_volunteer = volunteer
    request_volunteer(uri, "SDJ-V-2")
    wait_until(lambda: probe.events("volunteer_offered"), message="the offer to V1")
    r = requests.post(f"{url}/offers/SDJ-V-2/accept", headers=as_volunteer("V2"))  # V2 was not asked
    assert r.status_code == 404 and "V1" not in r.text
    assert requests.post(f"{url}/offers/SDJ-V-2/accept", json={"volunteer_id": "V1"}).status_code == 401
    r = requests.post(f"{url}/offers/SDJ-V-2/accept", headers=as_volunteer("V1"))
    assert r.status_code == 200 and r.json() == {"ticket_id": "SDJ-V-2", "volunteer_id": "V1", "state": "accepted"}
    assert requests.get(f"{url}/volunteers/V1", headers=as_volunteer("V1")).json()["name"] == "志愿者V1"
    assert requests.get(f"{url}/volunteers/V1", headers=as_volunteer("V2")).status_code == 403


def test_answering_an_offer_that_does_not_exist_says_so(volunteer):
    url, _, _, as_volunteer = volunteer
    r = requests.post(f"{url}/offers/SDJ-NONE/accept", headers=as_volunteer("V1"))
    assert r.status_code == 404 and "no open offer" in r.json()["error"]
