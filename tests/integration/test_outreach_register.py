"""outreach's registration APIs on the real service: household heads and households registered, edited and
deactivated by whom the trust model allows; bad input answered 400 naming the field with nothing written; a
head deactivated and a household moved with visits pending; every read of a household recorded."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import func, select

from services.common.database import make_engine
from services.outreach.models import Head, Household, HouseholdRead, Member, OutboxRow, PlanRow, RegisterChange, Visit
from services.outreach.schedules import local_day
from services.outreach.service import OutreachService
from tests.waiting import wait_until

VILLAGE, OTHER_VILLAGE = "341323104214", "341323104213"
GRID, OTHER_GRID = f"{VILLAGE}-G10", f"{VILLAGE}-G11"
WORKER = f"W-{GRID}-1"
# what is refused before any row is touched needs no second database (the rest runs on SQLite and PostgreSQL)
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def outreach(fresh_vhost_uri, db_url, start_service, keys):
    started = start_service(OutreachService, fresh_vhost_uri, db_url)
    engine = make_engine(db_url)

    def as_(subject: str, role: str, area: str) -> dict:
        return {"Authorization": f"Bearer {keys.token(subject, role, area)}"}

    def count(table) -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()

    def rows(statement):
        with engine.connect() as conn:
            return conn.execute(statement).all()

    yield SimpleNamespace(url=started.url, as_=as_, count=count, rows=rows, cadre=as_("C-1", "village_cadre", VILLAGE),
                          worker=as_(WORKER, "grid_worker", GRID), county=as_("D-9", "county_dispatcher", "341323"))
    engine.dispose()


def a_head(outreach, **changes) -> str:
    body = {"name": "王秀兰", "phone": "138 1234 5678", "village_code": VILLAGE, "party_member": True, **changes}
    r = requests.post(f"{outreach.url}/heads", json=body, headers=outreach.cadre)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def a_household(outreach, **changes) -> requests.Response:
    body = {"village_code": VILLAGE, "grid_code": GRID, "address": "幸福路 12 号", "phone": "13912345678",
            "key_groups": ["elderly_alone"], "grid_worker_id": WORKER,
            "members": [{"name": "李桂英", "relation": "户主", "born": 1941, "key_groups": ["elderly_alone"]}],
            "plans": [{"kind": "phone", "every_days": 1, "due_minutes": 600, "starts_on": "2026-01-01"}], **changes}
    return requests.post(f"{outreach.url}/households", json=body, headers=outreach.worker)


def test_a_head_is_registered_edited_and_deactivated_by_the_village_and_kept(outreach):
    head = a_head(outreach)
    r = requests.get(f"{outreach.url}/heads/{head}", headers=outreach.cadre)
    assert (r.status_code, r.json()["phone"], r.json()["party_member"], r.json()["active"]) == (
        200, "13812345678", True, True)  # the phone in one form, as intake keeps them
    r = requests.patch(f"{outreach.url}/heads/{head}", json={"phone": "13900001111"}, headers=outreach.cadre)
    assert (r.status_code, r.json()["phone"]) == (200, "13900001111")
    r = requests.post(f"{outreach.url}/heads/{head}/deactivate", headers=outreach.cadre)
    assert (r.status_code, r.json()["active"]) == (200, False)
    assert requests.post(f"{outreach.url}/heads/{head}/deactivate", headers=outreach.cadre).status_code == 409
    assert requests.patch(f"{outreach.url}/heads/{head}", json={"name": "x"}, headers=outreach.cadre).status_code == 409
    changes = outreach.rows(select(RegisterChange.change, RegisterChange.actor, RegisterChange.before)
                            .where(RegisterChange.subject_id == head).order_by(RegisterChange.id))
    assert [(c.change, c.actor) for c in changes] == [("registered", "C-1"), ("edited", "C-1"),
                                                      ("deactivated", "C-1")]
    assert json.loads(changes[1].before) == {"phone": "13812345678"}  # what the edit replaced
    assert outreach.count(Head) == 1  # nothing deleted


@pytest.mark.parametrize("changes, field", [
    ({"grid_code": OTHER_GRID.replace(VILLAGE, OTHER_VILLAGE)}, "grid_code"),
    ({"village_code": "341323999999"}, "village_code"),
    ({"phone": "12345"}, "phone"),
    ({"key_groups": ["rich"]}, "key_groups"),
    ({"members": [{"name": "李桂英", "relation": "户主", "born": 1841}]}, "members"),
    ({"plans": [{"kind": "phone", "every_days": 3, "due_minutes": 600, "starts_on": "2026-01-01"}]}, "plans"),
    ({"plans": [{"kind": "phone", "every_days": 1, "due_minutes": 600, "starts_on": "someday"}]}, "plans"),
    ({"head_id": "HNOSUCH"}, "head_id"),
    ({"nickname": "x"}, "nickname"),
], ids=["grid-of-another-village", "unknown-village", "phone", "key-group", "member-born", "plan-every",
        "plan-start", "no-such-head", "unknown-field"])
@SQLITE_ONLY
def test_bad_input_is_400_naming_the_field_and_nothing_is_half_written(outreach, changes, field):
    r = a_household(outreach, **changes)
    assert (r.status_code, r.headers["Content-Type"]) == (400, "application/json; charset=utf-8"), r.text
    assert field in r.json()["fields"], r.json()
    assert [outreach.count(t) for t in (Household, Member, PlanRow, RegisterChange)] == [0, 0, 0, 0]


def test_a_head_of_another_village_is_refused_naming_the_field(outreach):
    other = requests.post(f"{outreach.url}/heads", headers=outreach.county, json={
        "name": "赵强", "phone": "13800000000", "village_code": OTHER_VILLAGE}).json()["id"]
    r = a_household(outreach, head_id=other)
    assert r.status_code == 400 and "another village" in r.json()["fields"]["head_id"][0]
    assert outreach.count(Household) == 0


@SQLITE_ONLY
def test_who_may_keep_the_register(outreach):
    body = {"name": "王秀兰", "phone": "13812345678", "village_code": VILLAGE}
    assert requests.post(f"{outreach.url}/heads", json=body).status_code == 401
    assert requests.post(f"{outreach.url}/heads", json=body, headers=outreach.worker).status_code == 403
    elsewhere = outreach.as_("C-2", "village_cadre", OTHER_VILLAGE)
    assert requests.post(f"{outreach.url}/heads", json=body, headers=elsewhere).status_code == 403
    other_grid = outreach.as_(f"W-{OTHER_GRID}-1", "grid_worker", OTHER_GRID)
    r = requests.post(f"{outreach.url}/households", headers=other_grid, json={
        "village_code": VILLAGE, "grid_code": GRID, "address": "x", "phone": "13912345678", "grid_worker_id": WORKER})
    assert r.status_code == 403 and "outside your area" in r.json()["error"]
    assert outreach.count(Head) + outreach.count(Household) == 0


def test_every_read_of_a_household_is_recorded_and_a_head_reads_only_their_own(outreach):
    head, other = a_head(outreach), a_head(outreach, name="赵强")
    household = a_household(outreach, head_id=head).json()["id"]
    r = requests.get(f"{outreach.url}/households/{household}", headers=outreach.as_(head, "household_head", VILLAGE))
    assert r.status_code == 200
    assert (r.json()["members"][0]["name"], r.json()["key_groups"], r.json()["plans"][0]["every_days"]) == (
        "李桂英", ["elderly_alone"], 1)
    refused = requests.get(f"{outreach.url}/households/{household}",
                           headers=outreach.as_(other, "household_head", VILLAGE))
    assert refused.status_code == 403
    assert requests.get(f"{outreach.url}/households/{household}", headers=outreach.county).status_code == 200
    reads = outreach.rows(select(HouseholdRead.reader, HouseholdRead.role).order_by(HouseholdRead.id))
    assert [tuple(r) for r in reads] == [(head, "household_head"), ("D-9", "county_dispatcher")]


def test_a_head_deactivated_with_visits_pending_hands_them_to_the_grid_worker(outreach):
    head = a_head(outreach)
    household = a_household(outreach, head_id=head).json()["id"]
    [visit] = todays_visits(outreach, outreach.as_(head, "household_head", VILLAGE))
    assert (visit["level"], visit["responsible_id"], visit["household_id"]) == ("household_head", head, household)

    r = requests.post(f"{outreach.url}/heads/{head}/deactivate", headers=outreach.cadre)
    assert (r.status_code, r.json()["households_without_head"]) == (200, [household])
    [moved] = requests.get(f"{outreach.url}/visits", headers=outreach.worker).json()["visits"]
    assert (moved["id"], moved["level"], moved["responsible_id"], moved["due_at"]) == (
        visit["id"], "grid_worker", WORKER, visit["due_at"])  # the same deadline
    assert requests.get(f"{outreach.url}/visits", headers=outreach.as_(head, "household_head", VILLAGE)
                        ).json()["visits"] == []
    assert requests.get(f"{outreach.url}/households/{household}", headers=outreach.worker).json()["head_id"] is None


def test_a_household_moving_grid_takes_its_open_visits_with_it(outreach):
    household = a_household(outreach).json()["id"]
    todays_visits(outreach, outreach.worker)
    r = requests.patch(f"{outreach.url}/households/{household}", json={"grid_code": OTHER_GRID},
                       headers=outreach.worker)
    assert r.status_code == 400 and "grid_code" in r.json()["fields"]  # a move names its village too
    new_worker = f"W-{OTHER_GRID}-1"
    r = requests.patch(f"{outreach.url}/households/{household}", headers=outreach.cadre, json={
        "grid_code": OTHER_GRID, "village_code": VILLAGE, "grid_worker_id": new_worker})
    assert (r.status_code, r.json()["visits_moved"], r.json()["version"]) == (200, 1, 2), r.text
    [visit] = outreach.rows(select(Visit.grid_code, Visit.responsible_id, Visit.level))
    assert tuple(visit) == (OTHER_GRID, new_worker, 1)
    assert requests.get(f"{outreach.url}/visits", headers=outreach.worker).json()["visits"] == []


def test_a_visit_recorded_with_a_need_sends_it_to_intake_once_and_cannot_be_recorded_twice(outreach):
    a_household(outreach)
    [visit] = todays_visits(outreach, outreach.worker)
    bad = requests.post(f"{outreach.url}/visits/{visit['id']}/record", headers=outreach.worker,
                        json={"contact_made": True, "needs": [{"category": "", "description": "x"}]})
    assert bad.status_code == 400 and "needs" in bad.json()["fields"]
    r = requests.post(f"{outreach.url}/visits/{visit['id']}/record", headers=outreach.worker, json={
        "contact_made": True, "note": "老人说屋顶漏雨", "needs": [{"category": "R01", "description": "屋顶漏雨"}]})
    assert (r.status_code, r.json()["state"], r.json()["on_time"]) == (200, "done", True), r.text
    [need] = r.json()["needs"]
    [sent] = outreach.rows(select(OutboxRow.exchange, OutboxRow.routing_key, OutboxRow.event_id, OutboxRow.body)
                           .where(OutboxRow.exchange == "intake.submissions"))
    assert (sent.routing_key, sent.event_id) == ("submit.grid_visit", need)
    body = json.loads(sent.body)
    assert (body["channel"], body["resident"]["phone"], body["resident"]["vulnerable"], body["village_code"]) == (
        "grid_visit", "13912345678", True, VILLAGE)
    again = requests.post(f"{outreach.url}/visits/{visit['id']}/record", headers=outreach.worker,
                          json={"contact_made": True})
    assert again.status_code == 409 and "cannot be recorded again" in again.json()["error"]


def todays_visits(outreach, signed_in) -> list[dict]:
    """Today's visits the caller answers for, once there are any: the service opens today as it starts (its
    timer), and a plan registered after that makes today's visit at once; whichever came first, one visit."""
    found = wait_until(lambda: requests.get(f"{outreach.url}/visits", headers=signed_in).json()["visits"],
                       timeout=10, message="today's visits")
    assert {v["day"] for v in found} == {local_day(datetime.now(timezone.utc)).isoformat()}
    return found


