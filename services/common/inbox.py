"""Idempotent consumers: the inbox row and the state change share one transaction."""
from __future__ import annotations

from nameko.extensions import DependencyProvider
from sqlalchemy import insert, select

from .envelope import utcnow


class InboxBook:
    def __init__(self, row_cls, consumer: str):
        self._row = row_cls
        self._consumer = consumer

    def first_delivery(self, session, envelope: dict) -> bool:
        """True the first time this consumer sees the event; records it in `session`.

        Two workers racing on the same event both get True, but only one commit
        succeeds: the other fails on the primary key and is retried, then sees False.
        """
        event_id, row = str(envelope["event_id"]), self._row
        seen = session.execute(select(row.event_id).where(
            row.event_id == event_id, row.consumer == self._consumer)).first()
        if seen is not None:
            return False
        session.execute(insert(row).values(event_id=event_id, consumer=self._consumer,
                                           received_at=utcnow()))
        return True


class Inbox(DependencyProvider):
    """Injects an `InboxBook` named after the entrypoint that is running."""

    def __init__(self, row_cls):
        self.row_cls = row_cls

    def get_dependency(self, worker_ctx) -> InboxBook:
        consumer = f"{self.container.service_name}.{worker_ctx.entrypoint.method_name}"
        return InboxBook(self.row_cls, consumer)
