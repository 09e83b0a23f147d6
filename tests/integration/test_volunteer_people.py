"""Volunteers, neighbours and teams as people, on the real volunteer service: registered, edited and deactivated
over the authenticated API (bad input a 400 naming the field, nothing half-written, nothing deleted); a
volunteer edits their own availability; and matching offers a ticket only to who is active and available at the
time, from the moment the register changed."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import func, select

from services.common.database import make_engine
from services.dispatch import events as dispatch_events
from services.volunteer.models import TeamRow, VolunteerRow
from services.volunteer.service import VolunteerService
from tests.amqp_helpers import Probe, publish_event
from tests.waiting import wait_until

REQUESTED = dispatch_events.EXAMPLES["volunteer_requested"]  # skill delivery, village 341323104214
VILLAGE = REQUESTED["data"]["village_code"]
OTHER_TOWN_VILLAGE = "341323105001"
CHINA = timezone(timedelta(hours=8))


@pytest.fixture
def volunteer(fresh_vhost_uri, sqlite_url, start_service, keys):
    started = start_service(VolunteerService, fresh_vhost_uri, sqlite_url)
    engine = make_engine(sqlite_url)
    probe = Probe(fresh_vhost_uri, "volunteer.events")

    def count(table):
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()

    def as_(subject, role, area):
        return {"Authorization": f"Bearer {keys.token(subject, role, area)}"}
    yield SimpleNamespace(url=started.url, count=count, probe=probe, as_=as_, uri=fresh_vhost_uri,
                          cadre=as_(f"C-{VILLAGE}-1", "village_cadre", VILLAGE))
    probe.close()
    engine.dispose()


def person(**changes) -> dict:
    return {"name": "刘建国", "phone": "138-1234-5678", "village_code": VILLAGE, "skills": ["delivery", "errand"],
            "max_load": 2, "party_member": True, **changes}


def offered_to(volunteer, ticket: str) -> str:
    """Ask for a volunteer for `ticket` (as dispatch does); who was offered it, "" for nobody."""
    publish_event(volunteer.uri, "dispatch", REQUESTED, ticket)

    def answer():
        for e in volunteer.probe.poll():
            if e["ticket_id"] == ticket and e["event"] in ("volunteer_offered", "match_failed"):
                return e["data"].get("volunteer_id", "") or "nobody"
    found = wait_until(answer, timeout=20, message=f"an answer for {ticket}")
    return "" if found == "nobody" else found


@pytest.mark.parametrize("changes, field", [
    ({"village_code": "3413"}, "village_code"), ({"skills": ["juggling"]}, "skills"), ({"skills": []}, "skills"),
    ({"phone": "12345"}, "phone"), ({"max_load": 0}, "max_load"), ({"kind": "robot"}, "kind"),
    ({"availability": [{"days": [1], "from": "21:00", "to": "18:00"}]}, "availability"),
    ({"availability": [{"days": [8], "from": "08:00", "to": "18:00"}]}, "availability"),
    ({"team_id": "TNOSUCH"}, "team_id"), ({"nickname": "x"}, "nickname"),
])
def test_bad_input_is_400_naming_the_field_and_nothing_is_written(volunteer, changes, field):
    r = requests.post(f"{volunteer.url}/volunteers", json=person(**changes), headers=volunteer.cadre)
    assert r.status_code == 400 and field in r.json()["fields"], r.text
    assert volunteer.count(VolunteerRow) == 0


def test_who_may_register_and_edit(volunteer):
    assert requests.post(f"{volunteer.url}/volunteers", json=person()).status_code == 401
    grid_worker = volunteer.as_(f"W-{VILLAGE}-G10-1", "grid_worker", f"{VILLAGE}-G10")
    assert requests.post(f"{volunteer.url}/volunteers", json=person(), headers=grid_worker).status_code == 403
    elsewhere = volunteer.as_("C-2", "village_cadre", OTHER_TOWN_VILLAGE)
    assert requests.post(f"{volunteer.url}/volunteers", json=person(), headers=elsewhere).status_code == 403
    vid = requests.post(f"{volunteer.url}/volunteers", json=person(), headers=volunteer.cadre).json()["id"]
    themself = volunteer.as_(vid, "volunteer", VILLAGE)
    own = {"availability": [{"days": [6, 7], "from": "08:00", "to": "12:00"}], "offers": "周末可以帮忙买菜"}
    r = requests.patch(f"{volunteer.url}/volunteers/{vid}", json=own, headers=themself)
    assert (r.status_code, r.json()["offers"]) == (200, "周末可以帮忙买菜")
    assert requests.patch(f"{volunteer.url}/volunteers/{vid}", json={"max_load": 9},
                          headers=themself).status_code == 403  # only their phone, availability and offer


def test_matching_follows_the_register_at_once_active_and_available(volunteer):
    r = requests.post(f"{volunteer.url}/volunteers", headers=volunteer.cadre, json=person())
    assert (r.status_code, r.json()["phone"], r.json()["kind"]) == (201, "13812345678", "volunteer"), r.text
    vid = r.json()["id"]
    assert offered_to(volunteer, "SDJ-PEOPLE-001") == vid  # proposed as soon as registered

    now = datetime.now(CHINA)
    not_now = [{"days": [(now + timedelta(days=2)).isoweekday()], "from": "00:00", "to": "24:00"}]
    r = requests.patch(f"{volunteer.url}/volunteers/{vid}", json={"availability": not_now},
                       headers=volunteer.as_(vid, "volunteer", VILLAGE))
    assert r.status_code == 200, r.text
    assert offered_to(volunteer, "SDJ-PEOPLE-002") == ""  # not available today: passed over

    every_day = [{"days": [1, 2, 3, 4, 5, 6, 7], "from": "00:00", "to": "24:00"}]
    requests.patch(f"{volunteer.url}/volunteers/{vid}", json={"availability": every_day}, headers=volunteer.cadre)
    assert offered_to(volunteer, "SDJ-PEOPLE-003") == vid

    r = requests.post(f"{volunteer.url}/volunteers/{vid}/deactivate", headers=volunteer.cadre)
    assert (r.status_code, r.json()["active"]) == (200, False)
    assert requests.post(f"{volunteer.url}/volunteers/{vid}/deactivate", headers=volunteer.cadre).status_code == 409
    assert offered_to(volunteer, "SDJ-PEOPLE-004") == ""  # never offered again
    assert volunteer.count(VolunteerRow) == 1  # nothing deleted


def test_a_team_with_its_leader_and_members_and_a_neighbour_offering_help(volunteer):
    leader, member = (requests.post(f"{volunteer.url}/volunteers", json=person(name=name), headers=volunteer.cadre)
                      .json()["id"] for name in ("张队长", "李明"))
    far = requests.post(f"{volunteer.url}/volunteers", headers=volunteer.as_("D-1", "county_dispatcher", "341323"),
                        json=person(village_code=OTHER_TOWN_VILLAGE)).json()["id"]
    team = {"name": "杨东村红马甲志愿服务队", "village_code": VILLAGE, "leader_id": leader, "members": [member]}
    r = requests.post(f"{volunteer.url}/teams", json={**team, "members": [member, far]}, headers=volunteer.cadre)
    assert r.status_code == 400 and "members" in r.json()["fields"]
    r = requests.post(f"{volunteer.url}/teams", json={**team, "leader_id": "VNOSUCH"}, headers=volunteer.cadre)
    assert r.status_code == 400 and "leader_id" in r.json()["fields"]
    assert volunteer.count(TeamRow) == 0
    r = requests.post(f"{volunteer.url}/teams", json=team, headers=volunteer.cadre)
    assert r.status_code == 201, r.text
    team_id = r.json()["id"]
    shown = requests.get(f"{volunteer.url}/teams/{team_id}", headers=volunteer.cadre).json()
    assert (shown["leader_id"], sorted(m["id"] for m in shown["members"])) == (leader, sorted([leader, member]))
    r = requests.patch(f"{volunteer.url}/teams/{team_id}", json={"leader_id": far}, headers=volunteer.cadre)
    assert r.status_code == 400 and "leader_id" in r.json()["fields"]  # not one of its members
    r = requests.patch(f"{volunteer.url}/teams/{team_id}", json={"leader_id": member, "name": "红马甲服务队"},
                       headers=volunteer.cadre)
    assert (r.status_code, r.json()["leader_id"], r.json()["name"]) == (200, member, "红马甲服务队")
    disband = f"{volunteer.url}/teams/{team_id}/deactivate"
    assert requests.post(disband, headers=volunteer.cadre).json()["active"] is False
    assert requests.post(disband, headers=volunteer.cadre).status_code == 409
    late = requests.post(f"{volunteer.url}/volunteers", json=person(team_id=team_id), headers=volunteer.cadre)
    assert late.status_code == 400 and "team_id" in late.json()["fields"]  # a disbanded team takes nobody new
    assert volunteer.count(TeamRow) == 1  # nothing deleted

    neighbour = requests.post(f"{volunteer.url}/volunteers", headers=volunteer.cadre, json=person(
        name="王大妈", kind="neighbour", skills=["elder_care"], offers="每天给隔壁独居的李奶奶送一顿午饭",
        availability=[{"days": [1, 2, 3, 4, 5], "from": "11:00", "to": "13:00"}]))
    assert neighbour.status_code == 201, neighbour.text
    assert (neighbour.json()["kind"], neighbour.json()["team_id"], neighbour.json()["availability"]) == (
        "neighbour", "", [{"days": [1, 2, 3, 4, 5], "from": "11:00", "to": "13:00"}])
