"""Services started in the test's own process, on a throwaway vhost and a throwaway database.

- `keys` (session): a keys folder as `./sdj secure` makes one (token signing key and JWKS, gateway
  secrets, Open311 clients); `keys.token(subject, role, area)` signs in as anyone.
- `start_service(cls, amqp_uri, db_url, **config)` (and `start(keys, …)` for wider fixtures): migrates the database, starts the service with
  those keys, its HTTP server on a free port, and every broker user being `guest` (a throwaway
  vhost has no users of its own; tests/integration/test_broker_rights.py sets real ones up);
  returns it with `.url`; everything started is stopped after the test.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml
from nameko.containers import ServiceContainer

from services.common.messaging import declare_topology
from services.common.migrations import upgrade
from songdaojia.peers import free_port
from songdaojia.security import ensure

GUEST_PUBLISHES_EVERYTHING = {name: "guest" for name in ("intake", "dispatch", "volunteer", "notify", "source")}


@dataclass
class Started:
    container: ServiceContainer
    url: str

    def stop(self) -> None:
        self.container.stop()


UNHURRIED = {"rate_per_minute": 1_000_000, "burst": 100_000}  # tests call Open311 faster than the public may


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    keys = ensure(tmp_path_factory.mktemp("keys"))
    clients = yaml.safe_load(keys.open311_clients.read_text())
    keys.open311_clients.write_text(yaml.safe_dump({**clients, "public": UNHURRIED}))
    return keys


def service_config(keys, amqp_uri: str, db_url: str, **config) -> dict:
    return {"AMQP_URI": amqp_uri, "DB_URL": db_url, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
            "AUTH": {"JWKS": str(keys.jwks), "REVOKED": str(keys.revoked), "ALGORITHMS": ["EdDSA"]},
            "BROKER_USERS": GUEST_PUBLISHES_EVERYTHING, "GATEWAYS": str(keys.gateways),
            "OPEN311_CLIENTS": str(keys.open311_clients), "RETRY_DELAYS": [0.05], **config}


def start(keys, service_cls, amqp_uri: str, db_url: str, migrate: bool = True, admin_uri: str | None = None,
          **config) -> Started:
    """Start a service (for fixtures of wider scope, which stop it themselves); `admin_uri`: who declares
    its exchanges and queues first, when the service's own login may not."""
    if migrate:
        upgrade(service_cls.name, db_url)
    cfg = service_config(keys, amqp_uri, db_url, **config)
    declare_topology(service_cls, {**cfg, "AMQP_URI": admin_uri or amqp_uri})  # as `prepare` does
    container = ServiceContainer(service_cls, cfg)
    try:
        container.start()
    except BaseException:  # refused to start (a test may expect it): nothing left running
        container.kill()
        raise
    return Started(container, f"http://{cfg['WEB_SERVER_ADDRESS']}")


@pytest.fixture
def start_service(keys):
    started: list[Started] = []

    def start_one(service_cls, amqp_uri: str, db_url: str, **config) -> Started:
        started.append(start(keys, service_cls, amqp_uri, db_url, **config))
        return started[-1]

    yield start_one
    for service in reversed(started):
        service.stop()
