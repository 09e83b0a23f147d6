"""Shared fixtures: throwaway RabbitMQ vhosts and throwaway databases.

Nothing here is service-specific. Real brokers and databases are used, each
test run (or test) in its own namespace, removed afterwards:

- `amqp_uri` (session): `amqp://guest:guest@127.0.0.1:5672/sdj-test-<8 hex>`,
  a vhost created for the session. It overrides nameko's fixture of the same
  name, which needs the management HTTP API; this one only needs `rabbitmqctl`.
- `fresh_vhost_uri` (function): the same, but a new vhost per test, for tests
  that must not see other tests' exchanges and queues.
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

from songdaojia.vhosts import throwaway_vhost

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- RabbitMQ -------------------------------------------------------------------


def _throwaway_vhost() -> Iterator[str]:
    base = os.environ.get("SDJ_TEST_AMQP") or DEFAULT_AMQP
    with throwaway_vhost(base) as uri:
        yield uri


@pytest.fixture(scope="session")
def amqp_uri() -> Iterator[str]:
    """AMQP URI of a vhost that exists for this test session only."""
    yield from _throwaway_vhost()


@pytest.fixture
def fresh_vhost_uri() -> Iterator[str]:
    """AMQP URI of a vhost that exists for this one test only."""
    yield from _throwaway_vhost()


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
