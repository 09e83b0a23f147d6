"""A need found on a visit goes through intake's front door like any outside system's submission: outreach and
intake on one broker, the need becomes a grid_visit ticket for the household, and intake's receipt tells
outreach which (or, for a need intake cannot take, why not); a need sent twice makes one ticket."""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import select

from services.common.database import make_engine
from services.intake.models import Resident, Ticket
from services.intake.service import IntakeService
from services.outreach.schedules import local_day
from services.outreach.service import OutreachService
from tests.waiting import wait_until

VILLAGE, GRID = "341323104214", "341323104214-G10"
WORKER = f"W-{GRID}-1"


@pytest.fixture
def both(fresh_vhost_uri, sqlite_url, tmp_path, start_service, keys):
    intake_db = f"sqlite:///{tmp_path / 'intake.db'}"
    start_service(IntakeService, fresh_vhost_uri, intake_db)
    outreach = start_service(OutreachService, fresh_vhost_uri, sqlite_url)
    worker = {"Authorization": f"Bearer {keys.token(WORKER, 'grid_worker', GRID)}"}
    intake_engine = make_engine(intake_db)
    yield SimpleNamespace(url=outreach.url, worker=worker, intake=intake_engine)
    intake_engine.dispose()


def test_a_need_found_becomes_a_ticket_and_outreach_learns_which(both):
    r = requests.post(f"{both.url}/households", headers=both.worker, json={
        "village_code": VILLAGE, "grid_code": GRID, "address": "杨东村三组 7 号", "phone": "13912345678",
        "key_groups": ["elderly_alone"], "grid_worker_id": WORKER,
        "plans": [{"kind": "door", "every_days": 7, "due_minutes": 1080,
                   "starts_on": local_day(datetime.now(timezone.utc)).isoformat()}]})  # weekly, from today
    assert r.status_code == 201, r.text
    visit = wait_until(lambda: requests.get(f"{both.url}/visits", headers=both.worker).json()["visits"],
                       timeout=10, message="today's visit")[0]
    r = requests.post(f"{both.url}/visits/{visit['id']}/record", headers=both.worker, json={
        "contact_made": True, "needs": [
            {"category": "105", "description": "孙子返乡想办就业登记"},
            {"category": "8010", "description": "不在目录里的诉求"}]})
    assert r.status_code == 200, r.text
    taken, refused = r.json()["needs"]

    def needs():
        found = {n["id"]: n for n in requests.get(f"{both.url}/needs", params={"area": GRID},
                                                  headers=both.worker).json()["needs"]}
        return found if found[taken]["status"] != "sent" and found[refused]["status"] != "sent" else None
    found = wait_until(needs, timeout=20, message="intake's receipts")
    assert found[taken]["status"] == "received" and found[taken]["ticket_no"].startswith("SDJ-")
    assert found[refused]["status"] == "rejected" and "8010" in found[refused]["reason"]

    with both.intake.connect() as conn:
        [ticket] = conn.execute(select(Ticket).where(Ticket.message_id == taken)).all()
    assert (ticket.id, ticket.channel, ticket.village_code, ticket.category) == (
        found[taken]["ticket_no"], "grid_visit", VILLAGE, "105")


def test_a_night_talk_s_needs_and_opinions_become_tickets_an_opinion_answered_to_the_village(both, keys):
    """乡村夜话: a villager's need is that villager's ticket; a group's opinion has no villager behind it and is
    acknowledged to the village committee, at the contact the record gives."""
    cadre = {"Authorization": f"Bearer {keys.token(f'C-{VILLAGE}-1', 'village_cadre', VILLAGE)}"}
    talk = {"village_code": VILLAGE, "held_on": local_day(datetime.now(timezone.utc)).isoformat(), "host": "村支书 张明",
            "attendance": 46, "village_phone": "0557-6012345", "village_email": "yangdong@village.example.cn",
            "raised": [
                {"kind": "need", "category": "219", "description": "低保年审材料不会准备",
                 "resident": {"name": "李桂英", "phone": "13912345678"}},
                {"kind": "opinion", "category": "219", "description": "村里希望增设一处老年助餐点"}]}
    for bad, field in (({"raised": [{**talk["raised"][1], "resident": {"phone": "13912345678"}}]}, "raised"),
                       ({"raised": [{**talk["raised"][0], "resident": None}]}, "raised"),
                       ({"held_on": "2999-01-01"}, "held_on"), ({"attendance": 0}, "attendance")):
        r = requests.post(f"{both.url}/night-talks", headers=cadre, json={**talk, **bad})
        assert r.status_code == 400 and field in r.json()["fields"], (bad, r.text)
    assert requests.post(f"{both.url}/night-talks", headers=both.worker, json=talk).status_code == 403

    r = requests.post(f"{both.url}/night-talks", headers=cadre, json=talk)
    assert r.status_code == 201, r.text
    need, opinion = r.json()["needs"]

    def answered():
        [held] = requests.get(f"{both.url}/night-talks", params={"area": VILLAGE}, headers=cadre).json()["night_talks"]
        return held if all(item["status"] == "received" for item in held["raised"]) else None
    held = wait_until(answered, timeout=20, message="intake's receipts for what was raised")
    assert (held["attendance"], [i["kind"] for i in held["raised"]]) == (46, ["talk", "opinion"])  # as raised
    assert [i["id"] for i in held["raised"]] == [need, opinion]
    tickets = {i["id"]: i["ticket_no"] for i in held["raised"]}
    with both.intake.connect() as conn:
        made = {t.message_id: t for t in conn.execute(select(Ticket).where(Ticket.channel == "night_talk")).all()}
    assert set(made) == {need, opinion} and {made[k].id for k in made} == {tickets[need], tickets[opinion]}
    with both.intake.connect() as conn:
        reached = {message_id: conn.execute(select(Resident.phone, Resident.name).where(
            Resident.id == made[message_id].resident_id)).one() for message_id in made}
    assert tuple(reached[need]) == ("13912345678", "李桂英")
    assert tuple(reached[opinion]) == ("05576012345", "杨东村村民委员会")  # the village, not a villager
