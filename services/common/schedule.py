"""Durable timers: rows with a due time in a service's own database, fired by whoever claims them first.

Every instance of a service polls (`TICK_SECONDS`); `claim_due` locks the due rows it reads
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two instances never take the same row; SQLite has one
writer at a time, and a transaction that read a row another one changed fails and is retried on the
next tick). Firing must be idempotent: the same transaction marks the row fired and records the
effect, so a crash before commit fires it again and a commit fires it once.
"""
from __future__ import annotations

from nameko.timer import Timer as NamekoTimer
from sqlalchemy import Select

TICK_SECONDS = 0.5  # how often due rows are looked for: deadlines are minutes, scaled ones seconds
BATCH = 100


def claim_due(session, query: Select, limit: int = BATCH) -> list:
    """The rows of `query` (already filtered to what is due, ordered) locked for this transaction."""
    return list(session.scalars(query.limit(limit).with_for_update(skip_locked=True)))


class Timer(NamekoTimer):
    """nameko's timer entrypoint, safe to stop twice or before it started: a SIGTERM that arrives while
    the container is still starting made nameko's own fail (`gt` None, or its stop event sent again)
    and left `nameko run` hanging."""

    def stop(self):
        if not self.should_stop.ready():
            self.should_stop.send(True)
        if self.gt is not None:
            self.gt.wait()

    def kill(self):
        if self.gt is not None:
            self.gt.kill()


timer = Timer.decorator
