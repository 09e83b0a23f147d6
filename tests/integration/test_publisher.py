"""The outside channels of a demo or benchmark run publish from a process of their own (songdaojia/publisher.py):
every request once, at the offered rate, each stamped when it was sent; what they sent, why they stopped and the
CPU they used are there for the report."""
from __future__ import annotations

import json
from datetime import datetime

import pika
import pytest

from services.intake.client import EXCHANGE
from songdaojia.publisher import Publisher
from tests.waiting import wait_until

REQUESTS = [("hotline", {"channel": "hotline", "category": "801", "n": n}) for n in range(20)]


@pytest.fixture
def caught(fresh_vhost_uri):
    """intake's exchange with a queue catching every submission (intake itself is not needed here)."""
    connection = pika.BlockingConnection(pika.URLParameters(fresh_vhost_uri))
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, "topic", durable=True)
    channel.queue_declare("caught", durable=True)
    channel.queue_bind("caught", EXCHANGE, "submit.#")

    def bodies() -> list[dict]:
        got = []
        while (message := channel.basic_get("caught", auto_ack=True))[0] is not None:
            got.append(json.loads(message[2]))
        return got
    yield fresh_vhost_uri, bodies
    connection.close()


def test_it_publishes_every_request_once_at_the_offered_rate_and_reports_what_it_did(caught):
    uri, bodies = caught
    publisher = Publisher(uri, REQUESTS, rate=20)  # connected: nothing sent before start()
    assert publisher.sent == 0 and publisher.is_alive()
    publisher.start()
    publisher.join(60)
    assert not publisher.is_alive() and publisher.errors == []
    assert publisher.sent == len(REQUESTS)
    got = []
    wait_until(lambda: got.extend(bodies()) or len(got) >= len(REQUESTS), message="every request at the broker")
    assert sorted(body["n"] for body in got) == list(range(len(REQUESTS)))
    stamps = sorted(datetime.fromisoformat(body["submitted_at"]) for body in got)
    # each stamped as it went, 20 a second: the last of 20 goes 0.95 s after the first, not at once
    assert (stamps[-1] - stamps[0]).total_seconds() >= (len(REQUESTS) - 1) / 20 - 0.01
    assert publisher.cpu_seconds() > 0, "its CPU, for the load generator's figure"


def test_a_publisher_that_cannot_connect_says_so(fresh_vhost_uri):
    # no intake exchange on this vhost: the broker refuses the client at once
    with pytest.raises(RuntimeError, match="could not start.*publishing stopped after 0"):
        Publisher(fresh_vhost_uri, REQUESTS, rate=None)
