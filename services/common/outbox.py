"""Transactional outbox: events are rows written with the state change; a relay sends them.

The relay publishes unsent rows under publisher confirms and marks them sent.
A crash after publishing but before marking re-sends them: delivery is at
least once, and consumers' inboxes turn that into exactly-once effects.

Several instances of a service on one PostgreSQL database: each relay claims
its batch. One transaction selects up to `BATCH` unsent rows `FOR UPDATE SKIP
LOCKED`, publishes them, waits for the broker's confirms, marks them sent and
commits; another instance skips the locked rows and takes the next batch, and
a row that committed as sent is not picked up again (PostgreSQL re-checks
`sent_at IS NULL` on the newest version of a row it locks). So, with no
faults, every event is published once. What a batch can still send twice:
- the instance dies, or loses its database connection, after publishing and
  before the commit (crash point `relay.before_mark`): the lock goes with the
  session, and whoever comes next sends the batch again;
- the broker confirms part of a batch and then fails (nack, timeout, lost
  connection): the transaction rolls back and the whole batch is sent again;
- a relay that holds its claim longer than `CLAIM_SECONDS` without talking to
  the database (frozen process, broker blocking publishers) loses its session
  to PostgreSQL's `idle_in_transaction_session_timeout`; the rows go to the
  next relay, and the frozen one's copies, if it wakes, are repeats.
Order is by id within a batch; two instances' batches may overtake each other.

SQLite: one instance per database file (one relay per file). Its relay reads
unsent rows, publishes them and marks them sent in a second short transaction
(no write lock is held while talking to the broker); two relays on one file
would both send the same rows.

A service may declare digests (`Outbox(..., digests=)`, digests.py): with each round the relay also
sends, for each, one message with that round's envelopes of its events, in the same round of confirms.

Under load the relay gathers: after a drain that sent something it waits until `GATHER` has passed
before the next, so events committed meanwhile share one round of confirms and one mark-sent commit.
The first event after a quiet spell goes at once.

Sent rows are kept `KEEP_SENT` for inspection, then purged in chunks by every
instance (`SKIP LOCKED` on PostgreSQL, so two purges neither wait for each
other nor deadlock).
"""
from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Iterable, Mapping

import eventlet
from eventlet.event import Event as GreenEvent
from marshmallow import Schema
from nameko.extensions import DependencyProvider
from sqlalchemy import delete, event as sa_event, insert, select, text, update
from sqlalchemy.orm import Session

from .amqp import ConfirmingPublisher, Outgoing, PublishFailed
from .database import doing, make_engine
from .digests import compose, digest_key
from .envelope import Event, seal, utcnow
from .faults import crash_point

log = logging.getLogger(__name__)

BATCH = 500
POLL_SECONDS = 1.0
GATHER = 0.05  # seconds between two drains that send: under load, a batch per round of confirms, not an event
KEEP_SENT = timedelta(hours=1)  # sent rows kept for inspection, then purged
PURGE_EVERY = timedelta(minutes=1)
PURGE_BATCH = 5000  # rows deleted per purge transaction
CLAIM_SECONDS = 30  # PostgreSQL ends a claim whose relay is silent this long (> the publisher's confirm timeout)


class OutboxWriter:
    """What a worker sees: `add(session, events)` inside its transaction."""

    def __init__(self, row_cls, exchange: str, schemas: Mapping[str, Schema], wake):
        self._exchange, self._schemas, self._wake = exchange, schemas, wake
        # built once, on the table: the ORM's bulk-insert path re-derived a cache key on every call
        self._insert = insert(row_cls.__table__)

    def add(self, session, events: Iterable[Event], exchange: str | None = None,
            routing_key: str | None = None) -> None:
        now = utcnow()
        rows = [{"event_id": ev.event_id, "exchange": self._exchange if exchange is None else exchange,
                 "routing_key": ev.name if routing_key is None else routing_key, "body": seal(ev, self._schemas),
                 "created_at": now} for ev in events]
        self._write(session, rows)

    def add_message(self, session, exchange: str, routing_key: str, message_id: str, body: dict) -> None:
        """A message that is not one of this service's events (a submission to another service's front door),
        sent as it is, with `message_id` (at most 36 characters) as its AMQP message id."""
        self._write(session, [{"event_id": message_id, "exchange": exchange, "routing_key": routing_key,
                               "body": json.dumps(body, ensure_ascii=False), "created_at": utcnow()}])

    def _write(self, session, rows: list[dict]) -> None:
        if rows:  # a Core insert in the session's transaction: no unit-of-work bookkeeping
            session.execute(self._insert, rows)
            session.info.setdefault(WAKE_AFTER_COMMIT, set()).add(self._wake)


