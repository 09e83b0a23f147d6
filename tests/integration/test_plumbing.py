"""The messaging guarantees, on a real broker and real databases (SQLite and PostgreSQL).

A small service built from the shared plumbing consumes `source.events` and
emits `thing_noted`; each test checks one promise of services/common.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pika
import pytest
from marshmallow import EXCLUDE, RAISE, Schema, fields
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.database import Database, make_engine
from services.common.envelope import Event, read_data, utcnow
from services.common.inbox import Inbox
from services.common.messaging import dead_letter_queue, on_event
from services.common.outbox import Outbox
from services.common.tables import plumbing_tables
from tests.amqp_helpers import Probe, amqp_queue_messages, connect
from tests.waiting import wait_until


class Base(DeclarativeBase):
    pass


class Noted(Base):
    __tablename__ = "noted"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(36))  # not unique: only the inbox stops a double effect
    text: Mapped[str] = mapped_column(String(100))


OutboxRow, InboxRow = plumbing_tables(Base)


class ThingNoted(Schema):
    class Meta:
        unknown = RAISE
    text = fields.String(required=True)


class ThingHappenedIn(Schema):
    class Meta:
        unknown = EXCLUDE
    text = fields.String(required=True)


FAILURES_LEFT: dict[str, int] = {}  # ticket id -> how many more times the handler should fail


class Echo:
    name = "echo"
    db = Database()
    outbox = Outbox(OutboxRow, {"thing_noted": ThingNoted()})
    inbox = Inbox(InboxRow)

    @on_event("source", "thing_happened")
    def note(self, envelope):
        data = read_data(envelope, ThingHappenedIn)
        if FAILURES_LEFT.get(envelope["ticket_id"], 0) > 0:
            FAILURES_LEFT[envelope["ticket_id"]] -= 1
            raise RuntimeError("the database is having a bad day")
        with self.db.transaction() as s:
            if not self.inbox.first_delivery(s, envelope):
                return
            s.add(Noted(ticket_id=envelope["ticket_id"], text=data["text"]))
            self.outbox.add(s, [Event("thing_noted", envelope["ticket_id"], {"text": data["text"]})])


def envelope(ticket_id: str, text: str, event_id: str | None = None) -> dict:
    return {"event_id": event_id or str(uuid.uuid4()), "event": "thing_happened", "version": 1,
            "occurred_at": datetime.now(timezone.utc).isoformat(), "ticket_id": ticket_id,
            "correlation_id": ticket_id, "data": {"text": text}}


def publish(uri: str, body: bytes | dict, content_type: str | None = "application/json",
            user_id: str | None = "guest", routing_key: str = "thing_happened") -> None:
    conn = connect(uri)
    ch = conn.channel()
    ch.exchange_declare("source.events", "topic", durable=True)
    ch.confirm_delivery()
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    ch.basic_publish("source.events", routing_key, raw,
                     pika.BasicProperties(content_type=content_type, delivery_mode=2,
                                          message_id=str(uuid.uuid4()), user_id=user_id))
    conn.close()


@pytest.fixture
def echo(fresh_vhost_uri, db_url, start_service):
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    probe = Probe(fresh_vhost_uri, "echo.events")
    service = start_service(Echo, fresh_vhost_uri, db_url, migrate=False, RETRY_DELAYS=[0.05, 0.1, 0.2], max_workers=1)
    yield service.container, probe, engine, fresh_vhost_uri
    probe.close()
    engine.dispose()


def noted_count(engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(Noted))


def test_event_written_with_the_state_change_is_published(echo):
    _, probe, engine, uri = echo
    publish(uri, envelope("T-1", "路灯不亮"))
    noted = wait_until(lambda: probe.events("thing_noted"), message="thing_noted on echo.events")
    assert noted[0]["data"] == {"text": "路灯不亮"}
    assert noted[0]["ticket_id"] == "T-1"
    assert noted_count(engine) == 1


def test_relay_sends_what_a_crash_left_unsent(fresh_vhost_uri, db_url, start_service):
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    body = {"event_id": str(uuid.uuid4()), "event": "thing_noted", "version": 1,
            "occurred_at": utcnow().isoformat(), "ticket_id": "T-crash", "correlation_id": "T-crash",
            "data": {"text": "written before the crash"}}
    with Session(engine) as s, s.begin():  # committed by a process that died before relaying it
        s.add(OutboxRow(event_id=body["event_id"], exchange="echo.events", routing_key="thing_noted",
                        body=json.dumps(body), created_at=utcnow()))
    probe = Probe(fresh_vhost_uri, "echo.events")
    start_service(Echo, fresh_vhost_uri, db_url, migrate=False)
    try:
        sent = wait_until(lambda: probe.events("thing_noted"), message="the leftover outbox row")
        assert sent[0]["event_id"] == body["event_id"]
        wait_until(lambda: _unsent(engine) == 0, message="the row marked sent")
    finally:
        probe.close()
        engine.dispose()


def _unsent(engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None)))


def test_a_redelivered_event_changes_nothing(echo):
    _, probe, engine, uri = echo
    same = envelope("T-2", "重复投递", event_id=str(uuid.uuid4()))
    publish(uri, same)
    publish(uri, same)
    publish(uri, envelope("T-2b", "marker"))  # handled after both copies: one worker, FIFO
    wait_until(lambda: [e for e in probe.events("thing_noted") if e["ticket_id"] == "T-2b"], message="the marker")
    assert noted_count(engine) == 2
    assert sorted(e["ticket_id"] for e in probe.events("thing_noted")) == ["T-2", "T-2b"]


def test_a_failing_handler_is_retried_until_it_succeeds(echo):
    _, probe, engine, uri = echo
    FAILURES_LEFT["T-3"] = 2
    publish(uri, envelope("T-3", "先失败两次"))
    wait_until(lambda: probe.events("thing_noted"), message="success after two retries")
    assert FAILURES_LEFT["T-3"] == 0
    assert amqp_queue_messages(uri, dead_letter_queue("echo")) == []


def test_a_handler_that_keeps_failing_ends_in_the_dead_letter_queue_with_its_reason(echo):
    _, probe, engine, uri = echo
    FAILURES_LEFT["T-4"] = 99
    publish(uri, envelope("T-4", "一直失败"))
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("echo")),
                      message="the message in echo.dead-letter")
    FAILURES_LEFT["T-4"] = 0
    body, _props, headers = dead[0]
    assert json.loads(body)["ticket_id"] == "T-4"  # the message itself is kept, unchanged
    assert "the database is having a bad day" in headers["x-reason"]
    assert headers["x-attempts"] == 4  # first try + three retries
    assert headers["x-queue"] == "echo.note"
    assert noted_count(engine) == 0


@pytest.mark.parametrize("poison, reason", [
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (json.dumps({"event": "thing_happened"}).encode(), "event_id"),
    (json.dumps(envelope("T-5", "x") | {"data": {"txt": "typo"}}).encode(), "text"),
], ids=["not-utf8", "not-json", "array", "no-envelope", "bad-data"])
def test_a_malformed_message_is_dead_lettered_and_the_one_behind_it_is_processed(echo, poison, reason):
    _, probe, engine, uri = echo
    publish(uri, poison, content_type=None)
    publish(uri, envelope("T-good", "后面的正常消息"))
    wait_until(lambda: probe.events("thing_noted"), message="the good message processed")
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("echo")),
                      message="the poison message dead-lettered")
    assert dead[0].body == poison
    assert reason in dead[0].headers["x-reason"]
    assert dead[0].headers["x-error-kind"] == "MalformedEvent"
    assert noted_count(engine) == 1


@pytest.mark.parametrize("owner, user_id, reason", [
    ("songdaojia.source", "guest", "user_id: 'guest' may not publish on source.events"),
    ("guest", None, "user_id: missing"),
], ids=["someone-else", "no-user-id"])
def test_an_event_not_from_its_exchange_s_owner_is_dead_lettered(fresh_vhost_uri, db_url, start_service,
                                                                 owner, user_id, reason):
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    start_service(Echo, fresh_vhost_uri, db_url, migrate=False, BROKER_USERS={"source": owner})
    publish(fresh_vhost_uri, envelope("T-forged", "ticket_closed, honestly"), user_id=user_id)
    dead = wait_until(lambda: amqp_queue_messages(fresh_vhost_uri, dead_letter_queue("echo")),
                      message="the forged event dead-lettered")
    assert dead[0].headers["x-reason"].startswith(reason) and dead[0].headers["x-error-kind"] == "MalformedEvent"
    assert noted_count(engine) == 0
    engine.dispose()


def note_each(service, envelopes) -> None:
    """What Echo does with an envelope, for each of several in one transaction (the inbox skips a repeat)."""
    with service.db.transaction() as s:
        for envelope in envelopes:
            data = read_data(envelope, ThingHappenedIn)
            if not service.inbox.first_delivery(s, envelope):
                continue
            s.add(Noted(ticket_id=envelope["ticket_id"], text=data["text"]))
            service.outbox.add(s, [Event("thing_noted", envelope["ticket_id"], {"text": data["text"]})])


BATCH_CALLS: list[int] = []  # how many envelopes each call of EchoInBatches.note_all got


class EchoInBatches:
    name = "echo"
    db = Database()
    outbox = Outbox(OutboxRow, {"thing_noted": ThingNoted()})
    inbox = Inbox(InboxRow)

    @on_event("source", "thing_happened", batch=5)
    def note_all(self, envelopes):
        BATCH_CALLS.append(len(envelopes))
        note_each(self, envelopes)


def test_a_batch_with_a_poison_message_dead_letters_it_alone_and_handles_the_rest(fresh_vhost_uri, db_url,
                                                                                  start_service):
    """Messages handled several to a transaction; one with a bad field fails the batch, and then, handled alone,
    goes to the dead-letter queue with its reason, while every other message of the batch is noted once."""
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    probe = Probe(fresh_vhost_uri, "echo.events")
    start_service(EchoInBatches, fresh_vhost_uri, db_url, migrate=False, RETRY_DELAYS=[0.05], max_workers=10)
    BATCH_CALLS.clear()
    try:
        conn = connect(fresh_vhost_uri)
        ch = conn.channel()
        ch.confirm_delivery()
        repeat = envelope("B-repeat", "重复投递")
        bodies = [envelope(f"B-{n}", f"第{n}条") for n in range(12)]
        bodies[5] = envelope("B-poison", "x") | {"data": {"txt": "typo"}}
        bodies[8] = repeat
        bodies.append(repeat)  # a redelivery: the inbox makes it harmless, in a batch as alone
        for body in bodies:
            ch.basic_publish("source.events", "thing_happened", json.dumps(body).encode(),
                             pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                  message_id=str(uuid.uuid4()), user_id="guest"))
        conn.close()
        dead = wait_until(lambda: amqp_queue_messages(fresh_vhost_uri, dead_letter_queue("echo")),
                          message="the poison message dead-lettered")
        wait_until(lambda: len(probe.events("thing_noted")) >= 11, message="the other eleven noted")
        assert [json.loads(d.body)["ticket_id"] for d in dead] == ["B-poison"]
        assert "text" in dead[0].headers["x-reason"] and dead[0].headers["x-error-kind"] == "MalformedEvent"
        assert noted_count(engine) == 11
        assert sorted(e["ticket_id"] for e in probe.events("thing_noted")) == sorted(
            {b["ticket_id"] for b in bodies} - {"B-poison"})
        assert max(BATCH_CALLS) > 1, f"handled one at a time: {BATCH_CALLS}"
        assert max(BATCH_CALLS) <= 5
    finally:
        probe.close()
        engine.dispose()


def test_a_batch_s_acks_reach_the_broker_and_nothing_handled_comes_back_after_a_stop(fresh_vhost_uri, db_url,
                                                                                     start_service):
    """A batch's acks go to the broker in one write: once the service has stopped, what it handled is not
    in its queue again (an unacked message would be)."""
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    service = start_service(EchoInBatches, fresh_vhost_uri, db_url, migrate=False, max_workers=10)
    BATCH_CALLS.clear()
    try:
        conn = connect(fresh_vhost_uri)
        ch = conn.channel()
        ch.confirm_delivery()
        for n in range(30):
            ch.basic_publish("source.events", "thing_happened", json.dumps(envelope(f"A-{n}", f"第{n}条")).encode(),
                             pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                  message_id=str(uuid.uuid4()), user_id="guest"))
        wait_until(lambda: noted_count(engine) == 30, message="all thirty noted")
        assert max(BATCH_CALLS) > 1, f"handled one at a time: {BATCH_CALLS}"
        service.stop()
        waiting = ch.queue_declare("echo.note_all", passive=True).method.message_count
        conn.close()
        assert waiting == 0, f"{waiting} handled messages came back: their acks never reached the broker"
    finally:
        engine.dispose()


# --- digests (services/common/digests.py) ----------------------------------------------------------------

DIGEST_CALLS: list[list[str]] = []  # the ticket ids each call of EchoDigests.note_digest got


class EchoDigests:
    """Follows source's `things` digest, and sends its own events in a `noted` digest too."""
    name = "echo"
    db = Database()
    outbox = Outbox(OutboxRow, {"thing_noted": ThingNoted()}, digests={"noted": ("thing_noted",)})
    inbox = Inbox(InboxRow)

    @on_event("source", "thing_happened", digest="things")
    def note_digest(self, envelopes):
        DIGEST_CALLS.append([e["ticket_id"] for e in envelopes])
        for envelope in envelopes:
            if FAILURES_LEFT.get(envelope["ticket_id"], 0) > 0:
                FAILURES_LEFT[envelope["ticket_id"]] -= 1
                raise RuntimeError("the database is having a bad day")
        note_each(self, envelopes)


