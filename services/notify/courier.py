"""The courier: sends pending deliveries through the channel, in the background.

A handler only writes a pending `Delivery` in its transaction; the courier sends
it and, in one transaction, marks it sent and adds `resident_notified` to the
outbox. A crash before the mark re-sends the message with the same message id,
so the peer (SMTP Message-ID, SMS Idempotency-Key) can drop the copy.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import eventlet
from eventlet.event import Event as GreenEvent
from eventlet.greenpool import GreenPool
from nameko.extensions import DependencyProvider
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.common.envelope import Event, utcnow
from services.common.outbox import Outbox

from .channels import DeliveryFailed, channel_from_config
from .models import Delivery

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
                for delivery_id in self._due():
                    self.in_flight.add(delivery_id)
                    self.pool.spawn_n(self._deliver, delivery_id)
            except Exception:
                log.exception("courier could not read pending deliveries")
            self._wakeup.wait(timeout=0.5)

    def _due(self) -> list[int]:
        with Session(self.engine) as s:
            ids = s.scalars(select(Delivery.id).where(
                Delivery.state == "pending", Delivery.next_attempt_at <= utcnow())
                .order_by(Delivery.id).limit(500)).all()
        return [i for i in ids if i not in self.in_flight]

    def _deliver(self, delivery_id: int) -> None:
        try:
            with Session(self.engine) as s:
                d = s.get(Delivery, delivery_id)
                if d is None or d.state != "pending":
                    return
                try:
                    reference = self._send(d)
                except DeliveryFailed as exc:
                    self._failed(s, d, exc)
                else:
                    self._sent(s, d, reference)
                s.commit()
        except Exception:
            log.exception("courier: delivery %s", delivery_id)
        finally:
            self.in_flight.discard(delivery_id)

    def _send(self, d: Delivery) -> str:
        if self.channel.kind == "email":
            return self.channel.send(d.address, d.subject, d.body, d.message_id)
        return self.channel.send(d.address, d.body, d.message_id)

    def _sent(self, s: Session, d: Delivery, reference: str) -> None:
        now = utcnow()
        d.state, d.reference, d.sent_at, d.attempts = "sent", reference, now, d.attempts + 1
        self.outbox.add(s, [Event("resident_notified", d.ticket_id, {
            "template": d.template, "channel": d.channel, "reference": reference,
            "delivered_at": now.isoformat()}, correlation_id=d.ticket_id)])

    def _failed(self, s: Session, d: Delivery, exc: DeliveryFailed) -> None:
        d.attempts += 1
        d.error = str(exc)[:2000]
        if exc.permanent or d.attempts >= MAX_ATTEMPTS:
            d.state = "failed"
            self.outbox.add(s, [Event("notification_failed", d.ticket_id, {
                "template": d.template, "channel": d.channel, "reason": d.error,
                "attempts": d.attempts}, correlation_id=d.ticket_id)])
        else:
            d.next_attempt_at = utcnow() + timedelta(seconds=2 ** d.attempts)
        eventlet.sleep(0)
