"""Idempotent consumers: the inbox row and the state change share one transaction."""
from __future__ import annotations

from nameko.extensions import DependencyProvider

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
        key = (str(envelope["event_id"]), self._consumer)
        if session.get(self._row, key) is not None:
            return False
        session.add(self._row(event_id=key[0], consumer=key[1], received_at=utcnow()))
        session.flush()
        return True


class Inbox(DependencyProvider):
    """Injects an `InboxBook` named after the entrypoint that is running."""

    def __init__(self, row_cls):
        self.row_cls = row_cls

    def get_dependency(self, worker_ctx) -> InboxBook:
        consumer = f"{self.container.service_name}.{worker_ctx.entrypoint.method_name}"
        return InboxBook(self.row_cls, consumer)
