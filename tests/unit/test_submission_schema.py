"""The JSON Schemas published for outside publishers say what intake really does.

submission.schema.json must give the verdict `schemas.Submission` gives on every body
below, except where intake needs data a schema cannot hold (the catalogue, the village
list, the calendar), and where intake is knowingly more lenient than the contract.
receipt.schema.json must accept every receipt intake sends.
"""
from __future__ import annotations

import ast
import copy
import json
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from jsonschema import Draft202012Validator
from marshmallow import ValidationError

from services.common.envelope import Envelope, Event, seal
from services.intake import events
from services.intake.tickets import receipt, rejection
from services.intake.schemas import CHANNELS, Contact, Submission
from services.intake.submissions import rejection_receipts
from tests.integration.test_intake_amqp import request as integration_request

ROOT = Path(__file__).resolve().parents[2]
SUBMISSION_SCHEMA = json.loads((ROOT / "services/intake/submission.schema.json").read_text(encoding="utf-8"))
RECEIPT_SCHEMA = json.loads((ROOT / "services/intake/receipt.schema.json").read_text(encoding="utf-8"))
SUBMISSION = Draft202012Validator(SUBMISSION_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
RECEIPT = Draft202012Validator(RECEIPT_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
DROP = object()


def body(resident: dict | None = None, **overrides) -> dict:
    """A good submission, changed (`resident` is merged into the resident): DROP removes a field."""
    value = {"channel": "hotline", "category": "801", "village_code": "341323104214", "address": "杨东村三组",
             "description": "独居老人需要代购米面油", "submitted_at": "2026-11-27T09:00:00+08:00",
             "resident": {"name": "王秀英", "phone": "13812345678", "vulnerable": True},
             "attributes": {"items": ["staples"]}}
    value["resident"].update(resident or {})
    value.update(overrides)
    for fields in (value, value["resident"]):
        for key in [k for k, v in fields.items() if v is DROP]:
            del fields[key]
    return value


def intake_accepts(value) -> bool:
    try:
        Submission().load(copy.deepcopy(value))
    except ValidationError:
        return False
    return True


def schema_accepts(value) -> bool:
    return SUBMISSION.is_valid(value)


ACCEPTED = {
    "as-in-the-readme": body(),
    "only-required-fields": body(resident={"name": DROP, "vulnerable": DROP}, address=DROP, attributes=DROP),
    "email-instead-of-phone": body(resident={"phone": DROP, "email": "wang@example.cn"}),
    "phone-and-email-no-name": body(resident={"name": None, "email": "wang.xy+sdj@mail.example.cn"}),
    "phone-null-email-given": body(resident={"phone": None, "email": "wang@example.cn"}),
    "phone-written-internationally": body(resident={"phone": "+86 138 1234 5678"}),
    "landline-with-hyphen": body(resident={"phone": "0557-1234567"}),
    "utc-with-fraction": body(submitted_at="2026-11-27T01:00:00.250Z"),
    "negative-offset": body(submitted_at="2026-11-26T20:00:00-05:00"),
    "unknown-fields-ignored": body(source_system="county-hotline", resident={"wechat_openid": "o-123"}),
    "english-not-vulnerable": body(channel="night_talk", resident={"locale": "en", "vulnerable": False}),
    "longest-fields": body(category="8" * 10, address="址" * 200, description="诉" * 2000,
                           resident={"name": "名" * 50}),
    "email-at-localhost": body(resident={"phone": DROP, "email": "clerk@localhost"}),
    "email-at-ip-literal": body(resident={"phone": DROP, "email": "clerk@[192.168.1.20]"}),
    "attributes-any-values": body(attributes={"items": ["staples", "vegetables"], "deliver_by": 3}),
}

REFUSED = {
    "no-channel": body(channel=DROP),
    "channel-not-in-list": body(channel="email"),
    "channel-null": body(channel=None),
    "category-empty": body(category=""),
    "category-too-long": body(category="8" * 11),
    "category-a-number": body(category=801),
    "village-code-short": body(village_code="12345"),
    "village-code-outside-suzhou": body(village_code="341223104214"),
    "village-code-a-number": body(village_code=341323104214),
    "no-description": body(description=DROP),
    "description-empty": body(description=""),
    "description-too-long": body(description="诉" * 2001),
    "address-null": body(address=None),
    "address-too-long": body(address="址" * 201),
    "no-submitted-at": body(submitted_at=DROP),
    "submitted-at-without-offset": body(submitted_at="2026-11-27T09:00:00"),
    "submitted-at-words": body(submitted_at="yesterday"),
    "submitted-at-hour-24": body(submitted_at="2026-11-27T24:00:00+08:00"),
    "submitted-at-trailing-newline": body(submitted_at="2026-11-27T09:00:00+08:00\n"),
    "no-resident": {k: v for k, v in body().items() if k != "resident"},
    "resident-null": {**body(), "resident": None},
    "resident-a-string": {**body(), "resident": "王秀英 13812345678"},
    "no-phone-no-email": body(resident={"phone": DROP}),
    "phone-and-email-null": body(resident={"phone": None, "email": None}),
    "phone-too-short": body(resident={"phone": "12345"}),
    "phone-with-letters": body(resident={"phone": "138abc45678"}),
    "email-without-at": body(resident={"phone": DROP, "email": "not-an-email"}),
    "email-one-letter-domain-end": body(resident={"phone": DROP, "email": "wang@example.c"}),
    "email-double-dot": body(resident={"phone": DROP, "email": "wang..xy@example.cn"}),
    "email-trailing-newline": body(resident={"phone": DROP, "email": "wang@example.cn\n"}),
    "name-too-long": body(resident={"name": "名" * 51}),
    "locale-not-offered": body(resident={"locale": "fr"}),
    "locale-null": body(resident={"locale": None}),
    "vulnerable-null": body(resident={"vulnerable": None}),
    "attributes-a-list": body(attributes=["staples"]),
    "attributes-null": body(attributes=None),
}

# intake reads these, the contract does not promise them (the schema's description says so)
LENIENT = {
    "vulnerable-as-string": body(resident={"vulnerable": "yes"}),
    "vulnerable-as-number": body(resident={"vulnerable": 1}),
    "submitted-at-with-space": body(submitted_at="2026-11-27 09:00:00+08:00"),
    "submitted-at-without-seconds": body(submitted_at="2026-11-27T09:00+08:00"),
    "submitted-at-iso-basic": body(submitted_at="20261127T090000+0800"),
    "email-not-ascii": body(resident={"phone": DROP, "email": "王秀英@例子.中国"}),
}

# the schema passes these; intake refuses them with data a schema cannot hold
CANNOT_KNOW = {
    "category-not-in-catalogue": (body(category="8010"), True),
    "village-that-does-not-exist": (body(village_code="341323999999"), True),
    "required-attribute-missing": (body(attributes={}), True),
    "not-on-the-calendar": (body(submitted_at="2026-02-30T09:00:00+08:00"), False),
}


def test_the_schemas_are_draft_2020_12_schemas_with_an_id():
    for schema in (SUBMISSION_SCHEMA, RECEIPT_SCHEMA):
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] and schema["title"] and schema["description"]
        Draft202012Validator.check_schema(schema)
    assert Draft202012Validator.FORMAT_CHECKER.conforms("not-a-uuid", "uuid") is False  # formats are checked


def properties(schema: dict, path: str = ""):
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}{name}", sub
        yield from properties(sub, f"{path}{name}.")


