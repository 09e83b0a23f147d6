"""What ops ask every service: alive, ready (database, broker, outbox lag), and Prometheus metrics."""
from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from services.dispatch.service import DispatchService
from services.intake.events import EXAMPLES as INTAKE
from services.intake.service import IntakeService
from services.notify.service import NotifyService
from services.volunteer.service import VolunteerService
from songdaojia.demo import counters
from tests.amqp_helpers import publish_event
from tests.waiting import wait_until


def samples(url: str) -> dict[tuple, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize("service_cls", [IntakeService, DispatchService, VolunteerService, NotifyService])
def test_every_service_says_it_is_alive_and_ready(service_cls, fresh_vhost_uri, sqlite_url, start_service):
    extra = {"CHANNEL": "email", "EMAIL": {"host": "127.0.0.1", "port": 2525, "sender": "sdj@localhost"}} \
        if service_cls is NotifyService else {}
    service = start_service(service_cls, fresh_vhost_uri, sqlite_url, **extra)
    live = requests.get(f"{service.url}/health/live", timeout=10)
    assert (live.status_code, live.json()["status"]) == (200, "live")
    ready = requests.get(f"{service.url}/health/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == ready.json()["checks"]["broker"] == "ok"
    assert requests.get(f"{service.url}/metrics", timeout=10).headers["Content-Type"].startswith("text/plain")


def test_not_ready_when_the_broker_is_unreachable(fresh_vhost_uri, sqlite_url, start_service):
    service = start_service(IntakeService, fresh_vhost_uri, sqlite_url)
    service.container.config["AMQP_URI"] = "amqp://guest:guest@127.0.0.1:1/"  # what /health/ready will try
    ready = requests.get(f"{service.url}/health/ready", timeout=20)
    assert ready.status_code == 503 and ready.json()["checks"]["broker"].startswith("unreachable")


def test_dispatch_counts_what_it_handled_dead_lettered_and_holds(fresh_vhost_uri, db_url, start_service):
    service = start_service(DispatchService, fresh_vhost_uri, db_url)
    queue = (("queue", "dispatch.open_case"), ("service", "dispatch"))
    handled, dead = (("sdj_messages_total", (("outcome", outcome),) + queue) for outcome in ("handled", "dead_lettered"))
    before = samples(service.url)  # the counters are the process's: services started earlier here count too
    publish_event(fresh_vhost_uri, "intake", INTAKE["ticket_received"], "SDJ-261127-METRIC01")
    publish_event(fresh_vhost_uri, "intake", INTAKE["ticket_received"], "SDJ-261127-METRIC02",
                  village_code="000000000000")  # not a village: dead-lettered

    def counted():
        seen = samples(service.url)
        return (seen.get(handled, 0) - before.get(handled, 0) == 1
                and seen.get(dead, 0) - before.get(dead, 0) == 1 and seen)
    seen = wait_until(counted, timeout=30, message="one handled, one dead-lettered")
    assert seen[("sdj_handler_seconds_count", queue)] - before.get(("sdj_handler_seconds_count", queue), 0) == 2
    assert seen[("sdj_state", (("label", "offered"), ("name", "tickets_by_state"), ("service", "dispatch")))] == 1
    assert ("sdj_outbox_lag_seconds", (("service", "dispatch"),)) in seen


def test_dispatch_counts_its_transactions_by_what_began_them(fresh_vhost_uri, db_url, start_service):
    service = start_service(DispatchService, fresh_vhost_uri, db_url)
    opened, relayed, unnamed = (("sdj_db_transactions_total", (("by", by), ("service", "dispatch")))
                                for by in ("open_case", "outbox relay", "other"))
    before = samples(service.url)
    publish_event(fresh_vhost_uri, "intake", INTAKE["ticket_received"], "SDJ-261127-METRIC03")

    def counted():  # the case opened in a worker of open_case; its event sent by the relay, in its own transactions
        seen = samples(service.url)
        return seen.get(opened, 0) > before.get(opened, 0) and seen.get(relayed, 0) > before.get(relayed, 0) and seen
    seen = wait_until(counted, timeout=30, message="open_case's and the relay's transactions counted")
    # every transaction dispatch began is put down to what began it (the counters are the process's: a test that
    # calls a service's parts directly, from its own thread, counts as `other`)
    assert seen.get(unnamed, 0) == before.get(unnamed, 0)
    read = counters({"dispatch": service})["dispatch"]  # as the benchmark reads them
    assert read[("sdj_db_transactions_total", "dispatch", "open_case")] == seen[opened]
    assert read[("sdj_messages_total", "dispatch", "dispatch.open_case", "handled")] >= 1
