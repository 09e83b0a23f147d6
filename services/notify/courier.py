"""The courier: sends pending deliveries through the channel, in the background.

A handler only writes a pending `Delivery` in its transaction; the courier sends
it and, in one transaction, marks it sent and adds `resident_notified` to the
outbox (not for a message to staff: templates.STAFF_TEMPLATES). A crash before
the mark re-sends the message with the same message id, so the peer (SMTP
Message-ID, SMS Idempotency-Key) can drop the copy.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from eventlet.event import Event as GreenEvent
from eventlet.greenpool import GreenPool
from nameko.extensions import DependencyProvider
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.common.envelope import Event, utcnow
from services.common.outbox import Outbox

from .channels import DeliveryFailed, channel_from_config
from .models import Delivery
from .templates import STAFF_TEMPLATES

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 6
IN_PARALLEL = 20


def channel_config(config: dict) -> dict:
    kind = config.get("CHANNEL", "email")
    return {"kind": kind, **(config.get(kind.upper()) or {})}


class Courier(DependencyProvider):
    def setup(self) -> None:
        self.engine = make_engine(self.container.config["DB_URL"], pool_size=IN_PARALLEL + 2)
        self.channel = channel_from_config(channel_config(self.container.config))
        self.pool = GreenPool(IN_PARALLEL)
        self.in_flight: set[int] = set()
        self._wakeup = GreenEvent()
        self._running = True

    def start(self) -> None:
        outbox = next(d for d in self.container.dependencies if isinstance(d, Outbox))
        self.outbox = outbox.get_dependency(None)
        self.container.spawn_managed_thread(self.run, identifier="courier")

    def stop(self) -> None:
        self._running = False
        self.wake()
        self.pool.waitall()

    kill = stop

    def wake(self) -> None:
        if not self._wakeup.ready():
            self._wakeup.send(True)

    def get_dependency(self, worker_ctx):
        return self

    def run(self) -> None:
        while self._running:
            self._wakeup = GreenEvent()
            try:
                for due in self._due():
                    self.in_flight.add(due.id)
                    self.pool.spawn_n(self._deliver, due)
            except Exception:
                log.exception("courier could not read pending deliveries")
            self._wakeup.wait(timeout=0.5)

    def _due(self) -> list:
        """Pending deliveries whose time has come, as plain rows (not ORM objects: cheaper)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(*DUE_COLUMNS).where(
                Delivery.state == "pending", Delivery.next_attempt_at <= utcnow())
                .order_by(Delivery.id).limit(500)).all()
        return [r for r in rows if r.id not in self.in_flight]

    def _deliver(self, d) -> None:
        try:
            try:
                reference = self._send(d)
            except DeliveryFailed as exc:
                self._failed(d, exc)
            else:
                self._sent(d, reference)
        except Exception:
            log.exception("courier: delivery %s", d.id)
        finally:
            self.in_flight.discard(d.id)

    def _send(self, d) -> str:
        if d.channel != self.channel.kind:  # written for another channel (the configuration changed since)
            raise DeliveryFailed(self.channel.kind, self.channel.peer,
                                 f"written for {d.channel}, the channel is {self.channel.kind} now", permanent=True)
        if self.channel.kind == "email":
            return self.channel.send(d.address, d.subject, d.body, d.message_id)
        return self.channel.send(d.address, d.body, d.message_id)

    def _sent(self, d, reference: str) -> None:
        now = utcnow()
        with Session(self.engine) as s, s.begin():
            s.execute(update(Delivery).where(Delivery.id == d.id).values(
                state="sent", reference=reference, sent_at=now, attempts=d.attempts + 1))
            if d.template not in STAFF_TEMPLATES:
                self.outbox.add(s, [Event("resident_notified", d.ticket_id, {
                    "template": d.template, "channel": d.channel, "reference": reference,
                    "delivered_at": now.isoformat()}, correlation_id=d.ticket_id)])

    def _failed(self, d, exc: DeliveryFailed) -> None:
        attempts, error = d.attempts + 1, str(exc)[:2000]
        with Session(self.engine) as s, s.begin():
            if exc.permanent or attempts >= MAX_ATTEMPTS:
                s.execute(update(Delivery).where(Delivery.id == d.id).values(
                    state="failed", attempts=attempts, error=error))
                self.outbox.add(s, [Event("notification_failed", d.ticket_id, {
                    "template": d.template, "channel": d.channel, "reason": error,
                    "attempts": attempts}, correlation_id=d.ticket_id)])
            else:
                s.execute(update(Delivery).where(Delivery.id == d.id).values(
                    attempts=attempts, error=error,
                    next_attempt_at=utcnow() + timedelta(seconds=2 ** attempts)))


DUE_COLUMNS = (Delivery.id, Delivery.ticket_id, Delivery.template, Delivery.channel, Delivery.address,
               Delivery.subject, Delivery.body, Delivery.message_id, Delivery.attempts)