def publish_digest(uri: str, items: list) -> None:
    publish(uri, json.dumps(items).encode(), routing_key="things.digest")


@pytest.fixture
def echo_digests(fresh_vhost_uri, db_url, start_service):
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    singles, digests = Probe(fresh_vhost_uri, "echo.events", "thing_noted"), Probe(fresh_vhost_uri, "echo.events",
                                                                                   "noted.digest")
    service = start_service(EchoDigests, fresh_vhost_uri, db_url, migrate=False, RETRY_DELAYS=[0.05, 0.1],
                            max_workers=10)
    DIGEST_CALLS.clear()
    yield service, engine, singles, digests
    singles.close(), digests.close()
    engine.dispose()


def test_a_digest_is_handled_in_one_call_and_its_poison_is_dead_lettered_alone(fresh_vhost_uri, echo_digests):
    """A digest of twelve envelopes: one malformed (no event_id) and one with a bad field go to the dead-letter
    queue each alone, as a message of that envelope, with its reason; one of an event not followed is skipped;
    a repeat is harmless; the other nine are noted once, and the digest leaves the queue."""
    service, engine, singles, digests = echo_digests
    items = [envelope(f"D-{n}", f"第{n}条") for n in range(9)]
    repeat = items[4]
    malformed = {k: v for k, v in envelope("D-no-id", "x").items() if k != "event_id"}
    poison = envelope("D-poison", "x") | {"data": {"txt": "typo"}}
    other = envelope("D-other", "x") | {"event": "thing_ignored"}
    publish_digest(fresh_vhost_uri, items[:3] + [malformed] + items[3:6] + [poison, other, repeat] + items[6:])
    dead: list = []
    wait_until(lambda: dead.extend(amqp_queue_messages(fresh_vhost_uri, dead_letter_queue("echo"))) or len(dead) >= 2,
               message="the malformed envelope and the poison dead-lettered")
    wait_until(lambda: noted_count(engine) == 9, message="the nine good ones noted")
    by_ticket = {json.loads(d.body)["ticket_id"]: d for d in dead}
    assert sorted(by_ticket) == ["D-no-id", "D-poison"]
    assert json.loads(by_ticket["D-poison"].body) == poison  # the envelope alone, as it was in the digest
    assert "event_id" in by_ticket["D-no-id"].headers["x-reason"]
    assert "text" in by_ticket["D-poison"].headers["x-reason"]
    assert {d.headers["x-error-kind"] for d in dead} == {"MalformedEvent"}
    assert DIGEST_CALLS[0] == [f"D-{n}" for n in range(6)] + ["D-poison", "D-4"] + [f"D-{n}" for n in range(6, 9)]
    noted = wait_until(lambda: [e["ticket_id"] for e in singles.events("thing_noted")] if len(
        singles.events("thing_noted")) >= 9 else None, message="each noted event sent alone")
    assert sorted(noted) == [f"D-{n}" for n in range(9)]
    sent_in_digests = wait_until(lambda: [e["ticket_id"] for d in digests.poll() for e in d] if sum(
        len(d) for d in digests.poll()) >= 9 else None, message="and in the relay's digests")
    assert sorted(sent_in_digests) == sorted(noted)
    service.stop()
    conn = connect(fresh_vhost_uri)
    waiting = conn.channel().queue_declare("echo.note_digest", passive=True).method.message_count
    conn.close()
    assert waiting == 0, "the digest came back: it was not acked once its parts were settled"