# The relays to wake once a session's transaction committed (rows were written for them). One listener for every
# session, registered once: a listener added per write cost more than the write's own statement.
WAKE_AFTER_COMMIT = "outbox.wake_after_commit"


@sa_event.listens_for(Session, "after_commit")
def _wake_relays(session) -> None:
    for wake in session.info.pop(WAKE_AFTER_COMMIT, ()):
        wake()


@sa_event.listens_for(Session, "after_soft_rollback")
def _nothing_to_wake(session, _previous_transaction) -> None:
    if not session.in_transaction():  # the whole transaction rolled back (not a savepoint): nothing was written
        session.info.pop(WAKE_AFTER_COMMIT, None)


class Outbox(DependencyProvider):
    """Injects an `OutboxWriter` and runs the relay for this service's outbox."""

    def __init__(self, row_cls, schemas: Mapping[str, Schema], extra_exchanges: tuple[str, ...] = (),
                 reply_to: Mapping[str, str] | None = None, digests: Mapping[str, tuple[str, ...]] | None = None):
        """`reply_to`: exchange → the queue its receiver answers on (a submission to intake's front door asks
        for a receipt), set on every message sent there. `digests`: name → events; each round also sends, for
        each, one message with the round's envelopes of those events (digests.py)."""
        self.row_cls = row_cls
        self.schemas = schemas
        self.extra_exchanges = extra_exchanges
        self.reply_to = dict(reply_to or {})
        self.digests = dict(digests or {})
        unknown = sorted({e for events in self.digests.values() for e in events} - set(schemas))
        if unknown:
            raise ValueError(f"digests: {', '.join(unknown)} not among this service's events")

    def setup(self) -> None:
        cfg = self.container.config
        self.exchange = f"{self.container.service_name}.events"
        engine = make_engine(cfg["DB_URL"], pool_size=2, service=self.container.service_name)
        self.relay = Relay(engine, self.row_cls,
                           ConfirmingPublisher(cfg["AMQP_URI"], self.container.service_name,
                                               exchanges=(self.exchange, *self.extra_exchanges)), self.reply_to,
                           digests={self.exchange: self.digests})
        # one writer for every worker: it holds no per-worker state, and its statement is built once
        self.writer = OutboxWriter(self.row_cls, self.exchange, self.schemas, self.relay.wake)

    def start(self) -> None:
        self.container.spawn_managed_thread(self.relay.run, identifier="outbox-relay")

    def stop(self) -> None:
        self.relay.stop()

    kill = stop

    def get_dependency(self, worker_ctx) -> OutboxWriter:
        return self.writer


