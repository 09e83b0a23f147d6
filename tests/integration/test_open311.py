"""Open311 GeoReport v2 on intake: answers validate against the official schemas, in JSON and XML."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from services.common.migrations import upgrade
from services.intake.clients import key_hash
from services.intake.service import IntakeService
from tests.integration.conftest import UNHURRIED, start

SCHEMAS = Path(__file__).resolve().parent.parent / "open311_schemas"


def validator(name: str) -> Draft4Validator:
    resources = [(p.name, Resource.from_contents(json.loads(p.read_text()), default_specification=DRAFT4))
                 for p in SCHEMAS.glob("*.json")]
    registry = Registry().with_resources(resources)
    return Draft4Validator(json.loads((SCHEMAS / name).read_text()), registry=registry)


@pytest.fixture(scope="module")
def open311(amqp_uri, tmp_path_factory, keys):
    db_url = f"sqlite:///{tmp_path_factory.mktemp('open311') / 'intake.db'}"
    service = start(keys, IntakeService, amqp_uri, db_url)
    yield f"{service.url}/open311/v2"
    service.stop()


def test_the_service_list_is_the_93_categories_and_valid(open311):
    services = requests.get(f"{open311}/services.json").json()
    validator("services.json").validate(services)
    assert len(services) == 93
    daily_goods = next(s for s in services if s["service_code"] == "801")
    assert daily_goods["service_name"] == "生活物资代购配送" and daily_goods["type"] == "realtime"


def test_services_can_be_listed_in_english(open311):
    services = requests.get(f"{open311}/services.json", params={"locale": "en"}).json()
    assert next(s for s in services if s["service_code"] == "999")["service_name"].lower().startswith("other")


def test_every_service_definition_is_valid_and_lists_its_attributes(open311):
    services = requests.get(f"{open311}/services.json").json()
    check = validator("service-definition.json")
    with_attributes = [s for s in services if s["metadata"]]
    assert with_attributes, "the catalogue has categories with attributes"
    for s in with_attributes:
        definition = requests.get(f"{open311}/services/{s['service_code']}.json").json()
        check.validate(definition)
        assert definition["service_code"] == s["service_code"] and definition["attributes"]


def test_xml_answers_carry_the_same_services(open311):
    r = requests.get(f"{open311}/services.xml")
    assert r.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(r.content)
    assert root.tag == "services"
    assert len(root.findall("service")) == 93
    assert root.find("service/service_code").text == "101"


def test_discovery_names_the_endpoint_and_formats(open311):
    doc = requests.get(f"{open311}/discovery.json").json()
    assert doc["endpoints"][0]["url"] == open311
    assert set(doc["endpoints"][0]["formats"]) == {"text/xml", "application/json"}


@pytest.mark.parametrize("path, status, says", [
    ("/services/nope.json", 404, "service_code"),
    ("/services.yaml", 400, "format"),
    ("/services.json?locale=fr", 400, "locale"),
])
def test_errors_are_code_and_description(open311, path, status, says):
    r = requests.get(open311 + path)
    assert r.status_code == status
    errors = r.json()
    assert errors[0]["code"] == status and says in errors[0]["description"]


def test_an_unknown_service_in_xml_answers_an_xml_error(open311):
    r = requests.get(f"{open311}/services/nope.xml")
    assert r.status_code == 404
    assert ET.fromstring(r.content).find("error/code").text == "404"


# --- service requests ------------------------------------------------------------------------

KEY, STAFF_TOOL_KEY = "test-key", "staff-tool-key"  # a client, and one that may see more (staff tools)


def clients_file(directory) -> str:
    path = directory / "open311-clients.yaml"
    path.write_text(json.dumps({"clients": [
        {"name": "test-client", "key_sha256": key_hash(KEY), "rate_per_minute": 100_000, "burst": 1000},
        {"name": "staff-tool", "key_sha256": key_hash(STAFF_TOOL_KEY), "sees_more": True}], "public": UNHURRIED}))
    return str(path)
CATALOGUE = __import__("services.intake.catalogue", fromlist=["Catalogue"]).Catalogue.load()
WITH_REQUIRED = next(c for c in CATALOGUE.categories.values()
                     if any(a["required"] and a["datatype"] == "singlevaluelist" for a in c.attributes))
REQUIRED = next(a for a in WITH_REQUIRED.attributes if a["required"] and a["datatype"] == "singlevaluelist")


def valid_form(**changes) -> dict:
    form = {"api_key": KEY, "service_code": WITH_REQUIRED.code, "address_id": "341323104214",
            "description": "村口路灯坏了一个星期", "phone": "13812345678", "first_name": "秀英",
            "last_name": "王", f"attribute[{REQUIRED['code']}]": str(REQUIRED["values"][0]["key"])}
    for a in WITH_REQUIRED.attributes:  # every other required attribute, with a plausible value
        if a["required"] and a is not REQUIRED:
            form[f"attribute[{a['code']}]"] = str(a["values"][0]["key"]) if a.get("values") else (
                "1" if a["datatype"] == "number" else "2026-11-27T09:00:00+08:00" if a["datatype"] == "datetime" else "示例")
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


@pytest.fixture(scope="module")
def open311_post(amqp_uri, tmp_path_factory, keys):
    directory = tmp_path_factory.mktemp("open311post")
    service = start(keys, IntakeService, amqp_uri, f"sqlite:///{directory / 'intake.db'}",
                    OPEN311_CLIENTS=clients_file(directory))
    yield f"{service.url}/open311/v2"
    service.stop()


def test_a_posted_request_can_be_read_back_without_personal_data(open311_post):
    r = requests.post(f"{open311_post}/requests.json", data=valid_form(
        address_string="杨东村三组12号", lat="33.56017", long="117.54029"))
    assert r.status_code == 200, r.text
    request_id = r.json()[0]["service_request_id"]
    one = requests.get(f"{open311_post}/requests/{request_id}.json")
    validator("requests.json").validate(one.json())
    doc = one.json()[0]
    assert doc["service_code"] == WITH_REQUIRED.code and doc["status"] == "open"
    # the public sees the village, not the home: no words of the resident, no house, coordinates to 0.01°
    assert doc["address_id"] == "341323104214" and doc["address"] == "灵璧县杨疃镇杨东村委会"
    assert doc["description"] is None and (doc["lat"], doc["long"]) == (33.56, 117.54)
    assert "13812345678" not in one.text and "秀英" not in one.text and "村口路灯" not in one.text
    assert "12号" not in one.text
    ordinary = requests.get(f"{open311_post}/requests/{request_id}.json", params={"api_key": KEY})
    assert ordinary.status_code == 200 and ordinary.json()[0]["description"] is None  # sees no more
    wrong = requests.get(f"{open311_post}/requests/{request_id}.json", params={"api_key": "wrong-key"})
    assert wrong.status_code == 403 and "api_key" in wrong.json()[0]["description"]
    staff = requests.get(f"{open311_post}/requests/{request_id}.json", params={"api_key": STAFF_TOOL_KEY}).json()[0]
    assert staff["description"] == "村口路灯坏了一个星期" and staff["address"] == "杨东村三组12号"
    assert (staff["lat"], staff["long"]) == (33.56017, 117.54029)
    listed = requests.get(f"{open311_post}/requests.json", params={"service_code": WITH_REQUIRED.code})
    validator("requests.json").validate(listed.json())
    assert request_id in [d["service_request_id"] for d in listed.json()]
    assert "13812345678" not in listed.text
    token = r.json()[0]["token"]
    assert requests.get(f"{open311_post}/tokens/{token}.json").json()[0]["service_request_id"] == request_id


def test_a_village_named_in_the_address_string_places_the_request(open311_post):
    r = requests.post(f"{open311_post}/requests.json",
                      data=valid_form(address_id=None, address_string="灵璧县杨疃镇杨东村三组"))
    assert r.status_code == 200, r.text
    doc = requests.get(f"{open311_post}/requests/{r.json()[0]['service_request_id']}.json").json()[0]
    assert doc["address_id"] == "341323104214"


@pytest.mark.parametrize("where", [{}, {"address_string": "灵璧县城东边那条路上"}], ids=["point", "vague address"])
def test_a_map_point_alone_goes_to_the_nearest_county_to_be_placed(open311_post, where):
    r = requests.post(f"{open311_post}/requests.json",
                      data=valid_form(address_id=None, lat="33.5601", long="117.5402", **where))
    assert r.status_code == 200, r.text
    one = requests.get(f"{open311_post}/requests/{r.json()[0]['service_request_id']}.json")
    validator("requests.json").validate(one.json())
    doc = one.json()[0]
    assert doc["address_id"] is None and (doc["lat"], doc["long"]) == (33.56, 117.54)
    assert "县调度中心" in doc["status_notes"] and doc["address"] == "灵璧县"
    staff = requests.get(f"{open311_post}/requests/{doc['service_request_id']}.json",
                         params={"api_key": STAFF_TOOL_KEY}).json()[0]
    assert staff["address"] == where.get("address_string", "灵璧县 (33.56010, 117.54020) 待定位")


def test_xml_post_answers_in_xml(open311_post):
    r = requests.post(f"{open311_post}/requests.xml", data=valid_form())
    assert r.status_code == 200
    assert ET.fromstring(r.content).find("request/service_request_id").text.startswith("SDJ-")


@pytest.mark.parametrize("changes, status, says", [
    ({"api_key": None}, 403, "api_key"),
    ({"api_key": "wrong"}, 403, "api_key"),
    ({"service_code": "nope"}, 404, "service_code"),
    ({"service_code": None}, 400, "service_code"),
    ({f"attribute[{REQUIRED['code']}]": None}, 400, f"attribute[{REQUIRED['code']}]"),
    ({f"attribute[{REQUIRED['code']}]": "not-a-choice"}, 400, f"attribute[{REQUIRED['code']}]"),
    ({"attribute[made_up]": "x"}, 400, "attribute[made_up]"),
    ({"address_id": "341323999999"}, 400, "address_id"),
    ({"address_id": None}, 400, "address_id"),
    ({"address_id": None, "address_string": "火星基地"}, 400, "address_string"),
    ({"lat": "95", "long": "117"}, 400, "lat/long"),
    ({"lat": "39.9", "long": "116.4"}, 400, "outside Suzhou"),
    ({"lat": "abc", "long": "117"}, 400, "lat/long"),
    ({"lat": "33.5"}, 400, "lat/long"),
    ({"email": "not-an-email"}, 400, "email"),
    ({"phone": "12"}, 400, "phone"),
    ({"phone": "+1 415 555 0100"}, 400, "phone: not a mainland China number"),
    ({"phone": "1381234567"}, 400, "phone"),
    ({"first_name": "秀" * 51}, 400, "first_name"),
    ({"first_name": "秀" * 30, "last_name": "王" * 30}, 400, "last_name/first_name: together longer than 50"),
    ({"address_string": "杨东村" + "组" * 300}, 400, "address_string"),
    ({"media_url": "https://example.cn/" + "x" * 600}, 400, "media_url"),
    ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
    ({"description": "长" * 4001}, 400, "description"),
], ids=lambda v: str(v)[:40])
def test_a_bad_request_is_answered_with_the_field_and_why(open311_post, changes, status, says):
    r = requests.post(f"{open311_post}/requests.json", data=valid_form(**changes))
    assert r.status_code == status, r.text
    assert says in r.json()[0]["description"]
    assert r.json()[0]["code"] == status


def test_wrong_content_types_and_huge_bodies_are_refused_clearly(open311_post):
    r = requests.post(f"{open311_post}/requests.json", json=valid_form())
    assert r.status_code == 400 and "content type" in r.json()[0]["description"]
    r = requests.post(f"{open311_post}/requests.json", data={"api_key": KEY, "x": "y" * 70_000})
    assert r.status_code == 413 and r.json()[0]["description"].startswith("body: larger than")
    for raw in (b"api_key=\xff\xfe", b"api_key=%ff%fe&service_code=801"):
        r = requests.post(f"{open311_post}/requests.json", data=raw,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and r.json()[0]["description"].startswith("body: not valid UTF-8")


@pytest.mark.parametrize("query, says", [
    ({"start_date": "yesterday"}, "start_date"),
    ({"end_date": "2026-13-45"}, "end_date"),
    ({"status": "pending"}, "status"),
    ({"start_date": "2026-11-27T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"}, "start_date"),
    ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"}, "90 days"),
])
def test_bad_filters_are_answered_with_the_field(open311_post, query, says):
    r = requests.get(f"{open311_post}/requests.json", params=query)
    assert r.status_code == 400 and says in r.json()[0]["description"]


def test_status_filter_separates_open_and_closed(open311_post):
    requests.post(f"{open311_post}/requests.json", data=valid_form()).raise_for_status()
    assert requests.get(f"{open311_post}/requests.json", params={"status": "closed"}).json() == []
    assert requests.get(f"{open311_post}/requests.json", params={"status": "open"}).json()


@pytest.mark.parametrize("output_format", ["json", "xml"])
def test_an_independent_open311_client_lists_services_and_reads_requests(open311_post, output_format):
    from georeport import GeoReport
    client = GeoReport(open311_post, api_key=KEY, output_format=output_format)
    services = client.get_service_list()
    assert len(services) == 93
    assert {s["service_code"] for s in services} >= {"101", "801", "999"}
    definition = client.get_service_definition(WITH_REQUIRED.code)
    assert definition["service_code"] == WITH_REQUIRED.code
    posted = requests.post(f"{open311_post}/requests.json", data=valid_form()).json()[0]["service_request_id"]
    found = client.get_service_requests(service_request_id=posted)
    found = found if isinstance(found, list) else [found]  # xmltodict gives a dict for one element
    assert found[0]["service_request_id"] == posted and found[0]["status"] == "open"


def test_the_server_answers_what_it_refuses_by_itself_in_open311_s_format(open311_post):
    missing = requests.get(f"{open311_post}/nothing-here.json")
    assert missing.status_code == 404 and missing.json()[0]["code"] == 404
    xml = requests.get(f"{open311_post}/nothing-here.xml")
    assert xml.status_code == 404 and ET.fromstring(xml.content).find("error/code").text == "404"
    wrong_method = requests.delete(f"{open311_post}/services.json")
    assert wrong_method.status_code == 405 and wrong_method.json()[0]["code"] == 405
    too_long = requests.get(f"{open311_post}/requests.json", params={"service_code": "1" * 20_000})
    assert too_long.status_code == 414 and too_long.json()[0]["code"] == 414


def test_control_characters_never_reach_xml(open311_post):
    r = requests.post(f"{open311_post}/requests.xml", data=valid_form(address_string="杨东村\x01\x1b三组",
                                                                       phone="13900001234", description="控制字符"))
    assert r.status_code == 200, r.text
    number = ET.fromstring(r.content).find("request/service_request_id").text
    doc = requests.get(f"{open311_post}/requests/{number}.xml", params={"api_key": STAFF_TOOL_KEY})
    assert ET.fromstring(doc.content).find("request/address").text == "杨东村三组"


def test_a_client_over_its_rate_is_told_when_to_come_back(amqp_uri, tmp_path, keys):
    path = tmp_path / "clients.yaml"
    path.write_text(json.dumps({"clients": [{"name": "slow", "key_sha256": key_hash("slow-key"),
                                             "rate_per_minute": 1, "burst": 2}],
                                "public": {"rate_per_minute": 1, "burst": 3}}))
    service = start(keys, IntakeService, amqp_uri, f"sqlite:///{tmp_path / 'intake.db'}", OPEN311_CLIENTS=str(path))
    try:
        url = f"{service.url}/open311/v2/services.json"
        statuses = [requests.get(url, params={"api_key": "slow-key"}).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        public = [requests.get(url) for _ in range(4)]
        assert [r.status_code for r in public] == [200, 200, 200, 429]
        assert int(public[-1].headers["Retry-After"]) >= 1 and public[-1].json()[0]["code"] == 429
    finally:
        service.stop()


def test_intake_refuses_to_start_with_the_published_demo_key_unless_it_is_a_demo(amqp_uri, tmp_path, keys):
    path = tmp_path / "clients.yaml"
    path.write_text(json.dumps({"clients": [{"name": "lazy", "key_sha256": key_hash("songdaojia-demo-key")}]}))
    with pytest.raises(ValueError, match="demo key"):
        start(keys, IntakeService, amqp_uri, f"sqlite:///{tmp_path / 'intake.db'}", OPEN311_CLIENTS=str(path))
    demo = start(keys, IntakeService, amqp_uri, f"sqlite:///{tmp_path / 'demo.db'}", OPEN311_DEMO=True)
    try:
        r = requests.post(f"{demo.url}/open311/v2/requests.json", data=valid_form(api_key="songdaojia-demo-key"))
        assert r.status_code == 200, r.text
    finally:
        demo.stop()


def test_a_new_catalogue_version_is_served_without_a_code_change(amqp_uri, tmp_path, keys):
    import yaml
    from sqlalchemy import select
    from sqlalchemy.orm import Session
    from services.common.database import make_engine
    from services.intake.catalogue import read_document
    from services.intake.models import CatalogueVersion
    db_url = f"sqlite:///{tmp_path / 'intake.db'}"
    upgrade("intake", db_url)
    document = read_document()
    document["version"] = "2099.1.1"
    next(c for c in document["categories"] if c["code"] == "999")["name_zh"] = "其他诉求（新版）"
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    for catalogue_path in (None, path):  # the bundled version, then the new one
        service = start(keys, IntakeService, amqp_uri, db_url, CATALOGUE_PATH=catalogue_path and str(path))
        services = requests.get(f"{service.url}/open311/v2/services.json").json()
        service.stop()
    assert next(s for s in services if s["service_code"] == "999")["service_name"] == "其他诉求（新版）"
    engine = make_engine(db_url)
    with Session(engine) as s:
        assert set(s.scalars(select(CatalogueVersion.version))) == {read_document()["version"], "2099.1.1"}
    engine.dispose()


def test_a_changed_catalogue_with_the_same_version_is_refused_at_start(amqp_uri, tmp_path, keys):
    import yaml
    from services.intake.catalogue import read_document
    db_url = f"sqlite:///{tmp_path / 'intake.db'}"
    start(keys, IntakeService, amqp_uri, db_url).stop()
    document = read_document()
    document["categories"][0]["name_zh"] = "改了名字却没改版本"
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match="bump `version`"):
        start(keys, IntakeService, amqp_uri, db_url, CATALOGUE_PATH=str(path))