def test_a_part_that_fails_is_retried_alone_and_the_others_are_handled_once(fresh_vhost_uri, echo_digests):
    """The handler fails three times on one envelope: the digest fails, its parts are handled one by one, and
    that one fails alone, goes to the retry queue as a message of its own and is noted when it comes back."""
    _service, engine, _singles, _digests = echo_digests
    FAILURES_LEFT["R-flaky"] = 3
    items = [envelope("R-1", "一"), envelope("R-flaky", "二"), envelope("R-3", "三")]
    publish_digest(fresh_vhost_uri, items)
    wait_until(lambda: noted_count(engine) == 3, message="all three noted, the flaky one after its retries")
    with Session(engine) as s:
        assert sorted(s.scalars(select(Noted.ticket_id))) == ["R-1", "R-3", "R-flaky"]  # each once
    # the digest once, then each part alone, then the flaky one twice more from the retry queue, alone
    assert DIGEST_CALLS[0] == ["R-1", "R-flaky", "R-3"] and DIGEST_CALLS.count(["R-flaky"]) == 3
    assert amqp_queue_messages(fresh_vhost_uri, dead_letter_queue("echo")) == []


@pytest.mark.parametrize("body, reason", [
    (b"not json", "body is not JSON"),
    (b"42", "a digest is a JSON array of envelopes"),
], ids=["not-json", "not-a-digest"])
def test_a_message_that_is_no_digest_is_dead_lettered_whole(fresh_vhost_uri, echo_digests, body, reason):
    _service, engine, _singles, _digests = echo_digests
    publish(fresh_vhost_uri, body, content_type=None, routing_key="things.digest")
    publish_digest(fresh_vhost_uri, [envelope("W-after", "后面的")])
    dead = wait_until(lambda: amqp_queue_messages(fresh_vhost_uri, dead_letter_queue("echo")),
                      message="the message dead-lettered")
    assert dead[0].body == body and dead[0].headers["x-reason"].startswith(reason)
    wait_until(lambda: noted_count(engine) == 1, message="the digest behind it handled")


