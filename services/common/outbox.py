"""Transactional outbox: events are rows written with the state change; a relay sends them.

The relay publishes unsent rows under publisher confirms and marks them sent.
A crash after publishing but before marking re-sends them on restart: delivery
is at least once, and consumers' inboxes turn that into exactly-once effects.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Iterable, Mapping

import eventlet
from eventlet.event import Event as GreenEvent
from marshmallow import Schema
from nameko.extensions import DependencyProvider
from sqlalchemy import delete, event as sa_event, insert, select, update

from .amqp import ConfirmingPublisher, Outgoing, PublishFailed
from .database import make_engine
from .envelope import Event, seal, utcnow
from .faults import crash_point

log = logging.getLogger(__name__)

BATCH = 500
POLL_SECONDS = 1.0
KEEP_SENT = timedelta(hours=1)  # sent rows kept for inspection, then purged
PURGE_EVERY = timedelta(minutes=1)


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
        if rows:  # a Core insert in the session's transaction: no unit-of-work bookkeeping
            session.execute(self._insert, rows)
            sa_event.listen(session, "after_commit", lambda _s: self._wake(), once=True)


class Outbox(DependencyProvider):
    """Injects an `OutboxWriter` and runs the relay for this service's outbox."""

    def __init__(self, row_cls, schemas: Mapping[str, Schema], extra_exchanges: tuple[str, ...] = ()):
        self.row_cls = row_cls
        self.schemas = schemas
        self.extra_exchanges = extra_exchanges

    def setup(self) -> None:
        cfg = self.container.config
        self.exchange = f"{self.container.service_name}.events"
        self.relay = Relay(make_engine(cfg["DB_URL"], pool_size=2), self.row_cls,
                           ConfirmingPublisher(cfg["AMQP_URI"], self.container.service_name,
                                               exchanges=(self.exchange, *self.extra_exchanges)))
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
    def __init__(self, engine, row_cls, publisher: ConfirmingPublisher):
        self.engine, self.row, self.publisher = engine, row_cls, publisher
        self._wakeup = GreenEvent()
        self._running = True
        self._purged_at = utcnow()

    def wake(self) -> None:
        if not self._wakeup.ready():
            self._wakeup.send(True)

    def stop(self) -> None:
        self._running = False
        self.wake()

    def run(self) -> None:
        backoff = 0.5
        while self._running:
            self._wakeup = GreenEvent()  # reset before draining so a wake during it is kept
            try:
                while self._running and self.drain_once():
                    pass
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

    def drain_once(self) -> bool:
        """Send one batch of unsent rows; True when there may be more."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(self.row.id, self.row.event_id, self.row.exchange, self.row.routing_key,
                       self.row.body)
                .where(self.row.sent_at.is_(None)).order_by(self.row.id).limit(BATCH)
            ).all()
        if not rows:
            return False
        self.publisher.publish([
            Outgoing(exchange=r.exchange, routing_key=r.routing_key, body=r.body.encode("utf-8"),
                     message_id=r.event_id, type=r.routing_key) for r in rows])
        crash_point("relay.before_mark")  # published, not marked: the next relay sends them again
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(update(self.row).where(self.row.id.in_([r.id for r in rows]))
                         .values(sent_at=now))
            if now - self._purged_at > PURGE_EVERY:
                conn.execute(delete(self.row).where(self.row.sent_at < now - KEEP_SENT))
                self._purged_at = now
        return len(rows) == BATCH
