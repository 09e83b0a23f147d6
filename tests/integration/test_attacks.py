"""The attacks that worked on main at 3640bb7, replayed: each must fail to achieve its aim.

Issue 7 lists them; each test here is one, named after what the attacker tried. Where the
database matters (the record of attempts and reads, a replayed signature) they run on
SQLite and PostgreSQL. The broker's side (a publisher's login publishing events, binding to
residents' data, reading dead letters) runs with real users: test_broker_rights.py.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.common.tokens import new_signing_key
from services.dispatch.service import DispatchService
from services.intake import events as intake_events
from services.intake.client import IntakeClient
from services.intake.models import ContactRead
from services.intake.service import IntakeService
from services.notify.models import ReplyAttempt, Survey
from services.notify.service import NotifyService
from services.dispatch import events as dispatch_events
from songdaojia.loop import signed_headers
from tests.smtp_sink import SmtpSink
from tests.amqp_helpers import Probe, publish_event
from tests.waiting import wait_until

TICKET = "SDJ-261127-7KQ2M4XA"
VILLAGE, COUNTY = "341323104214", "341323"
RECEIVED = intake_events.EXAMPLES["ticket_received"]  # resident 王秀英, 13812341234, wang@example.cn


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --- residents' answers to the follow-up (notify) ----------------------------------------------------

@pytest.fixture
def survey_waiting(fresh_vhost_uri, db_url, start_service, keys):
    """A resolved ticket whose resident has been asked how it went: (notify url, survey mail, db engine)."""
    sink = SmtpSink().start()
    # the survey goes out follow_up_hours (24) after resolution: scaled to under a second; no reminder soon
    url = start_service(NotifyService, fresh_vhost_uri, db_url, CHANNEL="email", SLA_SCALE=0.00001,
                        REMIND_AFTER_HOURS=10_000, EMAIL={"host": "127.0.0.1", "port": sink.port,
                                                          "sender": "s@localhost"}).url
    feedback = Probe(fresh_vhost_uri, "notify.events")
    publish_event(fresh_vhost_uri, "intake", RECEIVED, TICKET)
    publish_event(fresh_vhost_uri, "dispatch", dispatch_events.EXAMPLES["ticket_resolved"], TICKET,
                  resolved_at=datetime.now(timezone.utc).isoformat(), follow_up_hours=24)
    mail = wait_until(lambda: [m for m in sink.messages if "请您评价" in str(m["Subject"])], timeout=20,
                      message="the survey mail")[0]
    engine = make_engine(db_url)
    yield url, mail, engine, feedback
    feedback.close()
    engine.dispose()
    sink.stop()


def survey_code(mail) -> str:
    return re.search(r"评价码 ([0-9A-Z]+)", str(mail["Subject"])).group(1)


def post_reply(url: str, keys, body: dict, gateway: str = "sms", secret: str | None = None, at: float | None = None):
    raw = json.dumps(body).encode()
    headers = signed_headers(gateway, secret or keys.gateway_secret(gateway), raw, at)
    return requests.post(f"{url}/replies", data=raw, headers=headers), raw, headers


def attempts(engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return [(a.outcome, a.reason) for a in s.scalars(select(ReplyAttempt).order_by(ReplyAttempt.id))]


def unanswered(engine) -> bool:
    with Session(engine) as s:
        return s.scalar(select(Survey).where(Survey.ticket_id == TICKET)).answered_at is None


def test_a_stranger_closing_someone_else_s_ticket_as_satisfied_is_refused(survey_waiting, keys):
    url, mail, engine, feedback = survey_waiting
    plain = requests.post(f"{url}/replies", json={"ticket_id": TICKET, "answer": "1"})  # the attack as it was
    assert plain.status_code == 401
    forged, _, _ = post_reply(url, keys, {"ticket_id": TICKET, "survey_code": survey_code(mail),
                                          "sender": "13812341234", "answer": "1"}, secret="guessed-" + "x" * 20)
    assert forged.status_code == 401 and "does not verify" in forged.json()["error"]
    guessed, _, _ = post_reply(url, keys, {"ticket_id": TICKET, "survey_code": "AAAAAAAAAA",
                                           "sender": "13812341234", "answer": "1"})
    assert guessed.status_code == 403 and "survey_code" in guessed.json()["error"]
    wrong_phone, _, _ = post_reply(url, keys, {"ticket_id": TICKET, "survey_code": survey_code(mail),
                                               "sender": "13900000000", "answer": "1"})
    assert wrong_phone.status_code == 403 and "sender" in wrong_phone.json()["error"]
    assert unanswered(engine) and feedback.events("feedback_received") == []
    assert [outcome for outcome, _ in attempts(engine)] == ["forged", "forged", "refused", "refused"]


def test_a_replayed_or_stale_gateway_call_is_refused(survey_waiting, keys):
    url, mail, engine, feedback = survey_waiting
    body = {"ticket_id": TICKET, "survey_code": survey_code(mail), "sender": "+86 138 1234 1234", "answer": "2"}
    first, raw, headers = post_reply(url, keys, body)
    assert first.status_code == 200 and first.json() == {"ticket_id": TICKET, "round": 1, "satisfied": False}
    replayed = requests.post(f"{url}/replies", data=raw, headers=headers)
    assert replayed.status_code == 401 and "replay" in replayed.json()["error"]
    stale, _, _ = post_reply(url, keys, {**body, "answer": "1"},
                             at=(datetime.now(timezone.utc) - timedelta(minutes=10)).timestamp())
    assert stale.status_code == 401
    answers = wait_until(lambda: feedback.events("feedback_received"), message="the one real answer")
    assert [a["data"]["satisfied"] for a in answers] == [False]
    assert [outcome for outcome, _ in attempts(engine)] == ["counted", "forged", "forged"]


# --- staff actions (dispatch) ----------------------------------------------------------------------

@pytest.fixture
def offered(fresh_vhost_uri, db_url, start_service, keys):
    """A ticket offered to the grid worker on duty: (dispatch url, the case as a supervisor sees it)."""
    url = start_service(DispatchService, fresh_vhost_uri, db_url).url
    publish_event(fresh_vhost_uri, "intake", RECEIVED, TICKET)
    supervisor = bearer(keys.token("S-1", "supervisor", "3413"))
    case = wait_until(lambda: (r := requests.get(f"{url}/tickets/{TICKET}", headers=supervisor)).ok and r.json(),
                      message="the offered case")
    return url, case


def forged_tokens(keys, case) -> dict[str, str]:
    grid, worker = case["grid_code"], case["assignee_id"]
    now = datetime.now(timezone.utc)
    claims = {"iss": "songdaojia", "aud": "songdaojia", "sub": worker, "role": "grid_worker", "area": grid,
              "exp": now + timedelta(hours=1)}
    kid = json.loads(keys.signing_key.read_text())["kid"]
    stranger = jwt.PyJWK(new_signing_key(kid)[0])  # a key of its own, claiming to be ours
    return {
        "alg=none": jwt.encode(claims, None, algorithm="none", headers={"kid": kid}),
        "expired": keys.token(worker, "grid_worker", grid, ttl=timedelta(seconds=-120)),
        "another key": jwt.encode(claims, stranger.key, algorithm="EdDSA", headers={"kid": kid}),
        "not even a JWT": "x.y.z",
    }


@pytest.mark.parametrize("action, body", [("accept", {}), ("start", {}), ("resolve", {"note": "done"})])
def test_acting_as_the_assignee_by_naming_them_is_refused(offered, keys, action, body):
    url, case = offered
    worker, grid = case["assignee_id"], case["grid_code"]
    naming = {"worker_id": worker, **body}
    assert requests.post(f"{url}/tickets/{TICKET}/{action}", json=naming).status_code == 401
    for name, token in forged_tokens(keys, case).items():
        r = requests.post(f"{url}/tickets/{TICKET}/{action}", json=naming, headers=bearer(token))
        assert r.status_code == 401, name
    someone = bearer(keys.token("W-someone", "grid_worker", grid))
    refused = requests.post(f"{url}/tickets/{TICKET}/{action}", json=body, headers=someone)
    assert refused.status_code == 403 and worker not in refused.text  # and it names nobody
    named = requests.post(f"{url}/tickets/{TICKET}/{action}", json=naming, headers=someone)
    assert named.status_code in (400, 403) and worker not in named.text  # a name in the body is no one's word
    supervisor = bearer(keys.token("S-1", "supervisor", "3413"))
    assert requests.get(f"{url}/tickets/{TICKET}", headers=supervisor).json()["state"] == "offered"


def test_placing_a_request_outside_one_s_county_is_refused(fresh_vhost_uri, db_url, start_service, keys):
    url = start_service(DispatchService, fresh_vhost_uri, db_url).url
    publish_event(fresh_vhost_uri, "intake", RECEIVED, TICKET, village_code=None, county_code=COUNTY)
    centre = bearer(keys.token("D-lingbi-1", "county_dispatcher", COUNTY))
    wait_until(lambda: requests.get(f"{url}/tickets/{TICKET}", headers=centre).ok, message="the unplaced case")
    for outsider in (keys.token("D-sixian-1", "county_dispatcher", "341324"),
                     keys.token("D-yangtuan-1", "town_dispatcher", "341323104"),
                     keys.token("W-1", "grid_worker", f"{VILLAGE}-G10")):
        r = requests.post(f"{url}/tickets/{TICKET}/place", json={"village_code": VILLAGE}, headers=bearer(outsider))
        assert r.status_code == 403
    placed = requests.post(f"{url}/tickets/{TICKET}/place", json={"village_code": VILLAGE}, headers=centre)
    assert placed.status_code == 200 and placed.json()["village_code"] == VILLAGE
    assert {h["actor"] for h in requests.get(f"{url}/tickets/{TICKET}", headers=centre).json()["history"]
            if h["note"].startswith("placed")} == {"D-lingbi-1"}  # the record names who placed it: the token's


def test_reading_another_area_s_queue_ledger_or_ticket_is_refused(offered, keys):
    url, case = offered
    other = bearer(keys.token("D-sixian-1", "county_dispatcher", "341324"))
    assert requests.get(f"{url}/tickets/{TICKET}", headers=other).status_code == 403
    assert requests.get(f"{url}/queues/{COUNTY}", headers=other).status_code == 403
    assert requests.get(f"{url}/ledger", headers=other).json()["total"] == 0  # only its own county's
    assert requests.get(f"{url}/queues/{COUNTY}").status_code == 401


# --- residents' contacts (intake) -----------------------------------------------------------------

@pytest.fixture
def routed_ticket(fresh_vhost_uri, db_url, start_service, keys):
    """A ticket intake knows is routed to a grid: (intake url, ticket number, its grid, db engine)."""
    url = start_service(IntakeService, fresh_vhost_uri, db_url).url
    received = Probe(fresh_vhost_uri, "intake.events")
    with IntakeClient(fresh_vhost_uri) as client:
        client.submit("hotline", {"channel": "hotline", "category": "652", "village_code": VILLAGE,
                                  "description": "水管爆了", "submitted_at": datetime.now(timezone.utc).isoformat(),
                                  "resident": {"name": "王秀英", "phone": "13812345678"}})
    ticket_no = wait_until(lambda: received.events("ticket_received"), message="the ticket")[0]["ticket_id"]
    received.close()
    grid = f"{VILLAGE}-G10"
    routed = dispatch_events.EXAMPLES["ticket_routed"]
    publish_event(fresh_vhost_uri, "dispatch", routed, ticket_no, area_path=["3413", COUNTY, VILLAGE[:9], VILLAGE, grid])
    caller = bearer(keys.token("W-1", "grid_worker", grid))
    wait_until(lambda: requests.get(f"{url}/tickets/{ticket_no}", headers=caller).ok, message="routed")
    engine = make_engine(db_url)
    yield url, ticket_no, grid, engine, fresh_vhost_uri
    engine.dispose()


def reads(engine) -> list[tuple]:
    with Session(engine) as s:
        return [(r.staff_id, r.role, r.granted, r.reason) for r in s.scalars(select(ContactRead).order_by(ContactRead.id))]


def test_reading_a_resident_s_phone_with_a_typed_staff_id_is_refused(routed_ticket, keys):
    url, ticket_no, grid, engine, _ = routed_ticket
    r = requests.get(f"{url}/tickets/{ticket_no}/contact", params={"reason": "回访"}, headers={"X-Staff-Id": "anyone"})
    assert r.status_code == 401 and "13812345678" not in r.text
    outsider = bearer(keys.token("W-other", "grid_worker", f"{VILLAGE}-G11"))
    r = requests.get(f"{url}/tickets/{ticket_no}/contact", params={"reason": "好奇"}, headers=outsider)
    assert r.status_code == 403 and "13812345678" not in r.text
    no_reason = requests.get(f"{url}/tickets/{ticket_no}/contact", headers=bearer(keys.token("W-1", "grid_worker", grid)))
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["fields"]
    r = requests.get(f"{url}/tickets/{ticket_no}/contact", params={"reason": "回访"},
                     headers=bearer(keys.token("W-1", "grid_worker", grid)))
    assert r.status_code == 200 and r.json()["phone"] == "13812345678"
    assert reads(engine) == [("W-other", "grid_worker", False, "好奇"), ("W-1", "grid_worker", True, "回访")]
    supervisor = bearer(keys.token("S-1", "supervisor", COUNTY))
    listed = requests.get(f"{url}/contact-reads", params={"ticket_no": ticket_no}, headers=supervisor).json()
    assert [(x["staff_id"], x["granted"]) for x in listed] == [("W-1", True), ("W-other", False)]
    assert requests.get(f"{url}/contact-reads", headers=bearer(keys.token("W-1", "grid_worker", grid))).status_code == 403
    elsewhere = bearer(keys.token("S-2", "supervisor", "341324"))
    assert requests.get(f"{url}/contact-reads", headers=elsewhere).json() == []


def test_a_contact_is_not_given_out_long_after_its_ticket_closed(routed_ticket, keys):
    url, ticket_no, grid, engine, uri = routed_ticket
    closed = dispatch_events.EXAMPLES["ticket_closed"]
    publish_event(uri, "dispatch", closed, ticket_no, occurred_at=datetime.now(timezone.utc) - timedelta(days=8),
                  ticket_version=9)
    caller = bearer(keys.token("W-1", "grid_worker", grid))
    wait_until(lambda: requests.get(f"{url}/tickets/{ticket_no}", headers=caller).json()["status"] == "closed",
               message="closed")
    r = requests.get(f"{url}/tickets/{ticket_no}/contact", params={"reason": "回访"}, headers=caller)
    assert r.status_code == 403 and "closed more than 7 days ago" in r.json()["error"]
    assert reads(engine)[-1][:3] == ("W-1", "grid_worker", False)


def test_a_staff_view_masks_all_but_the_last_four_digits(routed_ticket, keys):
    url, ticket_no, grid, _, _ = routed_ticket
    view = requests.get(f"{url}/tickets/{ticket_no}", headers=bearer(keys.token("W-1", "grid_worker", grid))).json()
    assert view["resident_phone"] == "*******5678" and view["resident_name"] == "王**"
    assert requests.get(f"{url}/tickets/{ticket_no}").status_code == 401


# --- over-long input (PostgreSQL refuses what SQLite would store) ------------------------------------

LONG = {"first_name": "秀" * 51, "last_name": "王" * 51, "address_string": "杨东村" + "组" * 300,
        "media_url": "https://example.cn/" + "x" * 600, "email": "x" * 250 + "@example.cn",
        "phone": "1" * 40, "description": "长" * 4001, "service_code": "8" * 300, "address_id": "3" * 300,
        "attribute[items]": "s" * 5000}


def test_over_long_values_are_a_400_naming_the_field_on_every_database(fresh_vhost_uri, db_url, start_service):
    url = start_service(IntakeService, fresh_vhost_uri, db_url, OPEN311_DEMO=True).url
    good = {"api_key": "songdaojia-demo-key", "service_code": "801", "address_id": VILLAGE,
            "description": "独居老人需要代购米面油", "phone": "13812345678", "attribute[items]": "staples"}
    for field, value in LONG.items():
        r = requests.post(f"{url}/open311/v2/requests.json", data={**good, field: value})
        assert r.status_code in (400, 404) and r.json()[0]["code"] == r.status_code, (field, r.text)
        assert field.split("[")[0] in r.json()[0]["description"], (field, r.text)
    assert requests.post(f"{url}/open311/v2/requests.json", data=good).status_code == 200