@pytest.mark.parametrize("last_step", [False, True], ids=["while upgrading", "the upgrade's last step"])
def test_an_upgraded_digest_consumer_keeps_the_events_its_queue_followed_one_by_one_until_told(fresh_vhost_uri,
                                                                                               last_step):
    """An upgrade: the queue was bound to the events themselves. Declared as a digest's consumer it keeps them
    too (a producer still on the old release sends no digest: nothing may be dropped), until the last step
    (`declare --unbind-digested`) leaves it the digest only, not each event twice."""
    from services.common.messaging import declare_topology
    conn = connect(fresh_vhost_uri)
    ch = conn.channel()
    ch.exchange_declare("source.events", "topic", durable=True)
    ch.queue_declare("echo.note_digest", durable=True)
    ch.queue_bind("echo.note_digest", "source.events", "thing_happened")  # as a release before digests had it
    declare_topology(EchoDigests, {"AMQP_URI": fresh_vhost_uri}, unbind_digested=last_step)
    ch.confirm_delivery()
    for key in ("thing_happened", "things.digest"):
        ch.basic_publish("source.events", key, b"[]", pika.BasicProperties(delivery_mode=2))
    counted = ch.queue_declare("echo.note_digest", passive=True).method.message_count
    conn.close()
    assert counted == (1 if last_step else 2)
