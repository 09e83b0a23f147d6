"""Idempotent consumers: the inbox row and the state change share one transaction."""
from __future__ import annotations

from nameko.extensions import DependencyProvider
from sqlalchemy import bindparam, insert, select

from .envelope import utcnow


class InboxBook:
    def __init__(self, statements: tuple, consumer: str):
        self._seen, self._record = statements
        self._consumer = consumer

    def first_delivery(self, session, envelope: dict) -> bool:
        """True the first time this consumer sees the event; records it in `session`.

        Two workers racing on the same event both get True, but only one commit
        succeeds: the other fails on the primary key and is retried, then sees False.
        """
        key = {"event_id": str(envelope["event_id"]), "consumer": self._consumer}
        if session.execute(self._seen, key).first() is not None:
            return False
        session.execute(self._record, {**key, "received_at": utcnow()})
        return True


class Inbox(DependencyProvider):
    """Injects an `InboxBook` named after the entrypoint that is running."""

    def __init__(self, row_cls):
        table = row_cls.__table__  # built once (SQLAlchemy caches their SQL by statement)
        self.statements = (select(table.c.event_id).where(table.c.event_id == bindparam("event_id"),
                                                          table.c.consumer == bindparam("consumer")),
                           insert(table))

    def get_dependency(self, worker_ctx) -> InboxBook:
        consumer = f"{self.container.service_name}.{worker_ctx.entrypoint.method_name}"
        return InboxBook(self.statements, consumer)