@pytest.mark.parametrize("schema", [SUBMISSION_SCHEMA, RECEIPT_SCHEMA], ids=["submission", "receipt"])
def test_every_property_is_described(schema):
    assert [path for path, sub in properties(schema) if not sub.get("description")] == []


def test_the_schema_names_the_fields_intake_reads_and_requires():
    top, resident = SUBMISSION_SCHEMA, SUBMISSION_SCHEMA["properties"]["resident"]
    assert set(top["properties"]) == set(Submission().fields)
    assert set(top["required"]) == {n for n, f in Submission().fields.items() if f.required}
    assert set(resident["properties"]) == set(Contact().fields)
    assert top["properties"]["channel"]["enum"] == list(CHANNELS)


def readme_submissions() -> list[dict]:
    """The request bodies in the README's section for outside systems."""
    section = ROOT.joinpath("README.md").read_text(encoding="utf-8").split("## For outside systems", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return [ast.literal_eval(node.args[1]) for node in ast.walk(ast.parse(code))
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "submit"]


def test_the_documented_examples_are_good_submissions():
    examples = SUBMISSION_SCHEMA["examples"] + readme_submissions() + [integration_request()]
    assert len(examples) == 4
    for example in examples:
        SUBMISSION.validate(example)
        assert intake_accepts(example)


@pytest.mark.parametrize("value", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_good_body_passes_both(value):
    assert (schema_accepts(value), intake_accepts(value)) == (True, True)


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_body_fails_both(value):
    assert (schema_accepts(value), intake_accepts(value)) == (False, False)


@pytest.mark.parametrize("value", LENIENT.values(), ids=LENIENT.keys())
def test_intake_is_more_lenient_than_the_contract_only_where_the_schema_says(value):
    assert (schema_accepts(value), intake_accepts(value)) == (False, True)


@pytest.mark.parametrize("value, marshmallow_accepts", CANNOT_KNOW.values(), ids=CANNOT_KNOW.keys())
def test_what_the_schema_cannot_know_it_lets_through(value, marshmallow_accepts):
    # refused on arrival all the same: see POISON in tests/integration/test_intake_amqp.py
    assert (schema_accepts(value), intake_accepts(value)) == (True, marshmallow_accepts)


# --- receipts ------------------------------------------------------------------------------------


def test_the_receipt_schema_shows_every_kind_of_receipt():
    assert RECEIPT_SCHEMA["examples"] == list(events.RECEIPT_EXAMPLES.values())
    assert events.EXAMPLES["submission_receipt"] in events.RECEIPT_EXAMPLES.values()


@pytest.mark.parametrize("kind", events.RECEIPT_EXAMPLES)
def test_every_receipt_example_is_what_intake_would_seal_and_the_schema_accepts(kind):
    envelope = events.RECEIPT_EXAMPLES[kind]
    assert envelope["data"]["status"] == kind
    Envelope().load(envelope)
    event = Event("submission_receipt", envelope["ticket_id"], envelope["data"],
                  correlation_id=envelope["correlation_id"], event_id=envelope["event_id"],
                  occurred_at=datetime.fromisoformat(envelope["occurred_at"]))
    assert json.loads(seal(event, events.SCHEMAS)) == envelope
    RECEIPT.validate(envelope)


def test_the_receipts_intake_builds_pass_the_schema():
    new = SimpleNamespace(id="SDJ-261127-7KQ2M4XA", merged_into=None)
    repeat = SimpleNamespace(id="SDJ-261127-9PW3RT6B", merged_into="SDJ-261127-7KQ2M4XA")
    built = [receipt(new, "m-1"), receipt(repeat, "m-2"), rejection("m-3", "body: not JSON (x at line 1 column 2)")]
    sealed = [json.loads(seal(event, events.SCHEMAS)) for event in built]
    for envelope in sealed:
        RECEIPT.validate(envelope)
    assert [e["data"]["status"] for e in sealed] == ["received", "merged", "rejected"]
    assert [e["correlation_id"] for e in sealed] == ["m-1", "m-2", "m-3"]


@pytest.mark.parametrize("data", [
    {"message_id": "m", "ticket_no": "SDJ-261127-7KQ2M4XA", "status": "rejected", "reason": "x"},
    {"message_id": "m", "ticket_no": None, "status": "rejected"},
    {"message_id": "m", "ticket_no": None, "status": "received"},
    {"message_id": "m", "ticket_no": "SDJ-261127-7KQ2M4XA", "status": "lost"},
    {"message_id": "m", "ticket_no": None, "status": "rejected", "reason": ""},
], ids=["rejected-with-ticket", "rejected-without-reason", "received-without-ticket", "unknown-status",
        "empty-reason"])
def test_a_receipt_that_makes_no_sense_is_refused_by_intake_and_the_schema(data):
    with pytest.raises(ValidationError):
        events.SubmissionReceipt().load(data)
    ticket_id = data["ticket_no"] or ""
    assert not RECEIPT.is_valid({**events.RECEIPT_EXAMPLES["received"], "ticket_id": ticket_id, "data": data})


def dead_letter(**properties):
    return SimpleNamespace(properties=properties)


def test_a_dead_letter_is_answered_on_reply_to_when_there_is_a_message_id_to_answer():
    [out] = rejection_receipts(dead_letter(message_id="m-9", reply_to="amq.gen-q"), "body: not JSON (…)")
    assert (out.exchange, out.routing_key, out.type) == ("", "amq.gen-q", "submission_receipt")
    envelope = json.loads(out.body)
    RECEIPT.validate(envelope)
    assert out.message_id == envelope["event_id"]
    assert envelope["data"] == {"message_id": "m-9", "ticket_no": None, "status": "rejected",
                                "reason": "body: not JSON (…)"}
    assert rejection_receipts(dead_letter(message_id="m-9"), "x") == []
    assert rejection_receipts(dead_letter(reply_to="amq.gen-q"), "x") == []
