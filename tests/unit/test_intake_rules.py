"""Intake's rules: phone numbers, ticket numbers, priority, catalogue look-up, and bad submissions."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from marshmallow import ValidationError

from services.common.envelope import MalformedEvent, seal
from services.common.messaging import Origin
from services.intake import attributes, places
from services.intake.catalogue import Catalogue, Category
from services.intake.contact_rules import mask_name, mask_phone, normalise_phone, phone_problem
from services.intake.events import SCHEMAS
from services.intake.intake import (InvalidRequest, category_for, channel_of, check_submitted_at, new_ticket_number,
                                    priority_of, ticket_received)
from services.intake.schemas import Submission
from services.intake.submissions import MAX_BODY, decode_submission

TICKET_NO = re.compile(r"^SDJ-(\d{6})-([23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{8})$")
ROUTINE = Category(code="107", name_zh="示例", name_en="Example", department="civil", group="household",
                   priority=3, accept_minutes=60, resolve_hours=72, follow_up_hours=48,
                   volunteer_skill=None, proxy=False)


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.load()


# --- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["+86 138 1234 5678", "0086-13812345678", "138-1234-5678",
                                 "13812345678", "+8613812345678", " 138 1234 5678 "])
def test_a_mobile_number_has_one_form_however_it_is_written(raw):
    assert normalise_phone(raw) == "13812345678"


def test_a_landline_keeps_its_area_code_as_digits():
    assert normalise_phone("0557-1234567") == "05571234567"
    assert normalise_phone("+86 0557 1234567") == "05571234567"


@pytest.mark.parametrize("raw", [None, ""])
def test_no_phone_is_none(raw):
    assert normalise_phone(raw) is None


@pytest.mark.parametrize("raw", ["13812345678", "+86 199 1234 5678", "0557-1234567", "010-12345678",
                                 "+86 10 1234 5678", "(0557) 123 4567"])
def test_mainland_mobiles_and_landlines_are_phone_numbers(raw):
    assert phone_problem(raw) is None


@pytest.mark.parametrize("raw, why", [
    ("12", "not a phone number"), ("call me", "not a phone number"),
    ("+1 415 555 0100", "not a mainland China"), ("10012345678", "not a mainland China"),
    ("1381234567", "not a mainland China"), ("123456789012", "not a mainland China"),
    ("0000000", "not a mainland China"), ("+44 20 7946 0958", "not a mainland China"),
])
def test_anything_else_is_not_a_phone_number(raw, why):
    assert why in phone_problem(raw)


def test_masks_show_at_most_the_last_four_digits_and_the_surname():
    assert mask_phone("13812345678") == "*******5678"
    assert mask_phone("05571234567") == "*******4567"
    assert mask_name("王秀英") == "王**"
    assert mask_phone(None) is None


# --- ticket numbers --------------------------------------------------------------------------


def test_ticket_number_carries_the_china_date_and_eight_unambiguous_characters():
    number = new_ticket_number(datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc))
    match = TICKET_NO.match(number)
    assert match, number
    assert match.group(1) == "261127"


def test_ticket_number_at_half_past_eleven_utc_is_already_the_next_day_in_china():
    number = new_ticket_number(datetime(2026, 11, 26, 23, 30, tzinfo=timezone.utc))
    assert number.startswith("SDJ-261127-")


def test_ticket_number_just_before_midnight_in_china_is_still_that_day():
    assert new_ticket_number(datetime(2026, 11, 26, 15, 59, tzinfo=timezone.utc)).startswith("SDJ-261126-")


def test_ticket_numbers_do_not_repeat():
    now = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)
    assert len({new_ticket_number(now) for _ in range(1000)}) == 1000


# --- priority and catalogue -------------------------------------------------------------------


def test_vulnerable_household_moves_up_one_priority_level():
    assert priority_of(ROUTINE, vulnerable=False) == 3
    assert priority_of(ROUTINE, vulnerable=True) == 2
    assert priority_of(replace(ROUTINE, priority=2), vulnerable=True) == 1


def test_priority_never_goes_above_one():
    assert priority_of(replace(ROUTINE, priority=1), vulnerable=True) == 1
    assert priority_of(replace(ROUTINE, priority=1), vulnerable=False) == 1


def test_category_for_a_known_code_comes_from_the_catalogue(catalogue):
    category = category_for("801", catalogue)
    assert (category.name_zh, category.department, category.priority) == ("生活物资代购配送", "civil", 1)
    assert (category.accept_minutes, category.resolve_hours, category.follow_up_hours) == (10, 2, 24)
    assert category.volunteer_skill == "delivery"


def test_category_for_an_unknown_code_is_refused_and_names_it(catalogue):
    assert catalogue.get("X42") is None
    with pytest.raises(InvalidRequest, match=r"^category: 'X42' is not in the service catalogue$"):
        category_for("X42", catalogue)


@pytest.mark.parametrize("routing_key, said, why", [
    ("submit.fax", "fax", "is not submit.<channel>"), ("other.hotline", "hotline", "is not submit.<channel>"),
    ("submit.wechat", "hotline", "'hotline' in the body, but the routing key says 'wechat'"),
])
def test_the_routing_key_names_a_channel_we_know_and_the_body_agrees(routing_key, said, why):
    with pytest.raises(InvalidRequest, match=re.escape(why)):
        channel_of(routing_key, said)
    assert channel_of("submit.hotline", "hotline") == "hotline"


def test_a_submission_from_the_future_is_refused_but_a_drifting_clock_is_not():
    now = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)
    assert check_submitted_at(now.replace(minute=4), now)
    with pytest.raises(InvalidRequest, match="submitted_at: .* is in the future"):
        check_submitted_at(now.replace(year=2030), now)


def test_a_multi_value_attribute_must_be_a_list_and_a_single_one_must_not(catalogue):
    goods = catalogue.get("801")  # items: a multi-value list
    assert attributes.of_submission({"items": ["staples"]}, goods) == {"items": ["staples"]}
    with pytest.raises(InvalidRequest, match=r"^attributes.items: must be a list of values$"):
        attributes.of_submission({"items": "staples"}, goods)
    single = next(c for c in catalogue.categories.values()
                  if any(a["datatype"] == "singlevaluelist" and a["required"] for a in c.attributes))
    code = next(a["code"] for a in single.attributes if a["datatype"] == "singlevaluelist" and a["required"])
    with pytest.raises(InvalidRequest, match=rf"^attributes.{code}: takes one value, not a list$"):
        attributes.of_submission({code: ["x"]}, single)


def test_a_number_attribute_must_be_a_finite_number(catalogue):
    category = next(c for c in catalogue.categories.values() if any(a["datatype"] == "number" for a in c.attributes))
    code = next(a["code"] for a in category.attributes if a["datatype"] == "number")
    for bad in ("1e309", "NaN", "x"):
        with pytest.raises(InvalidRequest, match="is not a number"):
            attributes.checked({code: [bad]}, category, str)


def test_ticket_received_passes_the_strict_producer_schema(catalogue):
    now = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)
    ticket = SimpleNamespace(id="SDJ-261127-7KQ2M4XA", channel="hotline", village_code="341323104214",
                             county_code="341323", address="杨东村三组", description="独居老人需要代购米面油",
                             lat=None, long=None, submitted_at=now, received_at=now, resident_id="r-4f1c",
                             contact_name="王秀英", contact_phone="13812341234", contact_email=None)
    event = ticket_received(ticket, category_for("801", catalogue), {"locale": "zh-CN", "vulnerable": True})
    wire = json.loads(seal(event, SCHEMAS))
    assert wire["ticket_id"] == wire["data"]["ticket_no"] == "SDJ-261127-7KQ2M4XA"
    assert wire["data"]["priority"] == 1
    assert wire["data"]["category"]["code"] == "801"
    assert wire["data"]["resident"]["vulnerable"] is True
    ticket.village_code, ticket.lat, ticket.long = None, 33.5601, 117.5402  # a map point, not yet placed
    unplaced = json.loads(seal(ticket_received(ticket, category_for("801", catalogue),
                                               {"locale": "zh-CN", "vulnerable": True}), SCHEMAS))
    assert (unplaced["data"]["village_code"], unplaced["data"]["county_code"]) == (None, "341323")


# --- submissions off the wire ----------------------------------------------------------------


def message(message_id="m-0001", content_type="application/json"):
    properties = {"message_id": message_id} if message_id is not None else {}
    return SimpleNamespace(properties=properties, content_type=content_type)


ORIGIN = Origin("songdaojia.publisher-channels", "submit.hotline")


def decode(body, msg):
    return decode_submission(body, msg, ORIGIN)


GOOD = {"channel": "hotline", "category": "801", "village_code": "341323104214",
        "description": "独居老人需要代购米面油", "submitted_at": "2026-11-27T01:00:00+00:00",
        "resident": {"name": "王秀英", "phone": "+86 138 1234 1234", "vulnerable": True}}


def test_a_good_submission_decodes_to_its_body_and_message_id():
    body = json.dumps(GOOD, ensure_ascii=False).encode("utf-8")
    assert decode(body, message("m-0001")) == (GOOD, "m-0001", None, ORIGIN)


@pytest.mark.parametrize("content_type", [None, ""])
def test_a_submission_without_content_type_is_read_as_json(content_type):
    assert decode(b'{"a": 1}', message(content_type=content_type)) == ({"a": 1}, "m-0001", None, ORIGIN)


@pytest.mark.parametrize("message_id", [None, ""])
def test_a_submission_without_message_id_is_refused(message_id):
    with pytest.raises(MalformedEvent, match=r"^message_id: missing"):
        decode(b"{}", message(message_id=message_id))


def test_a_submission_with_no_properties_at_all_is_refused():
    with pytest.raises(MalformedEvent, match=r"^message_id: missing"):
        decode(b"{}", SimpleNamespace(properties=None, content_type="application/json"))


def test_a_message_id_longer_than_100_characters_is_refused():
    with pytest.raises(MalformedEvent, match=r"^message_id: longer than 100 characters$"):
        decode(b"{}", message(message_id="m" * 101))


def test_a_submission_of_another_content_type_is_refused():
    with pytest.raises(MalformedEvent) as caught:
        decode(b"<xml/>", message(content_type="text/xml"))
    assert str(caught.value) == "content_type: 'text/xml', expected application/json"


def test_a_submission_that_is_not_utf8_is_refused_with_the_byte():
    with pytest.raises(MalformedEvent) as caught:
        decode('{"description": "代购"}'.encode("gbk"), message())
    assert str(caught.value) == "body: not UTF-8 (invalid start byte at byte 17)"


def test_a_submission_that_is_not_json_is_refused_with_the_position():
    with pytest.raises(MalformedEvent) as caught:
        decode(b'{"channel": hotline}', message())
    assert str(caught.value) == "body: not JSON (Expecting value at line 1 column 13)"


@pytest.mark.parametrize("body,kind", [(b"[1, 2]", "list"), (b'"text"', "str"), (b"null", "NoneType")])
def test_a_submission_that_is_not_a_json_object_is_refused(body, kind):
    with pytest.raises(MalformedEvent, match=rf"^body: must be a JSON object, got {kind}$"):
        decode(body, message())


def test_an_oversize_submission_is_refused_with_its_size():
    body = json.dumps({"description": "x" * MAX_BODY}).encode("utf-8")
    with pytest.raises(MalformedEvent) as caught:
        decode(body, message())
    assert str(caught.value) == f"body: {len(body)} bytes, the limit is 65536"


def test_a_submission_of_exactly_the_limit_is_accepted():
    padding = MAX_BODY - len(b'{"description": ""}')
    body = json.dumps({"description": "x" * padding}).encode("utf-8")
    assert len(body) == MAX_BODY
    assert decode(body, message())[0]["description"] == "x" * padding


# --- the submission form --------------------------------------------------------------------


def test_a_good_submission_loads_with_defaults():
    form = Submission().load(GOOD)
    assert form["submitted_at"] == datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)
    assert form["address"] == "" and form["attributes"] == {}
    assert form["resident"] == {"name": "王秀英", "phone": "13812341234", "email": None,
                                "locale": "zh-CN", "vulnerable": True}


def load_errors(**changes) -> dict:
    with pytest.raises(ValidationError) as caught:
        Submission().load({**GOOD, **changes})
    return caught.value.messages


@pytest.mark.parametrize("code", ["341323", "110101001001", "34132310421x", "3413231042145"])
def test_a_village_code_outside_suzhou_or_of_the_wrong_shape_is_refused(code):
    assert load_errors(village_code=code) == {
        "village_code": ["must be a 12-digit Suzhou (3413…) village code"]}


def test_an_unknown_channel_is_refused_listing_the_channels():
    assert load_errors(channel="fax") == {"channel": [
        "Must be one of: hotline, wechat, miniprogram, counter, grid_visit, night_talk."]}


def test_a_submission_without_resident_is_refused():
    form = {k: v for k, v in GOOD.items() if k != "resident"}
    with pytest.raises(ValidationError) as caught:
        Submission().load(form)
    assert caught.value.messages == {"resident": ["Missing data for required field."]}


def test_a_resident_without_phone_or_email_is_refused():
    assert load_errors(resident={"name": "王秀英"}) == {
        "resident": ["needs a phone or an email to acknowledge the resident"]}


def test_a_resident_reachable_by_email_alone_is_accepted():
    assert Submission().load({**GOOD, "resident": {"email": "wang@example.cn"}})["resident"]["email"] == \
        "wang@example.cn"


def test_a_bad_phone_and_a_naive_time_are_each_named():
    errors = load_errors(resident={"phone": "call me"}, submitted_at="2026-11-27T09:00:00")
    assert errors["resident"]["phone"] == ["not a phone number"]
    assert errors["submitted_at"] == ["Not a valid aware datetime."]


@pytest.mark.parametrize("written", ["0557-1234567", "+86 557 1234567", "0086 557-123-4567", "(0557) 123 4567"])
def test_a_landline_written_any_way_is_one_number(written):
    assert normalise_phone(written) == "05571234567"


# --- a map point alone ------------------------------------------------------------------------


@pytest.mark.parametrize("lat, long, county", [
    (34.43278, 116.59111, "砀山县"),   # 唐寨镇 (GeoNames), off the county's own centre
    (33.48936, 117.85679, "泗县"),     # 泗城镇
    (33.53766, 117.53357, "灵璧县"),   # 灵城镇
    (34.18448, 116.95077, "萧县"),     # 龙城镇
    (33.63611, 116.97889, "埇桥区"),   # 宿州 city
])
def test_a_point_goes_to_the_county_whose_centre_is_nearest(lat, long, county):
    assert places.load().nearest_county(lat, long).name == county
