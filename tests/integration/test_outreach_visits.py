"""outreach's day of visits on the real service, its deadlines scaled (SLA_SCALE): a visit made on time with a need
found, one missed and climbing head → grid worker → village where the cadre records it late, one still open;
and the ledger that counts them, with the key households nobody reached."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import select

from services.common.database import make_engine
from services.outreach.models import OutboxRow
from services.outreach.service import OutreachService
from tests.waiting import wait_until

VILLAGE, GRID = "341323104214", "341323104214-G10"
WORKER = f"W-{GRID}-1"
SCALE = 0.001  # a minute of the rules is 60 ms here
LONG, SHORT = 2880, 1  # due_minutes: 172.8 s (time to act in the test), 60 ms (missed at once)


@pytest.fixture
def outreach(fresh_vhost_uri, db_url, start_service, keys):
    started = start_service(OutreachService, fresh_vhost_uri, db_url, SLA_SCALE=SCALE,
                            VISIT_LADDER_MINUTES={"grid_worker": SHORT, "village": LONG})
    engine = make_engine(db_url)

    def as_(subject, role, area):
        return {"Authorization": f"Bearer {keys.token(subject, role, area)}"}
    yield SimpleNamespace(url=started.url, as_=as_, engine=engine, cadre=as_("C-1", "village_cadre", VILLAGE),
                          worker=as_(WORKER, "grid_worker", GRID), town=as_("D-1", "town_dispatcher", "341323104"))
    engine.dispose()


def register(outreach, due_minutes: int, head: str | None) -> str:
    r = requests.post(f"{outreach.url}/households", headers=outreach.worker, json={
        "village_code": VILLAGE, "grid_code": GRID, "address": "幸福路 1 号", "phone": "13912345678",
        "key_groups": ["elderly_alone"], "grid_worker_id": WORKER, "head_id": head,
        "plans": [{"kind": "phone", "every_days": 1, "due_minutes": due_minutes, "starts_on": "2026-01-01"}]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def visit_of(outreach, household: str, signed_in) -> dict:
    def found():
        listed = requests.get(f"{outreach.url}/visits", params={"state": "all"}, headers=signed_in).json()["visits"]
        return next((v for v in listed if v["household_id"] == household), None)
    return wait_until(found, timeout=10, message=f"the visit of {household}")


def test_a_day_of_visits_missed_escalated_recorded_and_counted(outreach):
    head = requests.post(f"{outreach.url}/heads", headers=outreach.cadre, json={
        "name": "王秀兰", "phone": "13812345678", "village_code": VILLAGE}).json()["id"]
    as_head = outreach.as_(head, "household_head", VILLAGE)
    made, missed = register(outreach, LONG, head), register(outreach, SHORT, head)
    open_ = register(outreach, LONG, None)

    visit = visit_of(outreach, made, as_head)
    r = requests.post(f"{outreach.url}/visits/{visit['id']}/record", headers=as_head, json={
        "contact_made": True, "needs": [{"category": "R01", "description": "屋顶漏雨"}]})
    assert (r.status_code, r.json()["on_time"]) == (200, True), r.text

    # missed at once: to the grid worker (60 ms), then to the village, where it has 172.8 s
    climbed = wait_until(lambda: (v := visit_of(outreach, missed, outreach.cadre))["level"] == "village" and v,
                         timeout=15, message="the missed visit at the village")
    assert (climbed["responsible_id"], climbed["missed"], climbed["state"]) == (VILLAGE, True, "due")
    assert requests.post(f"{outreach.url}/visits/{climbed['id']}/record", headers=as_head,
                         json={"contact_made": True}).status_code == 403  # no longer the head's
    r = requests.post(f"{outreach.url}/visits/{climbed['id']}/record", headers=outreach.cadre,
                      json={"contact_made": False, "note": "无人接听"})
    assert (r.status_code, r.json()["on_time"], r.json()["done_by"]) == (200, False, "C-1")

    with outreach.engine.connect() as conn:
        escalations = [json.loads(b)["data"] for b in conn.execute(
            select(OutboxRow.body).where(OutboxRow.routing_key == "visit_escalated").order_by(OutboxRow.id)).scalars()]
    assert [(e["from_level"], e["level"]) for e in escalations] == [("household_head", "grid_worker"),
                                                                   ("grid_worker", "village")]

    book = requests.get(f"{outreach.url}/ledger/visits", params={"area": VILLAGE, "level": "head"},
                        headers=outreach.town).json()
    totals = book["totals"]
    assert {k: totals[k] for k in ("due", "done", "on_time", "missed", "at_village", "contact_made", "needs_found",
                                   "open_overdue")} == {
        "due": 3, "done": 2, "on_time": 1, "missed": 1, "at_village": 1, "contact_made": 1, "needs_found": 1,
        "open_overdue": 0}
    assert (totals["done_rate"], totals["on_time_rate"], totals["needs_per_100"]) == (0.6667, 0.3333, 50.0)
    by_person = {row["key"]: (row["due"], row["done"], row["on_time"]) for row in book["rows"]}
    assert by_person == {head: (2, 2, 1), WORKER: (1, 0, 0)}  # the person each visit was made for
    # the missed one was tried (nobody answered) and the open one not yet: both not reached
    assert [h["household_id"] for h in book["not_reached"]] == sorted([missed, open_])
    assert requests.get(f"{outreach.url}/ledger/visits", params={"area": "341323"},
                        headers=outreach.town).status_code == 403  # outside the town
