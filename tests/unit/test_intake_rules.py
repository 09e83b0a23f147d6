"""Intake's rules: phone numbers, ticket numbers, priority, catalogue look-up, bad submissions, repeats,
the status mirror, and a resident withdrawing a request."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from marshmallow import ValidationError

from services.common.envelope import MalformedEvent, seal
from services.common.messaging import Origin
from services.intake import attributes, open311, places
from services.intake.catalogue import Catalogue, Category
from services.common.contacts import mask_name, mask_phone, normalise_phone, phone_problem
from services.intake.events import SCHEMAS
from services.intake.schemas import Submission, TicketStatusChange
from services.intake.status import LIFECYCLE_EVENTS, apply_status
from services.intake.tickets import (NO_REASON, CannotWithdraw, InvalidRequest, NotTheResident, category_for,
                                     category_info, channel_of, check_submission, check_submitted_at, may_join,
                                     new_ticket_number, original_of, priority_of, ticket_received, withdraw)
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
    assert (category.accept_minutes, category.resolve_hours, category.follow_up_hours) == (10, 1, 24)
    assert category.volunteer_skill == "delivery"


def test_goods_are_delivered_within_30_minutes_and_other_deadlines_are_their_hours(catalogue):
    assert catalogue.get("801").resolve_minutes == 30  # the seed's promise
    assert catalogue.get("652").resolve_minutes == catalogue.get("652").resolve_hours * 60
    assert ROUTINE.resolve_minutes == 72 * 60
    assert replace(ROUTINE, resolve_minutes=45).resolve_minutes == 45


def test_events_carry_the_resolve_deadline_in_minutes_and_hours_for_old_readers(catalogue):
    info = category_info(catalogue.get("801"))
    assert (info["resolve_minutes"], info["resolve_hours"]) == (30, 1)
    assert category_info(ROUTINE)["resolve_minutes"] == 4320


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


# --- what makes a submission acceptable, as a whole --------------------------------------------


class Villages:
    def village(self, code):
        return SimpleNamespace(code=code) if code == "341323104214" else None


SUBMITTED = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)


def submission(**changes) -> dict:
    return {**Submission().load(GOOD), "attributes": {"items": ["staples"]}, **changes}


def test_an_acceptable_submission_gives_its_channel_category_and_checked_attributes(catalogue):
    form = submission()
    channel, category = check_submission(form, "submit.hotline", catalogue, Villages(), SUBMITTED)
    assert (channel, category.code, form["attributes"]) == ("hotline", "801", {"items": ["staples"]})


@pytest.mark.parametrize("changes, routing_key, says", [
    ({}, "submit.wechat", "channel: 'hotline' in the body"),
    ({"submitted_at": SUBMITTED + timedelta(hours=1)}, "submit.hotline", "submitted_at: "),
    ({"category": "8010"}, "submit.hotline", "category: '8010' is not in the service catalogue"),
    ({"attributes": {"items": "staples"}}, "submit.hotline", "attributes.items: must be a list"),
    ({"village_code": "341323999999"}, "submit.hotline", "village_code: '341323999999' is not a village"),
])
def test_an_unacceptable_submission_names_what_is_wrong_and_raises_no_transport_error(
        catalogue, changes, routing_key, says):
    with pytest.raises(InvalidRequest) as caught:
        check_submission(submission(**changes), routing_key, catalogue, Villages(), SUBMITTED)
    assert str(caught.value).startswith(says)
    assert not isinstance(caught.value, MalformedEvent)  # the service maps it to the dead-letter queue


# --- repeats: which open ticket a request joins --------------------------------------------------


def open_ticket(id="SDJ-261127-AAAAAAAA", **changes):
    return SimpleNamespace(**{"id": id, "village_code": "341323104214", "category": "652", "merged_into": None,
                              "status": "offered", "resident_id": "r1", "description": "三组水管爆了",
                              "received_at": SUBMITTED - timedelta(hours=1), **changes})


LEAK = Category(code="652", name_zh="水管", name_en="Leak", department="watersupply", group="utilities",
                priority=1, accept_minutes=15, resolve_hours=8, follow_up_hours=24, volunteer_skill=None, proxy=False)
REPEAT = {"village_code": "341323104214", "description": "三组水管爆了"}


@pytest.mark.parametrize("changes, joins", [
    ({}, True),
    ({"status": "resolved"}, True),                                  # not ended yet: the resident may still say no
    ({"status": "closed"}, False),
    ({"status": "cancelled"}, False),                                # withdrawn: a new report is a new ticket
    ({"merged_into": "SDJ-261127-BBBBBBBB"}, False),                 # a repeat itself: join the one it joined
    ({"village_code": "341323104215"}, False),
    ({"category": "653"}, False),
    ({"received_at": SUBMITTED - timedelta(hours=73)}, False),       # outside the window
    ({"received_at": (SUBMITTED - timedelta(hours=1)).replace(tzinfo=None)}, True),  # as SQLite gives it back
])
def test_a_request_joins_only_an_open_ticket_of_its_category_and_village_within_the_window(changes, joins):
    ticket = open_ticket(**changes)
    assert may_join(ticket, "652", "341323104214", SUBMITTED) is joins
    assert (original_of(REPEAT, LEAK, "r2", [ticket], SUBMITTED) is ticket) is joins


def test_a_point_alone_is_never_a_repeat():
    assert original_of({**REPEAT, "village_code": None}, LEAK, "r1", [open_ticket()], SUBMITTED) is None


# --- the status mirror ------------------------------------------------------------------------


def mirrored(**changes):
    return SimpleNamespace(**{"status": "received", "status_version": 0, "village_code": "341323104214",
                              "grid_code": None, "assignee_id": None, "assignee_name": None, "expected_at": None,
                              "closed_at": None, "updated_at": None, **changes})


def change(state, version, **data):
    return TicketStatusChange().load({"state": state, "ticket_version": version, **data})


AT = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)
PATH = ["3413", "341323", "341323104", "341323104214", "341323104214-G10"]


@pytest.mark.parametrize("before, event, data, after", [
    # event name, (state, version, more data) -> (status, version, closed_at) afterwards
    ({}, "ticket_routed", ("routed", 1, {"area_path": PATH}), ("routed", 1, None)),
    ({"status": "accepted", "status_version": 3}, "ticket_routed", ("routed", 1, {}), ("accepted", 3, None)),
    ({"status": "accepted", "status_version": 3}, "ticket_accepted", ("accepted", 3, {}), ("accepted", 3, None)),
    ({"status": "offered", "status_version": 2}, "ticket_escalated",
     ("escalated", 3, {"what": "accept", "level": 2}), ("escalated", 3, None)),
    ({"status": "accepted", "status_version": 3}, "ticket_returned", ("returned", 4, {"reason": "不归我管"}),
     ("returned", 4, None)),
    ({"status": "accepted", "status_version": 3}, "ticket_filed", ("filed", 4, {"department": "civil"}),
     ("filed", 4, None)),
    ({"status": "filed", "status_version": 4}, "ticket_decided", ("decided", 5, {"approved": True}),
     ("decided", 5, None)),
    ({"status": "offered", "status_version": 2}, "ticket_cancelled", ("cancelled", 3, {"by": "resident"}),
     ("cancelled", 3, AT)),
    ({"status": "followed_up", "status_version": 5}, "ticket_closed", ("closed", 6, {}), ("closed", 6, AT)),
    # final: nothing later moves a ticket out of closed or cancelled, whatever its version
    ({"status": "cancelled", "status_version": 3, "closed_at": AT}, "ticket_routed", ("routed", 4, {}),
     ("cancelled", 3, AT)),
    ({"status": "cancelled", "status_version": 3, "closed_at": AT}, "ticket_escalated", ("escalated", 9, {}),
     ("cancelled", 3, AT)),
    ({"status": "closed", "status_version": 6, "closed_at": AT}, "ticket_reopened", ("reopened", 7, {}),
     ("closed", 6, AT)),
    ({"status": "resolved", "status_version": 5}, "ticket_reopened", ("reopened", 7, {}), ("reopened", 7, None)),
])
def test_the_status_mirror_follows_dispatch_newer_versions_only_and_ended_stays_ended(before, event, data, after):
    ticket = mirrored(**before)
    state, version, more = data
    apply_status(ticket, event, change(state, version, **more), AT)
    assert (ticket.status, ticket.status_version, ticket.closed_at) == after


def test_the_mirror_follows_every_lifecycle_event_dispatch_now_publishes():
    assert {"ticket_escalated", "ticket_returned", "ticket_cancelled", "ticket_filed",
            "ticket_decided", "ticket_closed"} <= set(LIFECYCLE_EVENTS)


def test_a_placed_village_is_picked_up_even_from_an_older_event():
    ticket = mirrored(village_code=None, status="accepted", status_version=3)
    assert apply_status(ticket, "ticket_routed", change("routed", 1, area_path=PATH), AT) is False
    assert (ticket.village_code, ticket.status, ticket.grid_code) == ("341323104214", "accepted", None)


def test_routing_names_the_grid_and_the_assignee_and_acceptance_the_expected_time():
    ticket = mirrored()
    assert apply_status(ticket, "ticket_routed", change("routed", 1, area_path=PATH, assignee_id="W-1",
                                                        assignee_name="张伟"), AT)
    due = "2026-11-27T05:00:00+00:00"
    apply_status(ticket, "ticket_accepted", change("accepted", 3, resolve_due_at=due), AT + timedelta(minutes=5))
    assert (ticket.grid_code, ticket.assignee_name, ticket.expected_at.isoformat()) == (PATH[4], "张伟", due)
    assert ticket.updated_at == AT + timedelta(minutes=5)


def test_a_cancelled_request_is_closed_in_open311_s_words_and_says_it_was_withdrawn():
    ticket = mirrored(id="SDJ-261127-7KQ2M4XA", status="cancelled", category="801", description="", submitted_at=AT,
                      received_at=AT, address="", lat=None, long=None, media_url=None)
    doc = open311.request_document(ticket, None, "zh-CN", "杨东村")
    assert doc["status"] == "closed" and "撤" in doc["status_notes"]
    assert open311.request_document(mirrored(**{**vars(ticket), "status": "escalated"}), None, "zh-CN",
                                    "杨东村")["status"] == "open"


# --- a resident withdraws a request -------------------------------------------------------------


def withdrawable(**changes):
    return SimpleNamespace(**{"id": "SDJ-261127-7KQ2M4XA", "contact_phone": "13812341234",
                              "contact_email": "wang@example.cn", "merged_into": None, "status": "offered",
                              "cancel_requested_at": None, **changes})


@pytest.mark.parametrize("sender", ["13812341234", "+86 138 1234 1234", "WANG@example.cn"])
def test_the_ticket_s_own_contact_withdraws_it_once(sender):
    ticket = withdrawable()
    [event] = withdraw(ticket, sender, "邻居已帮忙买好了", AT)
    wire = json.loads(seal(event, SCHEMAS))
    assert (wire["event"], wire["ticket_id"]) == ("ticket_cancelled", ticket.id)
    assert wire["data"] == {"ticket_no": ticket.id, "by": "resident", "reason": "邻居已帮忙买好了"}
    assert ticket.cancel_requested_at == AT
    assert withdraw(ticket, sender, "再说一次", AT + timedelta(minutes=1)) == []  # dispatch was told already
    assert ticket.cancel_requested_at == AT


def test_a_withdrawal_without_a_reason_still_says_why():
    [event] = withdraw(withdrawable(), "13812341234", "  ", AT)
    assert json.loads(seal(event, SCHEMAS))["data"]["reason"] == NO_REASON


@pytest.mark.parametrize("sender", ["13900000000", "someone@example.cn", "", "1381234123"])
def test_anyone_else_withdraws_nothing_and_hears_no_name(sender):
    ticket = withdrawable()
    with pytest.raises(NotTheResident) as caught:
        withdraw(ticket, sender, "", AT)
    assert "13812341234" not in str(caught.value) and "wang" not in str(caught.value)
    assert ticket.cancel_requested_at is None


def test_a_repeat_withdraws_nothing_and_names_the_ticket_it_joined():
    with pytest.raises(CannotWithdraw, match="joined ticket SDJ-261127-BBBBBBBB"):
        withdraw(withdrawable(merged_into="SDJ-261127-BBBBBBBB", status="merged"), "13812341234", "", AT)


@pytest.mark.parametrize("status", ["resolved", "followed_up", "closed", "cancelled"])
def test_a_ticket_whose_work_is_done_or_that_ended_cannot_be_withdrawn(status):
    ticket = withdrawable(status=status)
    with pytest.raises(CannotWithdraw, match=f"is {status}"):
        withdraw(ticket, "13812341234", "", AT)
    assert ticket.cancel_requested_at is None


@pytest.mark.parametrize("status", ["received", "routed", "offered", "accepted", "in_progress", "escalated",
                                    "returned", "reopened"])
def test_an_open_ticket_can_be_withdrawn(status):
    assert len(withdraw(withdrawable(status=status), "13812341234", "", AT)) == 1
