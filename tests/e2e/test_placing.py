"""A request that came with a map point only: the county's dispatch centre places it, then the loop goes on."""
from __future__ import annotations

import requests

from services.dispatch.routing import console_binding
from services.dispatch.areas import AreaMap
from tests.amqp_helpers import Probe
from tests.waiting import wait_until

from .requests_helpers import case_in

LINGBI, YANGDONG = "341323", "341323104214"


def test_a_map_point_is_placed_by_the_county_centre_and_then_handled_in_the_village(running_stack):
    stack = running_stack.stack
    intake, dispatch = stack.http("intake"), stack.http("dispatch")
    areas = AreaMap.load()
    console = stack.uri("console-city")  # a console's login may bind its own area's subtree only
    county_console = Probe(console, "dispatch.work", console_binding(LINGBI, areas), passive=True)
    town_console = Probe(console, "dispatch.work", console_binding(YANGDONG[:9], areas), passive=True)
    volunteers = Probe(stack.uri("monitor"), "volunteer.events", passive=True)
    dispatch_events = Probe(stack.uri("monitor"), "dispatch.events", passive=True)
    centre = running_stack.token("D-lingbi-1", "county_dispatcher", LINGBI)
    town = running_stack.token("D-yangtuan-1", "town_dispatcher", YANGDONG[:9])

    r = requests.post(f"{intake}/open311/v2/requests.json", data={
        "api_key": stack.secrets.open311_key("county-portal"), "service_code": "801",
        "lat": "33.5601", "long": "117.5402",
        "description": "独居老人需要代购米面油", "email": "resident@village.example.cn",
        "attribute[items]": "staples"})
    assert r.status_code == 200, r.text
    ticket_no = r.json()[0]["service_request_id"]

    # offered to Lingbi's dispatch centre, on the county's work queue, not to any town's
    case = wait_until(lambda: case_in(dispatch, ticket_no, "offered", centre), message="offered to the county centre")
    assert (case["assignee_id"], case["village_code"], case["grid_code"]) == (f"centre-{LINGBI}", None, None)
    offers = wait_until(lambda: county_console.events("ticket_offered"), message="the county console's offer")
    assert offers[0]["data"]["work_key"] == f"area.3413.{LINGBI}.unplaced"
    assert town_console.events("ticket_offered") == []
    # "nearby" needs the village first: no volunteer asked (it would have been relayed before the offer)
    assert dispatch_events.events("volunteer_requested") == []
    assert requests.get(f"{dispatch}/queues/{LINGBI}", headers=centre).json()[0]["ticket_id"] == ticket_no
    assert requests.get(f"{dispatch}/queues/{LINGBI}", headers=town).status_code == 403

    # the centre looks at the point on its map and places it; a wrong code is refused by name
    assert requests.post(f"{dispatch}/tickets/{ticket_no}/place", json={"village_code": YANGDONG},
                         headers=town).status_code == 403  # a town dispatcher does not see county-level requests
    bad = requests.post(f"{dispatch}/tickets/{ticket_no}/place", json={"village_code": "341323104999"},
                        headers=centre)
    assert bad.status_code == 400 and "341323104999" in bad.json()["error"]
    placed = requests.post(f"{dispatch}/tickets/{ticket_no}/place", json={"village_code": YANGDONG}, headers=centre)
    assert placed.status_code == 200, placed.text
    case = placed.json()
    assert case["village_code"] == YANGDONG and case["grid_code"].startswith(f"{YANGDONG}-G")
    again = requests.post(f"{dispatch}/tickets/{ticket_no}/place", json={"village_code": YANGDONG}, headers=centre)
    assert again.status_code == 409

    # now the village's grid worker and a volunteer nearby have it; Open311 shows the village
    wait_until(lambda: [o for o in town_console.events("ticket_offered") if o["ticket_id"] == ticket_no],
               message="the offer on the town's work queue")
    wait_until(lambda: volunteers.events("volunteer_offered"), message="a volunteer offer")
    assert [e["data"]["village_code"] for e in dispatch_events.events("volunteer_requested")] == [YANGDONG]
    doc = wait_until(lambda: _open311(intake, ticket_no, YANGDONG), message="Open311 shows the village")
    assert doc["agency_responsible"] == f"网格员 {case['assignee_name']}"
    worker = running_stack.token(case["assignee_id"], "grid_worker", case["grid_code"])
    requests.post(f"{dispatch}/tickets/{ticket_no}/accept", headers=worker).raise_for_status()
    started = requests.post(f"{dispatch}/tickets/{ticket_no}/start", headers=worker)
    assert started.status_code == 200 and started.json()["state"] == "in_progress"
    wait_until(lambda: _open311(intake, ticket_no, YANGDONG, note="工作人员已上门办理"), message="in progress")
    ledger = requests.get(f"{dispatch}/ledger", headers=centre).json()
    assert ledger["by_county"] == {LINGBI: 1} and ledger["unplaced"] == 0
    for probe in (county_console, town_console, volunteers, dispatch_events):
        probe.close()


def _open311(intake: str, ticket_no: str, village: str, note: str = "已分派至网格"):
    doc = requests.get(f"{intake}/open311/v2/requests/{ticket_no}.json").json()[0]
    return doc if doc["address_id"] == village and doc["status_notes"] == note else None