def test_a_day_opens_once_and_an_operator_may_open_one_ahead(outreach):
    a_household(outreach)
    tomorrow = local_day(datetime.now(timezone.utc)) + timedelta(days=1)
    assert requests.post(f"{outreach.url}/days/{tomorrow}/open", headers=outreach.worker).status_code == 403
    opened = requests.post(f"{outreach.url}/days/{tomorrow}/open", headers=outreach.county)
    assert (opened.status_code, opened.json()["visits"]) == (200, 1), opened.text
    assert requests.post(f"{outreach.url}/days/{tomorrow}/open", headers=outreach.county).status_code == 409
    bad = requests.post(f"{outreach.url}/days/tomorrow/open", headers=outreach.county)
    assert bad.status_code == 400 and "day" in bad.json()["error"]
    days = sorted(v["day"] for v in requests.get(f"{outreach.url}/visits", headers=outreach.worker).json()["visits"])
    assert days == [local_day(datetime.now(timezone.utc)).isoformat(), tomorrow.isoformat()]


def test_retention_erases_who_departed_long_ago_and_keeps_the_record(outreach, db_url):
    """A household and a head deactivated more than RETENTION_DAYS ago lose what could name or reach anyone; the
    household's id, place and visits stay (the ledger still counts them), and so does the record of changes."""
    from sqlalchemy.orm import Session

    from services.common.database import make_engine as engine_of
    from services.outreach import retention
    head = a_head(outreach)
    gone = a_household(outreach, head_id=head, email="child@example.cn").json()["id"]
    kept = a_household(outreach).json()["id"]
    todays_visits(outreach, outreach.worker)
    assert requests.post(f"{outreach.url}/households/{gone}/deactivate", headers=outreach.worker).status_code == 200
    assert requests.post(f"{outreach.url}/heads/{head}/deactivate", headers=outreach.cadre).status_code == 200
    engine = engine_of(db_url)
    try:
        now = datetime.now(timezone.utc)
        with Session(engine) as s, s.begin():
            assert retention.forget(s, cutoff=now - timedelta(days=1), now=now) == 0  # not yet long enough ago
        with Session(engine) as s, s.begin():
            assert retention.forget(s, cutoff=now + timedelta(seconds=1), now=now) == 1
        with Session(engine) as s, s.begin():
            assert retention.forget(s, cutoff=now + timedelta(seconds=1), now=now) == 0  # once
    finally:
        engine.dispose()
    erased = requests.get(f"{outreach.url}/households/{gone}", headers=outreach.county).json()
    assert (erased["address"], erased["phone"], erased["email"], erased["key_groups"]) == ("", "", None, [])
    assert (erased["members"][0]["name"], erased["members"][0]["born"], erased["grid_code"]) == ("", None, GRID)
    assert requests.get(f"{outreach.url}/households/{kept}", headers=outreach.county).json()["phone"] == "13912345678"
    assert requests.get(f"{outreach.url}/heads/{head}", headers=outreach.cadre).json()["phone"] == ""
    assert len(outreach.rows(select(Visit.id).where(Visit.household_id == gone))) == 1  # cancelled, kept
    assert outreach.count(RegisterChange) >= 4