class Relay:
    """Publishes this service's unsent outbox rows; see the module docstring for what is promised."""

    def __init__(self, engine, row_cls, publisher: ConfirmingPublisher, reply_to: Mapping[str, str] | None = None,
                 digests: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None):
        """`digests`: exchange → its digests (name → events), sent with each round (digests.py)."""
        self.engine, self.row, self.publisher = engine, row_cls, publisher
        self.reply_to = dict(reply_to or {})
        self.digests = {exchange: {name: frozenset(events) for name, events in of.items()}
                        for exchange, of in (digests or {}).items() if of}
        self.claims = engine.dialect.name == "postgresql"  # row locks: other instances skip our batch
        self.published = 0  # events this relay published and marked sent (work done by this instance)
        self.rounds = 0  # drains that sent something: one round of confirms and one mark-sent commit each
        self._wakeup = GreenEvent()
        self._running = True
        self._purged_at = utcnow()
        self._sent_at = 0.0  # time.monotonic() of the last drain that sent something

    def wake(self) -> None:
        if not self._wakeup.ready():
            self._wakeup.send(True)

    def stop(self) -> None:
        self._running = False
        self.wake()

    def run(self) -> None:
        doing("outbox relay")
        backoff = 0.5
        while self._running:
            self._wakeup = GreenEvent()  # reset before draining so a wake during it is kept
            try:
                while self._running:
                    self._gather()
                    more = self.drain_once()
                    self._purge_if_due()  # also under a load that never lets the outbox run dry
                    if not more:
                        break
                backoff = 0.5
            except PublishFailed as exc:
                log.warning("outbox relay: %s; retrying in %.1fs", exc, backoff)
                eventlet.sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            except Exception:
                log.exception("outbox relay failed; retrying in %.1fs", backoff)
                eventlet.sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            self._wakeup.wait(timeout=POLL_SECONDS)
        self.publisher.close()

    def _gather(self) -> None:
        """Under load, let events gather for what is left of GATHER since the last drain that sent."""
        wait = self._sent_at + GATHER - time.monotonic()
        if wait > 0:
            eventlet.sleep(wait)

    def _purge_if_due(self) -> None:
        now = utcnow()
        if self._running and now - self._purged_at > PURGE_EVERY:
            self.purge(now - KEEP_SENT)
            self._purged_at = now

    def _unsent(self):
        return (select(self.row.id, self.row.event_id, self.row.exchange, self.row.routing_key, self.row.body)
                .where(self.row.sent_at.is_(None)).order_by(self.row.id).limit(BATCH))

    def _publish(self, rows) -> None:
        self.publisher.publish([
            *(Outgoing(exchange=r.exchange, routing_key=r.routing_key, body=r.body.encode("utf-8"),
                       message_id=r.event_id, type=r.routing_key, reply_to=self.reply_to.get(r.exchange))
              for r in rows),
            *self.digests_of(rows)])

    def digests_of(self, rows) -> list[Outgoing]:
        """The round's digests: for each, the envelopes of its events among `rows`, in their order."""
        out = []
        for exchange, digests in self.digests.items():
            for name, events in digests.items():
                parts = [r for r in rows if r.exchange == exchange and r.routing_key in events]
                if parts:
                    body, message_id = compose([r.body for r in parts], (r.event_id for r in parts))
                    out.append(Outgoing(exchange=exchange, routing_key=digest_key(name), body=body,
                                        message_id=message_id, type=digest_key(name)))
        return out

    def _mark_sent(self, conn, rows) -> None:
        conn.execute(update(self.row).where(self.row.id.in_([r.id for r in rows])).values(sent_at=utcnow()))

    def drain_once(self) -> bool:
        """Send one batch of unsent rows; True when there may be more."""
        return self._drain_claimed() if self.claims else self._drain_unclaimed()

    def _drain_claimed(self) -> bool:
        """PostgreSQL: claim a batch (row locks), publish it, mark it sent, commit: one transaction."""
        with self.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{CLAIM_SECONDS}s'"))
            rows = conn.execute(self._unsent().with_for_update(skip_locked=True)).all()
            if not rows:
                return False
            self._publish(rows)
            crash_point("relay.before_mark")  # published, not committed: the lock goes, the next relay re-sends
            self._mark_sent(conn, rows)
        self._sent(rows)
        return len(rows) == BATCH

    def _sent(self, rows) -> None:
        self.published += len(rows)
        self.rounds += 1
        self._sent_at = time.monotonic()

    def _drain_unclaimed(self) -> bool:
        """SQLite (one instance per file): no write lock is held while the broker confirms."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._unsent()).all()
        if not rows:
            return False
        self._publish(rows)
        crash_point("relay.before_mark")  # published, not marked: the next relay sends them again
        with self.engine.begin() as conn:
            self._mark_sent(conn, rows)
        self._sent(rows)
        return len(rows) == BATCH

    def purge(self, cutoff) -> int:
        """Delete rows sent before `cutoff`, `PURGE_BATCH` at a time; return how many went.

        On PostgreSQL each chunk locks what it deletes `SKIP LOCKED`: two instances purging at once
        take different rows instead of waiting on (or deadlocking with) each other."""
        deleted = 0
        while self._running:
            with self.engine.begin() as conn:
                old = select(self.row.id).where(self.row.sent_at < cutoff).limit(PURGE_BATCH)
                if self.claims:
                    old = old.with_for_update(skip_locked=True)
                ids = conn.scalars(old).all()
                if ids:
                    conn.execute(delete(self.row).where(self.row.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < PURGE_BATCH:
                return deleted
        return deleted
