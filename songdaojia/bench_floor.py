"""The runtime's floor, as `./sdj bench` prints it: what one message costs when its handler does nothing.

An empty nameko event handler runs in a process of its own (`nameko run … EmptyHandler`, as the services run)
and is fed `count` messages at a steady `rate` through the broker. The CPU that process and the broker spend
per message is what every message of a ticket costs before any of our work (inbox, database, outbox, mail):
times the messages a ticket delivers, it is the part of a ticket's CPU that fewer messages, not cheaper
handlers, would save.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from nameko.events import event_handler

# `nameko run` imports this module for EmptyHandler: the benchmark's own imports stay inside its functions

SOURCE, EVENT = "bench_floor_source", "ping"


class EmptyHandler:
    name = "bench_floor"

    @event_handler(SOURCE, EVENT)
    def handle(self, payload):
        """Nothing: the message's cost is the runtime's (kombu, nameko's worker, eventlet) and the broker's."""


QUEUE = f"evt-{SOURCE}-{EVENT}--{EmptyHandler.name}.handle"  # nameko's name for the handler's queue


def runtime_floor(amqp_uri: str, body: bytes, count: int = 4000, rate: float = 500.0,
                  timeout: float = 60.0) -> dict[str, float]:
    """µs of CPU per message in the consumer and in the broker (routing, delivery, ack; the publish too)."""
    import pika

    from .demo import _broker_pid
    from .stack import process_cpu_seconds
    nameko = str(Path(sys.executable).with_name("nameko"))
    root = Path(__file__).resolve().parent.parent
    consumer = subprocess.Popen([nameko, "run", "--broker", amqp_uri, f"{__name__}:EmptyHandler"], cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        channel = _when_bound(connection, consumer, time.monotonic() + timeout)
        broker = _broker_pid(amqp_uri)
        props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        before = process_cpu_seconds(consumer.pid), process_cpu_seconds(broker) if broker else 0.0
        start = time.monotonic()
        for i in range(count):
            channel.basic_publish(f"{SOURCE}.events", EVENT, body, props)
            ahead = start + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        _until_settled(channel, consumer.pid, time.monotonic() + timeout)
        after = process_cpu_seconds(consumer.pid), process_cpu_seconds(broker) if broker else 0.0
    finally:
        connection.close()
        consumer.terminate()
        try:
            consumer.wait(10)
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()
    return {"consumer µs": round((after[0] - before[0]) * 1e6 / count),
            "broker µs": round((after[1] - before[1]) * 1e6 / count) if broker else float("nan")}


def _when_bound(connection, consumer: subprocess.Popen, deadline: float):
    """A channel, once the handler's queue exists (nameko declares and binds it as it starts)."""
    import pika.exceptions
    while True:
        channel = connection.channel()
        try:
            channel.queue_declare(QUEUE, passive=True)
            return channel
        except pika.exceptions.ChannelClosedByBroker:  # not there yet: the passive declare closed the channel
            if consumer.poll() is not None:
                raise RuntimeError(f"the empty handler's process ended ({consumer.returncode}) before it bound "
                                   f"{QUEUE}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{QUEUE} was not declared in time") from None
            time.sleep(0.1)


def _until_settled(channel, pid: int, deadline: float) -> None:
    """Until the queue is empty and the consumer has stopped spending CPU (what it holds unacked is worked)."""
    from .stack import process_cpu_seconds
    while channel.queue_declare(QUEUE, passive=True).method.message_count and time.monotonic() < deadline:
        time.sleep(0.05)
    spent = process_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = process_cpu_seconds(pid)
        if now - spent < 0.002:
            return
        spent = now
