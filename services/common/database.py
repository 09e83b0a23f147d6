"""Each service's own database: SQLite (WAL) by default, PostgreSQL by URL.

`Database` is a nameko DependencyProvider: a worker gets a small object whose
`transaction()` yields a session that commits on success and rolls back on error.
Under eventlet a blocking driver stalls every green thread: SQLite calls are
kept short (no network I/O inside a transaction); psycopg2 is made cooperative
with psycogreen, and the pool is sized to the worker count.

Every transaction begun on a service's engines counts in its /metrics (`sdj_db_transactions_total`), labelled
with what began it: the worker's entrypoint, or what a background thread said it is doing (`doing`).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from nameko.extensions import DependencyProvider
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .operations import transaction_begun

_green_psycopg_patched = False

DOING: ContextVar[str] = ContextVar("sdj_doing", default="other")  # per green thread: what its transactions are for


MAX_OVERFLOW = 4  # connections beyond the pool in a burst: each instance's appetite stays bounded (README)


def make_engine(url: str, pool_size: int = 10, service: str | None = None) -> Engine:
    """`service`: count its transactions (count_transactions)."""
    engine = _engine(url, pool_size)
    if service is not None:
        count_transactions(engine, service)
    return engine


def _engine(url: str, pool_size: int) -> Engine:
    if url.startswith("sqlite"):
        _ensure_parent_dir(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               hide_parameters=True)  # errors in logs never carry residents' data
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        _make_psycopg_green()
        return create_engine(url, pool_size=pool_size, max_overflow=MAX_OVERFLOW, pool_pre_ping=True,
                             hide_parameters=True)
    return create_engine(url, hide_parameters=True)


def count_transactions(engine: Engine, service: str) -> None:
    """Each transaction begun on `engine` counts for `service`, by what the green thread beginning it is doing."""
    event.listen(engine, "begin", lambda _connection: transaction_begun(service, DOING.get()))


def doing(what: str) -> None:
    """Name what this green thread's transactions are for, from now on (a background part: `outbox relay`)."""
    DOING.set(what)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _ensure_parent_dir(url: str) -> None:
    """A new SQLite file and its folder are the owner's only: they hold residents' data."""
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:" and not url.startswith("sqlite:///:memory:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # SQLite gives its WAL the file's mode


def _make_psycopg_green() -> None:
    global _green_psycopg_patched
    if _green_psycopg_patched:
        return
    import eventlet.patcher
    if eventlet.patcher.is_monkey_patched("socket"):
        from psycogreen.eventlet import patch_psycopg
        patch_psycopg()
    _green_psycopg_patched = True


class Store:
    """What a worker sees: sessions bound to this service's engine."""

    def __init__(self, session_factory: sessionmaker):
        self._sessions = session_factory

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session


class Database(DependencyProvider):
    """Injects a `Store`; the URL comes from config key `DB_URL`. A worker's transactions count as its
    entrypoint's."""

    def setup(self) -> None:
        max_workers = int(self.container.config.get("max_workers", 10))
        self.engine = make_engine(self.container.config["DB_URL"], pool_size=max_workers + 2,
                                  service=self.container.service_name)
        self.store = Store(sessionmaker(self.engine, expire_on_commit=False))

    def worker_setup(self, worker_ctx) -> None:
        doing(worker_ctx.entrypoint.method_name)  # the worker's own green thread: its context is its own

    def stop(self) -> None:
        self.engine.dispose()

    def get_dependency(self, worker_ctx) -> Store:
        return self.store
