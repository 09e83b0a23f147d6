"""Drive a service's handlers without a broker: nameko's `worker_factory` with the real database,
outbox and inbox, and a clock the test moves.

    w = Worker(DispatchService, tmp_path, clock=ManualClock(T0, scale=1.0), areas=AreaMap.load())
    w.call("open_case", [envelope])          # an event handler, as the consumer would call it
    w.sent()                               # [(routing_key, envelope dict)] its outbox holds
    with w.db.transaction() as s: ...      # what it stored

HTTP entrypoints are better checked through HTTP (tests/integration); this is for the rules
between an event and its effects: re-routing, expiry, escalation.
"""
from __future__ import annotations

import importlib
import json

from nameko.testing.services import worker_factory
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from services.common.database import Store, make_engine
from services.common.inbox import Inbox, InboxBook
from services.common.migrations import upgrade
from services.common.outbox import OutboxWriter


class Worker:
    def __init__(self, service_cls, tmp_path, clock=None, config: dict | None = None, db_url: str | None = None,
                 **dependencies):
        self.service_cls = service_cls
        url = db_url or f"sqlite:///{tmp_path}/{service_cls.name}.db"
        upgrade(service_cls.name, url)
        self.engine = make_engine(url)
        self.db = Store(sessionmaker(self.engine, expire_on_commit=False))
        events = importlib.import_module(f"services.{service_cls.name}.events")
        models = importlib.import_module(f"services.{service_cls.name}.models")
        self.outbox_rows = models.OutboxRow
        inbox = next(v for v in vars(service_cls).values() if isinstance(v, Inbox))
        self._inbox_statements = inbox.statements
        outbox = OutboxWriter(models.OutboxRow, f"{service_cls.name}.events", events.SCHEMAS, wake=lambda: None)
        deps = {"db": self.db, "outbox": outbox, **dependencies}
        if clock is not None:
            deps["clock"] = clock
        self.clock = clock
        self.config = config or {}
        self.deps = deps

    def service(self, entrypoint: str = "test"):
        """A service instance as one worker sees it (its inbox named after `entrypoint`)."""
        instance = worker_factory(self.service_cls, **self.deps,
                                  inbox=InboxBook(self._inbox_statements, f"{self.service_cls.name}.{entrypoint}"))
        if hasattr(instance, "config"):
            instance.config = self.config
        return instance

    def call(self, entrypoint: str, *args, **kwargs):
        return getattr(self.service(entrypoint), entrypoint)(*args, **kwargs)

    def sent(self, event: str | None = None, exchange: str | None = "") -> list[tuple[str, dict]]:
        """What the outbox holds for `exchange` (default: the service's events; None: every exchange),
        oldest first: (routing key, envelope)."""
        exchange = f"{self.service_cls.name}.events" if exchange == "" else exchange
        with self.db.transaction() as s:
            rows = s.scalars(select(self.outbox_rows).order_by(self.outbox_rows.id)).all()
            out = [(r.routing_key, json.loads(r.body)) for r in rows if exchange is None or r.exchange == exchange]
        return [(k, e) for k, e in out if event is None or e["event"] == event]


class Staff:
    """Stands in for a service's token check (its `staff` dependency): the test says who is signed in."""

    def __init__(self):
        self.who = None

    def of(self, request):
        return self.who
