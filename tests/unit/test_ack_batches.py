"""Acks given in one turn of the event loop leave in one write per connection (messaging.RawQueueConsumer)."""
from __future__ import annotations

from types import SimpleNamespace

import eventlet
import pytest

from services.common.messaging import RawQueueConsumer


class Transport:
    def __init__(self, fail: bool = False):
        self.writes: list[bytes] = []
        self.fail = fail
        self.connection = SimpleNamespace(transport=self)  # one connection, its messages' channels share it

    def _write(self, data: bytes) -> None:
        if self.fail:
            raise ConnectionResetError("the broker went away")
        self.writes.append(bytes(data))


class Message:
    """What a kombu message does on ack: one frame to its connection's transport."""

    def __init__(self, tag: int, transport: Transport | None):
        self.tag = tag
        self.channel = SimpleNamespace(connection=None if transport is None else transport.connection)
        self.acked = False

    def ack(self) -> None:
        self.channel.connection.transport._write(b"ack %d;" % self.tag)
        self.acked = True


@pytest.fixture
def consumer() -> RawQueueConsumer:
    consumer = RawQueueConsumer()
    consumer._acks = []  # what setup() does, without a container
    return consumer


def test_the_acks_of_one_turn_go_in_one_write_as_it_ends(consumer):
    transport = Transport()
    messages = [Message(tag, transport) for tag in (1, 2, 3)]
    for message in messages:
        consumer.ack_message(message)
    assert transport.writes == []  # not yet: the turn is not over
    eventlet.sleep(0)
    eventlet.sleep(0)
    assert transport.writes == [b"ack 1;ack 2;ack 3;"]
    consumer.ack_message(Message(4, transport))
    eventlet.sleep(0)
    eventlet.sleep(0)
    assert transport.writes[1:] == [b"ack 4;"]


def test_each_connection_gets_its_own_write_and_a_broken_one_keeps_nothing_from_the_others(consumer, caplog):
    good, broken = Transport(), Transport(fail=True)
    consumer.ack_message(Message(1, good))
    consumer.ack_message(Message(7, broken))
    consumer.ack_message(Message(2, good))
    consumer.ack_message(Message(9, None))  # its connection is gone: the broker has it back already
    consumer.send_acks()
    assert good.writes == [b"ack 1;ack 2;"]
    assert broken.writes == []
    assert "could not ack 1 messages" in caplog.text
    consumer.send_acks()  # nothing left over: each ack was given once
    assert good.writes == [b"ack 1;ack 2;"]
