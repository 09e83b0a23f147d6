"""The outbox relay with two instances on one PostgreSQL database, on a real broker.

Each relay claims its batch (`FOR UPDATE SKIP LOCKED`): with no faults every event is
published once, whichever instance sends it. A relay that dies before its commit leaves
the batch to the next one (at least once). On SQLite one relay per file still sends
everything. See services/common/outbox.py.
"""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import timedelta

import eventlet
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import DeclarativeBase

from services.common import outbox
from services.common.amqp import ConfirmingPublisher
from services.common.database import make_engine
from services.common.envelope import utcnow
from services.common.outbox import Relay
from services.common.tables import plumbing_tables
from tests.amqp_helpers import Probe
from tests.waiting import wait_until


class Base(DeclarativeBase):
    pass


OutboxRow, _InboxRow = plumbing_tables(Base)

EXCHANGE = "relaytest.events"


def write_rows(engine, n: int, sent_at=None) -> list[str]:
    """`n` outbox rows, as workers of some service would have committed them; their event ids."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(OutboxRow.__table__), [
            {"event_id": i, "exchange": EXCHANGE, "routing_key": "thing_noted", "created_at": now,
             "body": json.dumps({"event_id": i, "event": "thing_noted"}), "sent_at": sent_at} for i in ids])
    return ids


def count_rows(engine, *where) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(OutboxRow).where(*where))


def unsent(engine) -> int:
    return count_rows(engine, OutboxRow.sent_at.is_(None))


class Relays:
    """Relays of one service, each with its own engine and broker connection (as two processes have)."""

    def __init__(self, db_url: str, amqp_uri: str, n: int):
        self.relays = [Relay(make_engine(db_url, pool_size=2), OutboxRow,
                             ConfirmingPublisher(amqp_uri, "relaytest", exchanges=(EXCHANGE,)))
                       for _ in range(n)]
        self.threads: list = []

    def start(self) -> None:
        self.threads = [eventlet.spawn(r.run) for r in self.relays]

    def stop(self) -> None:
        for relay in self.relays:
            relay.stop()
        for thread in self.threads:
            thread.wait()
        for relay in self.relays:
            relay.engine.dispose()


@pytest.fixture
def postgres(postgres_url):
    engine = make_engine(postgres_url)
    Base.metadata.create_all(engine)
    yield postgres_url, engine
    engine.dispose()


@pytest.fixture
def probe(fresh_vhost_uri):
    probe = Probe(fresh_vhost_uri, EXCHANGE)  # bound before anything is published
    yield probe
    probe.close()


def received(probe: Probe) -> Counter:
    """How often each event id has arrived since the probe was bound."""
    return Counter(body["event_id"] for body in probe.poll())


def wait_all_sent(engine, probe: Probe, ids: list[str], timeout: float = 60) -> Counter:
    wait_until(lambda: unsent(engine) == 0, timeout=timeout, interval=0.1,
               message=lambda: f"every row marked sent ({unsent(engine)} left)")
    # a row is marked sent only after the broker confirmed it, so it is already in the probe's queue
    seen = received(probe)
    assert set(seen) >= set(ids), f"{len(set(ids) - set(seen))} events never arrived"
    return seen


def test_two_relays_on_one_postgres_database_publish_every_event_once(postgres, probe, fresh_vhost_uri,
                                                                      monkeypatch):
    url, engine = postgres
    monkeypatch.setattr(outbox, "BATCH", 100)  # 30 batches for two relays to contend over
    ids = write_rows(engine, 3000)
    relays = Relays(url, fresh_vhost_uri, 2)
    relays.start()
    try:
        seen = wait_all_sent(engine, probe, ids)
    finally:
        relays.stop()
    seen = received(probe)  # and anything that came in while the relays stopped
    assert set(seen) == set(ids)
    duplicates = sum(n - 1 for n in seen.values())
    assert duplicates == 0, f"{duplicates} events published twice"
    work = [r.published for r in relays.relays]
    assert sum(work) == 3000 and min(work) > 0, f"both relays should have sent part of it: {work}"


def test_a_relay_skips_a_batch_another_instance_holds_and_sends_it_once_released(postgres, probe,
                                                                                 fresh_vhost_uri):
    url, engine = postgres
    ids = write_rows(engine, 300)
    holder = engine.connect()  # another instance, in the middle of sending the first 50 rows
    held = holder.begin()
    locked = holder.scalars(select(OutboxRow.event_id).order_by(OutboxRow.id).limit(50)
                            .with_for_update()).all()
    relays = Relays(url, fresh_vhost_uri, 1)
    relays.start()
    try:
        wait_until(lambda: unsent(engine) == 50, timeout=30, message="every row but the held ones sent")
        seen = received(probe)
        assert set(seen) == set(ids) - set(locked) and max(seen.values()) == 1
        held.rollback()  # that instance died before its commit: its rows are free again
        seen = wait_all_sent(engine, probe, ids)
    finally:
        holder.close()  # (rolls back, if a failed assertion left the rows held)
        relays.stop()
    assert set(seen) == set(ids) and max(seen.values()) == 1


def test_a_relay_that_dies_before_its_commit_leaves_its_batch_to_the_next(postgres, probe, fresh_vhost_uri,
                                                                          monkeypatch):
    url, engine = postgres
    monkeypatch.setattr(outbox, "BATCH", 100)
    deaths = []

    def dies_once(name):  # stands in for SIGKILL at `relay.before_mark`: the transaction never commits
        if name == "relay.before_mark" and not deaths:
            deaths.append(name)
            raise RuntimeError("killed after publishing, before the commit")

    monkeypatch.setattr(outbox, "crash_point", dies_once)
    ids = write_rows(engine, 1000)
    relays = Relays(url, fresh_vhost_uri, 2)
    relays.start()
    try:
        seen = wait_all_sent(engine, probe, ids)
    finally:
        relays.stop()
    seen = received(probe)
    assert deaths
    # at least once: the dead relay's batch (published, never marked) is sent again, and nothing else is
    assert Counter(seen.values()) == {1: 900, 2: 100}


def test_two_relays_purge_old_sent_rows_together(postgres, fresh_vhost_uri, monkeypatch):
    url, engine = postgres
    monkeypatch.setattr(outbox, "PURGE_BATCH", 200)
    write_rows(engine, 3000, sent_at=utcnow() - timedelta(hours=2))
    write_rows(engine, 10, sent_at=utcnow())
    write_rows(engine, 10)
    relays = Relays(url, fresh_vhost_uri, 2)
    cutoff = utcnow() - outbox.KEEP_SENT
    try:
        purges = [eventlet.spawn(r.purge, cutoff) for r in relays.relays]
        deleted = [p.wait() for p in purges]
    finally:
        relays.stop()
    assert sum(deleted) == 3000, deleted
    assert count_rows(engine) == 20 and unsent(engine) == 10


def test_one_relay_on_sqlite_sends_every_event_once(sqlite_url, probe, fresh_vhost_uri):
    engine = make_engine(sqlite_url)
    Base.metadata.create_all(engine)
    ids = write_rows(engine, 1200)  # more than two batches
    relays = Relays(sqlite_url, fresh_vhost_uri, 1)
    assert not relays.relays[0].claims
    relays.start()
    try:
        seen = wait_all_sent(engine, probe, ids)
    finally:
        relays.stop()
        engine.dispose()
    seen = received(probe)
    assert set(seen) == set(ids) and max(seen.values()) == 1 and relays.relays[0].published == 1200


def test_under_a_steady_stream_the_relay_sends_events_in_rounds_of_several(sqlite_url, probe, fresh_vhost_uri):
    """Events committed one by one, about 10 ms apart, as a busy service commits them: the relay gathers
    (outbox.GATHER) and sends several per round of confirms and mark-sent commit, at most one round per
    GATHER, not one each; every event still arrives once. An event after a quiet spell goes in a round of
    its own."""
    engine = make_engine(sqlite_url)
    Base.metadata.create_all(engine)
    relays = Relays(sqlite_url, fresh_vhost_uri, 1)
    relay = relays.relays[0]
    relays.start()
    try:
        ids, started = [], time.monotonic()
        for _ in range(100):
            ids += write_rows(engine, 1)
            relay.wake()  # as a worker's commit wakes it
            eventlet.sleep(0.01)
        wait_all_sent(engine, probe, ids)
        rounds, streamed = relay.rounds, time.monotonic() - started
        assert rounds <= streamed / outbox.GATHER + 2, f"{rounds} rounds in {streamed:.2f} s: more than one a GATHER"
        assert rounds <= len(ids) / 2, f"{len(ids)} events in {rounds} rounds: not gathered"
        eventlet.sleep(outbox.GATHER * 2)  # a quiet spell, longer than a gathering
        ids += write_rows(engine, 1)
        relay.wake()
        wait_all_sent(engine, probe, ids)
        assert relay.rounds == rounds + 1
    finally:
        relays.stop()
        engine.dispose()
    seen = received(probe)
    assert set(seen) == set(ids) and max(seen.values()) == 1 and relay.published == len(ids)
