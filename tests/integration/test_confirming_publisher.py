"""The confirming publisher (services/common/amqp.py) on a real broker: a batch goes to the socket in one
write, arrives whole and in order, and a batch that fails half-way has sent nothing."""
from __future__ import annotations

import json

import pytest

from services.common.amqp import ConfirmingPublisher, Outgoing, PublishFailed
from tests.amqp_helpers import Probe
from tests.waiting import wait_until

EXCHANGE = "pubtest.events"


def outgoing(n: int, start: int = 0, **extra) -> list[Outgoing]:
    return [Outgoing(exchange=EXCHANGE, routing_key="thing_noted", message_id=f"m-{i}", type="thing_noted",
                     body=json.dumps({"n": i}).encode(), **extra) for i in range(start, start + n)]


@pytest.fixture
def publisher(fresh_vhost_uri):
    publisher = ConfirmingPublisher(fresh_vhost_uri, "pubtest", exchanges=(EXCHANGE,))
    yield publisher
    publisher.close()


@pytest.fixture
def probe(fresh_vhost_uri, publisher):
    publisher.publish([])  # connects and declares the exchange
    probe = Probe(fresh_vhost_uri, EXCHANGE)
    yield probe
    probe.close()


def counting_writes(publisher: ConfirmingPublisher) -> list[int]:
    """The sizes of what the publisher hands its socket, from now on."""
    writes: list[int] = []
    transport = publisher._conn.transport
    send = transport._write

    def counted(data):
        writes.append(len(data))
        return send(data)

    transport._write = counted
    return writes


def test_a_batch_goes_to_the_socket_in_one_write_and_arrives_whole_in_order(publisher, probe):
    writes = counting_writes(publisher)
    publisher.publish(outgoing(50))
    assert len(writes) == 1, f"the batch took {len(writes)} writes"
    wait_until(lambda: len(probe.poll()) == 50, timeout=10, message="all 50 on the exchange")
    assert [body["n"] for body in probe.poll()] == list(range(50))
    publisher.publish(outgoing(1, start=50))  # the next batch on the same connection
    assert len(writes) == 2
    wait_until(lambda: len(probe.poll()) == 51, timeout=10, message="the 51st")


def test_a_batch_that_fails_half_way_sends_nothing_and_is_sent_whole_when_published_again(publisher, probe):
    good = outgoing(3)
    bad = Outgoing(exchange=EXCHANGE, routing_key="thing_noted", message_id="m-bad", body=b"{}",
                   headers={"x-thing": object()})  # no AMQP table can carry it
    with pytest.raises(PublishFailed):
        publisher.publish([*good, bad])
    publisher.publish(good)  # what the relay does: the batch again, on a new connection
    wait_until(lambda: len(probe.poll()) >= 3, timeout=10, message="the batch published again")
    assert [body["n"] for body in probe.poll()] == [0, 1, 2]  # once each: nothing of the failed try went out
