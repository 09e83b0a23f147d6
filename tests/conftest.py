"""Shared fixtures: throwaway RabbitMQ vhosts and throwaway databases.

Nothing here is service-specific. Real brokers and databases are used, each
test run (or test) in its own namespace, removed afterwards:

- `amqp_uri` (session): `amqp://guest:guest@127.0.0.1:5672/sdj-test-<8 hex>`,
  a vhost created for the session. It overrides nameko's fixture of the same
  name, which needs the management HTTP API; this one only needs `rabbitmqctl`.
- `fresh_vhost_uri` (function): the same, but a new vhost per test, for tests
  that must not see other tests' exchanges and queues. Both come from `Vhosts`,
  which makes and deletes them several at a time.
- `sqlite_url` (function): `sqlite:///<tmp_path>/test.db`.
- `postgres_admin_url` (session): `$SDJ_TEST_POSTGRES` or
  `postgresql://postgres@127.0.0.1:5432/postgres`.
- `postgres_url` (function): a database `sdj_test_<8 hex>` (UTF8) created for
  the test and dropped `WITH (FORCE)` afterwards.
- `db_url` (function, parametrized `sqlite` / `postgresql`): a test taking it
  runs once per backend.

Environment:
- `SDJ_TEST_AMQP`: broker base URI (scheme, credentials, host:port are used,
  the vhost part is replaced); default `amqp://guest:guest@127.0.0.1:5672/`.
- `SDJ_TEST_RABBITMQCTL`: the command that administers that broker, e.g.
  `rabbitmqctl -n rabbit@otherhost`; default `rabbitmqctl` (through `sudo -n`
  when not root, since Debian's wrapper only runs for root or rabbitmq).
- `SDJ_TEST_POSTGRES`: admin URL of a PostgreSQL server where the user may
  CREATE DATABASE.

A missing service is an error, not a skip: run `deploy/ensure-rabbitmq.sh` and
`deploy/ensure-postgres.sh`. Everything here also works when eventlet has
monkey-patched the process (subprocess and psycopg2 calls are plain blocking
calls from the test's own green thread).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from songdaojia.vhosts import ctl_command, delete_vhosts, make_vhosts

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- RabbitMQ -------------------------------------------------------------------


class Vhosts:
    """Throwaway vhosts, made `AHEAD` at a time and deleted `BEHIND` at a time.

    Each rabbitmqctl call starts an Erlang VM (about a second, more on a slow hour): a vhost made and
    deleted by a call each cost every test that took one 1.6 s or so of its 2–3. A test still gets a
    vhost nobody used before it; the one it used is deleted (closing what is still open in it) with the
    next `BEHIND`, and the rest when the session ends. The command is fixed when the pool is made, so a
    test pointing SDJ_RABBITMQCTL at a broker of its own (tests/e2e) does not send these calls there."""

    AHEAD = BEHIND = 8

    def __init__(self, base: str):
        self.base, self.ctl = base, ctl_command()
        self.unused: list[tuple[str, str]] = []  # (name, URI), made and never handed out
        self.used: list[str] = []

    def take(self) -> tuple[str, str]:
        if not self.unused:
            names = [f"sdj-test-{uuid.uuid4().hex[:8]}" for _ in range(self.AHEAD)]
            self.unused = list(zip(names, make_vhosts(self.base, names, ctl=self.ctl)))
        return self.unused.pop()

    def give_back(self, name: str) -> None:
        self.used.append(name)
        if len(self.used) >= self.BEHIND:
            self._delete()

    def close(self) -> None:
        self.used += [name for name, _ in self.unused]
        self.unused = []
        self._delete()

    def _delete(self) -> None:
        names, self.used = self.used, []
        delete_vhosts(names, ctl=self.ctl)


@pytest.fixture(scope="session")
def vhosts() -> Iterator[Vhosts]:
    pool = Vhosts(os.environ.get("SDJ_TEST_AMQP") or DEFAULT_AMQP)
    try:
        yield pool
    finally:
        pool.close()


def _throwaway_vhost(vhosts: Vhosts) -> Iterator[str]:
    name, uri = vhosts.take()
    try:
        yield uri
    finally:
        vhosts.give_back(name)


@pytest.fixture(scope="session")
def amqp_uri(vhosts) -> Iterator[str]:
    """AMQP URI of a vhost that exists for this test session only."""
    yield from _throwaway_vhost(vhosts)


@pytest.fixture
def fresh_vhost_uri(vhosts) -> Iterator[str]:
    """AMQP URI of a vhost that exists for this one test only (no test used it before)."""
    yield from _throwaway_vhost(vhosts)


# --- databases -------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{(tmp_path / 'test.db').as_posix()}"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return os.environ.get("SDJ_TEST_POSTGRES") or DEFAULT_POSTGRES


def _admin_connection(admin_url: str):
    import psycopg2
    from sqlalchemy.engine import make_url

    args = make_url(admin_url).translate_connect_args(username="user", database="dbname")
    try:
        connection = psycopg2.connect(connect_timeout=10, **args)
    except psycopg2.OperationalError as exc:
        raise RuntimeError(
            f"cannot connect to PostgreSQL at {make_url(admin_url)!r}: {str(exc).strip()}; "
            "is it up? run deploy/ensure-postgres.sh (or set SDJ_TEST_POSTGRES)"
        ) from None
    connection.autocommit = True  # CREATE/DROP DATABASE refuse to run in a transaction
    return connection


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """URL of a database `sdj_test_<8 hex>` that exists for this one test only."""
    from sqlalchemy.engine import make_url

    name = f"sdj_test_{uuid.uuid4().hex[:8]}"
    admin = _admin_connection(postgres_admin_url)
    try:
        with admin.cursor() as cursor:
            # template0 + UTF8: the same encoding whatever the cluster default is.
            cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
        try:
            url = make_url(postgres_admin_url).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A database URL; a test taking it runs on SQLite and on PostgreSQL."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param]
    return request.getfixturevalue(fixture)
