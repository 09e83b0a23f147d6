"""The envelope: strict when a producer seals an event, clear errors when a consumer opens one."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from services.common.envelope import (Event, MalformedEvent, open_envelope, read_data, seal)
from services.dispatch.events import SCHEMAS as DISPATCH_EVENTS
from services.dispatch.schemas import FeedbackIn
from services.volunteer.schemas import VolunteerRequestedIn

TICKET = "SDJ-261127-7KQ2M4XA"
AT = datetime(2026, 11, 27, 9, 0, tzinfo=timezone(timedelta(hours=8)))  # 01:00 UTC
EVENT_ID = "0f5d2b8e-3c1a-4e47-9a8e-2d6b1c0e9f21"


def volunteer_requested(**changes) -> Event:
    data = {"skill": "delivery", "village_code": "341323104214", "town_code": "341323104",
            "priority": 1, "exclude": []}
    data.update(changes)
    return Event("volunteer_requested", TICKET, data, occurred_at=AT, event_id=EVENT_ID)


def test_seal_gives_the_wire_form_in_utc_with_the_ticket_as_correlation():
    wire = json.loads(seal(volunteer_requested(), DISPATCH_EVENTS))
    assert wire == {
        "event_id": EVENT_ID, "event": "volunteer_requested", "version": 1,
        "occurred_at": "2026-11-27T01:00:00+00:00", "ticket_id": TICKET, "correlation_id": TICKET,
        "data": {"skill": "delivery", "village_code": "341323104214", "town_code": "341323104",
                 "priority": 1, "exclude": []},
    }


def test_seal_refuses_an_event_the_service_does_not_declare():
    event = Event("ticket_teleported", TICKET, {})
    with pytest.raises(ValueError, match="'ticket_teleported' is not declared by this service"):
        seal(event, DISPATCH_EVENTS)


def test_seal_refuses_bad_data_naming_the_field():
    with pytest.raises(ValidationError) as caught:
        seal(volunteer_requested(priority="urgent"), DISPATCH_EVENTS)
    assert caught.value.messages == {"data": {"priority": ["Not a valid integer."]}}


def test_seal_refuses_missing_and_unknown_fields_naming_each():
    event = Event("volunteer_requested", TICKET, {"skill": "delivery", "village_code": "341323104214",
                                                  "town_code": "341323104", "exclude": [], "urgent": True})
    with pytest.raises(ValidationError) as caught:
        seal(event, DISPATCH_EVENTS)
    assert caught.value.messages == {"data": {"priority": ["Missing data for required field."],
                                              "urgent": ["Unknown field."]}}


@pytest.mark.parametrize("encode", [
    lambda wire: json.dumps(wire, ensure_ascii=False).encode("utf-8"),
    lambda wire: json.dumps(wire, ensure_ascii=False),
    lambda wire: wire,
], ids=["bytes", "str", "dict"])
def test_a_sealed_event_opens_again_unchanged(encode):
    wire = json.loads(seal(volunteer_requested(exclude=["V004211"]), DISPATCH_EVENTS))
    envelope = open_envelope(encode(wire))
    assert envelope["event_id"] == uuid.UUID(EVENT_ID)
    assert envelope["event"] == "volunteer_requested"
    assert envelope["version"] == 1
    assert envelope["occurred_at"] == AT
    assert envelope["ticket_id"] == envelope["correlation_id"] == TICKET
    assert envelope["data"] == wire["data"]
    assert read_data(envelope, VolunteerRequestedIn) == {
        "skill": "delivery", "village_code": "341323104214", "town_code": "341323104",
        "exclude": ["V004211"]}


def test_open_envelope_ignores_envelope_fields_it_does_not_know():
    wire = {**json.loads(seal(volunteer_requested(), DISPATCH_EVENTS)), "trace_id": "abc"}
    assert "trace_id" not in open_envelope(wire)


def test_open_envelope_refuses_bytes_that_are_not_utf8():
    with pytest.raises(MalformedEvent, match=r"^body is not UTF-8: .*byte 0xff in position 1"):
        open_envelope(b"{\xff}")


@pytest.mark.parametrize("body", ["not json", b"{'event': 1}"])
def test_open_envelope_refuses_text_that_is_not_json(body):
    with pytest.raises(MalformedEvent, match=r"^body is not JSON: .*line 1 column"):
        open_envelope(body)


def test_open_envelope_refuses_a_json_array():
    with pytest.raises(MalformedEvent, match="^body must be a JSON object, got list$"):
        open_envelope(b'[{"event": "ticket_closed"}]')


def test_open_envelope_names_a_missing_event_id():
    wire = json.loads(seal(volunteer_requested(), DISPATCH_EVENTS))
    del wire["event_id"]
    with pytest.raises(MalformedEvent) as caught:
        open_envelope(json.dumps(wire))
    assert str(caught.value) == "bad envelope: {'event_id': ['Missing data for required field.']}"


def test_open_envelope_names_a_malformed_event_id():
    wire = {**json.loads(seal(volunteer_requested(), DISPATCH_EVENTS)), "event_id": "42"}
    with pytest.raises(MalformedEvent) as caught:
        open_envelope(wire)
    assert str(caught.value) == "bad envelope: {'event_id': ['Not a valid UUID.']}"


def test_open_envelope_reads_a_time_without_offset_as_utc():
    wire = {**json.loads(seal(volunteer_requested(), DISPATCH_EVENTS)), "occurred_at": "2026-11-27T01:00:00"}
    assert open_envelope(wire)["occurred_at"] == AT


def test_read_data_names_the_missing_field_and_the_event():
    envelope = open_envelope({**json.loads(seal(volunteer_requested(), DISPATCH_EVENTS)), "event": "feedback_received",
                              "data": {"comment": "还没送到"}})
    with pytest.raises(MalformedEvent) as caught:
        read_data(envelope, FeedbackIn)
    assert str(caught.value) == ("feedback_received: bad data "
                                 "{'satisfied': ['Missing data for required field.']}")


def test_read_data_names_a_field_of_the_wrong_type():
    envelope = open_envelope({**json.loads(seal(volunteer_requested(), DISPATCH_EVENTS)),
                              "data": {"skill": "delivery", "village_code": "341323104214",
                                       "town_code": "341323104", "exclude": "V004211"}})
    with pytest.raises(MalformedEvent, match=r"volunteer_requested: bad data \{'exclude': \['Not a valid list.'\]\}"):
        read_data(envelope, VolunteerRequestedIn)
