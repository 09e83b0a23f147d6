"""Intake's AMQP front door, with the real service, broker and database (SQLite and PostgreSQL)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pika
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.common.amqp import ConfirmingPublisher, PublishFailed
from services.common.database import make_engine
from services.common.messaging import dead_letter_queue
from services.intake.client import IntakeClient
from services.intake.models import Resident, Ticket
from services.intake.service import IntakeService
from tests.amqp_helpers import Probe, amqp_queue_messages
from tests.waiting import wait_until


def request(**overrides) -> dict:
    body = {"channel": "hotline", "category": "801", "village_code": "341323104214",
            "address": "杨东村三组", "description": "独居老人需要代购米面油",
            "submitted_at": datetime.now(timezone.utc).isoformat(),
            "resident": {"name": "王秀英", "phone": "+86 138 1234 5678", "vulnerable": True},
            "attributes": {"items": ["staples"]}}
    body.update(overrides)
    return body


@pytest.fixture
def intake(fresh_vhost_uri, db_url, start_service):
    probe = Probe(fresh_vhost_uri, "intake.events")
    start_service(IntakeService, fresh_vhost_uri, db_url)
    engine = make_engine(db_url)
    client = IntakeClient(fresh_vhost_uri, source="test").__enter__()
    yield client, probe, engine, fresh_vhost_uri
    client.close()
    probe.close()
    engine.dispose()


def tickets(engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(Ticket))


def test_a_submission_becomes_a_ticket_and_ticket_received(intake):
    client, probe, engine, _ = intake
    client.submit("hotline", request())
    received = wait_until(lambda: probe.events("ticket_received"), message="ticket_received")
    data = received[0]["data"]
    assert data["ticket_no"] == received[0]["ticket_id"]
    assert data["category"]["volunteer_skill"] == "delivery"
    assert data["resident"]["phone"] == "13812345678"  # normalised
    assert data["priority"] == 1  # vulnerable household, already urgent
    assert tickets(engine) == 1


def test_the_same_message_id_never_makes_two_tickets(intake):
    client, probe, engine, _ = intake
    message_id, queue = str(uuid.uuid4()), client.receipt_queue()
    client.submit("wechat", request(channel="wechat"), message_id=message_id, reply_to=queue)
    client.submit("wechat", request(channel="wechat"), message_id=message_id, reply_to=queue)
    other = client.submit("counter", request(channel="counter", resident={"phone": "13900000009"},
                                             description="另一户：需要代购蔬菜和鸡蛋"), reply_to=queue)
    # a receipt per delivery, each written in the transaction that handled it: all three are done
    got = client.receipts(queue, count=3)
    assert [r["data"]["message_id"] for r in got].count(message_id) == 2
    copies = {r["data"]["ticket_no"] for r in got if r["data"]["message_id"] == message_id}
    assert len(copies) == 1 and copies != {r["data"]["ticket_no"] for r in got if r["data"]["message_id"] == other}
    assert tickets(engine) == 2
    assert len(probe.events("ticket_received")) == 2


def test_one_phone_number_is_one_resident_across_channels(intake):
    client, probe, engine, _ = intake
    client.submit("hotline", request(resident={"phone": "138-1234-5678"}))
    client.submit("wechat", request(channel="wechat", resident={"phone": "+8613812345678"},
                                    category="802", attributes={"prescription": "otc"}))  # another need
    got = wait_until(lambda: len(probe.events("ticket_received")) == 2 and probe.events("ticket_received"),
                     message="both tickets")
    assert got[0]["data"]["resident"]["id"] == got[1]["data"]["resident"]["id"]
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Resident)) == 1


POISON = [
    (b"\xff\xfe\x00", "application/json", "body: not UTF-8"),
    (b'{"channel": "hotline",', "application/json", "body: not JSON"),
    (b'["a list"]', "application/json", "must be a JSON object"),
    (json.dumps(request(village_code="12345")).encode(), "application/json", "village_code"),
    (json.dumps(request(village_code="341323999999")).encode(), "application/json", "not a village of Suzhou"),
    (json.dumps(request(category="nope")).encode(), "application/json", "category"),
    (json.dumps(request(resident={"name": "无联系方式"})).encode(), "application/json", "phone or an email"),
    (json.dumps(request()).encode(), "text/plain", "content_type"),
    (json.dumps(request(attributes={})).encode(), "application/json", "attributes.items: required"),
    (json.dumps(request(attributes={"items": ["gold"]})).encode(), "application/json", "attributes.items"),
    (json.dumps(request(attributes={"items": "staples"})).encode(), "application/json",
     "attributes.items: must be a list"),
    (json.dumps(request(resident={"phone": "+1 415 555 0100"})).encode(), "application/json", "mainland China"),
    (json.dumps(request(submitted_at="2031-01-01T00:00:00+08:00")).encode(), "application/json",
     "submitted_at: 2031-01-01T00:00:00+08:00 is in the future"),
    (json.dumps(request(channel="wechat")).encode(), "application/json", "the routing key says 'hotline'"),
]


@pytest.mark.parametrize("body, content_type, reason", POISON,
                         ids=["not-utf8", "truncated", "array", "bad-village", "no-such-village", "unknown-category",
                              "no-contact", "wrong-content-type", "missing-attribute", "attribute-not-in-list",
                              "list-attribute-as-string", "foreign-phone", "from-the-future", "channel-mismatch"])
def test_a_malformed_submission_is_dead_lettered_with_its_reason_and_the_next_one_is_processed(
        intake, body, content_type, reason):
    client, probe, engine, uri = intake
    client.publish_raw("submit.hotline", body, pika.BasicProperties(
        content_type=content_type, delivery_mode=2, message_id=str(uuid.uuid4())))
    client.submit("hotline", request(description="排在坏消息后面的正常诉求"))
    wait_until(lambda: probe.events("ticket_received"), message="the good submission")
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("intake")),
                      message="the poison in intake.dead-letter")
    assert dead[0].body == body
    assert reason in dead[0].headers["x-reason"]
    assert dead[0].headers["x-queue"] == "intake.submissions"
    assert tickets(engine) == 1


def test_a_routing_key_naming_no_channel_is_refused(intake):
    client, probe, engine, uri = intake
    client.publish_raw("submit.fax", json.dumps(request(channel="fax")).encode(), pika.BasicProperties(
        content_type="application/json", delivery_mode=2, message_id=str(uuid.uuid4())))
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("intake")), message="dead-lettered")
    assert "channel" in dead[0].headers["x-reason"] and tickets(engine) == 0


def test_a_submission_without_message_id_is_refused_with_the_reason(intake):
    client, probe, engine, uri = intake
    client.publish_raw("submit.hotline", json.dumps(request()).encode(),
                       pika.BasicProperties(content_type="application/json", delivery_mode=2))
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("intake")),
                      message="dead-lettered")
    assert "message_id: missing" in dead[0].headers["x-reason"]
    assert tickets(engine) == 0


# --- duplicates ----------------------------------------------------------------------------------

def test_the_same_resident_reporting_again_joins_the_open_ticket(intake):
    client, probe, engine, _ = intake
    client.submit("hotline", request())
    first = wait_until(lambda: probe.events("ticket_received"), message="the first ticket")[0]
    client.submit("wechat", request(channel="wechat", description="再催一下，米面油还没送来"))
    merged = wait_until(lambda: probe.events("ticket_merged"), message="the repeat merged")[0]
    assert merged["ticket_id"] == merged["data"]["ticket_no"] == first["ticket_id"]
    assert merged["data"]["resident"]["phone"] == "13812345678"
    assert len(probe.events("ticket_received")) == 1


def test_nearly_the_same_words_from_a_neighbour_join_the_open_ticket(intake):
    client, probe, _, _ = intake
    client.submit("hotline", request(category="652", description="杨东村三组自来水管爆了，水一直在流",
                                     attributes={}, resident={"phone": "13900000001"}))
    first = wait_until(lambda: probe.events("ticket_received"), message="the first ticket")[0]
    client.submit("counter", request(channel="counter", category="652", description="杨东村三组自来水管爆了！水一直在流。",
                                     attributes={}, resident={"phone": "13900000002"}))
    merged = wait_until(lambda: probe.events("ticket_merged"), message="the neighbour's report merged")[0]
    assert merged["data"]["ticket_no"] == first["ticket_id"]


@pytest.mark.parametrize("second", [
    {"category": "802", "attributes": {"prescription": "otc"}},  # same resident, another category
    {"village_code": "341323104215"},                    # same resident, another village
    {"resident": {"phone": "13900000003"}, "description": "我家也需要代购，要蔬菜"},  # another person, other words
], ids=["other-category", "other-village", "other-person-other-words"])
def test_distinct_requests_are_kept_apart(intake, second):
    client, probe, _, _ = intake
    client.submit("hotline", request())
    client.submit("hotline", request(**second))
    wait_until(lambda: len(probe.events("ticket_received")) == 2, message="two separate tickets")
    assert probe.events("ticket_merged") == []


# --- personal data -------------------------------------------------------------------------------

def test_the_contact_given_with_a_request_is_that_ticket_s_and_never_overwrites_another_s(intake):
    client, probe, engine, _ = intake
    client.submit("hotline", request(resident={"name": "王秀英", "phone": "13812345678", "email": "wang@example.cn"}))
    # the second is sent once the first is a ticket: sent at once, the two are worked side by side and either may
    # come first (that race is tests/integration/test_intake_residents.py's)
    wait_until(lambda: probe.events("ticket_received"), message="the first ticket")
    client.submit("counter", request(channel="counter", category="652", attributes={}, description="水管漏了",
                                     resident={"name": "冒充者", "phone": "13812345678", "email": "evil@example.cn"}))
    got = wait_until(lambda: len(probe.events("ticket_received")) == 2 and probe.events("ticket_received"),
                     message="both tickets")
    assert [(e["data"]["resident"]["name"], e["data"]["resident"]["email"]) for e in got] == [
        ("王秀英", "wang@example.cn"), ("冒充者", "evil@example.cn")]  # each told at the address it gave
    with Session(engine) as s:
        resident = s.scalar(select(Resident))
        assert (resident.name, resident.email) == ("王秀英", "wang@example.cn")
        first = s.get(Ticket, got[0]["ticket_id"])
        assert (first.contact_name, first.contact_email) == ("王秀英", "wang@example.cn")


def test_phone_numbers_never_reach_the_logs(intake, caplog):
    client, probe, _, uri = intake
    caplog.set_level("DEBUG")
    client.submit("hotline", request(village_code="341323999999"))          # dead-lettered
    client.submit("hotline", request(resident={"phone": "13812345678", "email": "bad"}))  # refused
    client.submit("hotline", request())
    wait_until(lambda: probe.events("ticket_received"), message="the good one")
    dead = []
    wait_until(lambda: dead.extend(amqp_queue_messages(uri, dead_letter_queue("intake"))) or len(dead) == 2,
               message="two dead letters")
    assert "dead-lettered" in caplog.text
    assert "13812345678" not in caplog.text and "1234 5678" not in caplog.text


def test_a_publisher_asking_for_a_receipt_gets_the_ticket_number_even_for_a_repeat(intake):
    client, probe, _, _ = intake
    queue = client.receipt_queue()
    first = client.submit("hotline", request(), reply_to=queue)
    receipts = {r["data"]["message_id"]: r["data"] for r in client.receipts(queue, count=1)}
    again = client.submit("hotline", request(), message_id=first, reply_to=queue)  # a re-send after a doubt
    repeat = client.submit("wechat", request(channel="wechat", description="米面油还没送到"), reply_to=queue)
    later = client.receipts(queue, count=2)
    receipts.update({r["data"]["message_id"]: r["data"] for r in later})
    ticket_no = wait_until(lambda: probe.events("ticket_received"), message="the ticket")[0]["ticket_id"]
    assert again == first and receipts[first] == {"message_id": first, "ticket_no": ticket_no, "status": "received"}
    assert sorted(r["data"]["message_id"] for r in later) == sorted([first, repeat])
    assert receipts[repeat] == {"message_id": repeat, "ticket_no": ticket_no, "status": "merged"}


# --- rejection receipts --------------------------------------------------------------------------

RECEIPT_SCHEMA = Draft202012Validator(json.loads(
    (Path(__file__).resolve().parents[2] / "services/intake/receipt.schema.json").read_text(encoding="utf-8")))


def publish_with_reply_to(client, body: bytes, queue: str) -> str:
    message_id = str(uuid.uuid4())
    client.publish_raw("submit.hotline", body, pika.BasicProperties(
        content_type="application/json", delivery_mode=2, message_id=message_id, reply_to=queue))
    return message_id


def receipts_by_message_id(client, queue: str, count: int) -> dict[str, dict]:
    got = client.receipts(queue, count=count)
    for receipt in got:
        RECEIPT_SCHEMA.validate(receipt)  # what outside systems are told to expect
    return {r["data"]["message_id"]: r for r in got}


@pytest.mark.parametrize("body, reason", [
    (json.dumps(request(category="nope")).encode(), "category: 'nope' is not in the service catalogue"),
    (b'{"channel": "hotline",', "body: not JSON"),
], ids=["unknown-category", "broken-json"])
def test_a_publisher_asking_for_receipts_hears_why_its_submission_was_rejected(intake, body, reason):
    client, probe, engine, uri = intake
    queue = client.receipt_queue()
    bad = publish_with_reply_to(client, body, queue)
    good = client.submit("hotline", request(description="排在坏消息后面的正常诉求"), reply_to=queue)
    receipts = receipts_by_message_id(client, queue, count=2)
    assert set(receipts) == {bad, good}
    rejected = receipts[bad]
    assert rejected["event"] == "submission_receipt" and rejected["correlation_id"] == bad
    assert rejected["ticket_id"] == "" and rejected["data"]["ticket_no"] is None
    assert rejected["data"]["status"] == "rejected" and reason in rejected["data"]["reason"]
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("intake")), message="the dead letter")
    assert [(m.properties.message_id, m.body) for m in dead] == [(bad, body)]
    assert dead[0].headers["x-reason"] == rejected["data"]["reason"]
    ticket_no = wait_until(lambda: probe.events("ticket_received"), message="the good ticket")[0]["ticket_id"]
    assert receipts[good]["data"] == {"message_id": good, "ticket_no": ticket_no, "status": "received"}
    assert tickets(engine) == 1


def test_a_submission_that_keeps_failing_is_rejected_once_retries_are_spent(intake, monkeypatch):
    client, _, _, uri = intake

    def broken(*_args, **_kwargs):
        raise RuntimeError("the database is having a bad day")

    monkeypatch.setattr(IntakeService, "_open_ticket", broken)
    queue = client.receipt_queue()
    message_id = client.submit("hotline", request(), reply_to=queue)
    receipt = receipts_by_message_id(client, queue, count=1)[message_id]
    assert receipt["data"]["status"] == "rejected"
    assert "error on our side" in receipt["data"]["reason"] and "bad day" not in receipt["data"]["reason"]
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("intake")), message="the dead letter")
    assert dead[0].headers["x-reason"].startswith("gave up after 2 attempts; last error RuntimeError")


def test_a_rejection_that_cannot_be_published_leaves_the_message_to_be_tried_again(intake, monkeypatch):
    client, _, _, uri = intake
    queue = client.receipt_queue()
    refused, publish = [], ConfirmingPublisher.publish

    def refuse_the_first_rejection(self, batch):
        if not refused and any(out.routing_key == queue for out in batch):
            refused.append(batch)
            raise PublishFailed("broker went away")
        publish(self, batch)

    monkeypatch.setattr(ConfirmingPublisher, "publish", refuse_the_first_rejection)
    bad = publish_with_reply_to(client, json.dumps(request(category="nope")).encode(), queue)
    receipt = receipts_by_message_id(client, queue, count=1)[bad]
    assert [(out.exchange, out.routing_key) for out in refused[0]] == [("intake.parking", "dead-letter"),
                                                                       ("", queue)]  # one batch
    assert receipt["data"]["status"] == "rejected"
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("intake")), message="the dead letter")
    assert [m.properties.message_id for m in dead] == [bad]


def test_a_rejection_that_cannot_be_built_still_leaves_the_message_in_the_dead_letter_queue(intake, monkeypatch):
    client, _, _, uri = intake

    def broken(*_args):
        raise ValueError("a bug in the receipt")

    monkeypatch.setattr("services.intake.submissions.rejection", broken)
    queue = client.receipt_queue()
    bad = publish_with_reply_to(client, b'{"channel": "hotline",', queue)
    good = client.submit("hotline", request(), reply_to=queue)
    assert list(receipts_by_message_id(client, queue, count=1)) == [good]
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("intake")), message="the dead letter")
    assert [m.properties.message_id for m in dead] == [bad]
