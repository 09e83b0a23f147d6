"""Small pika helpers for tests that look at what is on the broker.

Use them against a throwaway vhost (the `amqp_uri` / `fresh_vhost_uri`
fixtures): they consume and acknowledge messages, i.e. they are destructive.

- `amqp_queue_messages(uri, queue)`: take every message currently in `queue`.
- `declare_probe(uri, exchange)`: watch an event exchange through a private queue.
- `Probe(uri, exchange)`: every JSON body seen on an exchange since the probe was made.

Typical use for events:

    probe = Probe(amqp_uri, "intake.events")
    ...  # make the service emit
    wait_until(lambda: probe.events("ticket_received"), message="ticket_received")
    probe.close()
"""
from __future__ import annotations

import copy
import importlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any, NamedTuple

import pika
from pika.adapters.blocking_connection import BlockingChannel

from services.common.digests import compose, digest_key


class GotMessage(NamedTuple):
    """One message taken from a queue; unpacks as (body, properties, headers)."""

    body: bytes
    properties: pika.BasicProperties
    headers: dict[str, Any]


def connect(uri: str) -> pika.BlockingConnection:
    """A blocking pika connection to `uri` (amqp://user:pass@host:port/vhost; of several separated by `;`,
    a cluster's nodes, the first that answers)."""
    return pika.BlockingConnection([pika.URLParameters(u) for u in uri.split(";") if u.strip()])


def amqp_queue_messages(uri: str, queue: str) -> list[GotMessage]:
    """Get and ack every message that is in `queue` right now, oldest first.

    Does not wait for messages still on their way: wrap it in
    `tests.waiting.wait_until` when they may arrive later. A missing queue
    raises pika.exceptions.ChannelClosedByBroker (404 NOT_FOUND).
    """
    connection = connect(uri)
    try:
        channel = connection.channel()
        messages: list[GotMessage] = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                return messages
            messages.append(GotMessage(body, properties, dict(properties.headers or {})))
            channel.basic_ack(method.delivery_tag)
    finally:
        if connection.is_open:
            connection.close()


def declare_probe(
    uri: str, exchange: str, routing_key: str = "#", passive: bool = False
) -> tuple[pika.BlockingConnection, BlockingChannel, str]:
    """Bind a private queue to the topic `exchange` and return (connection, channel, queue).

    The exchange is declared durable topic (what nameko declares for
    `<service>.events`, so the declarations agree whichever comes first). The
    queue is server-named and exclusive: it disappears with the connection,
    which the caller closes. Only messages published after this call are seen.
    `passive`: only look the exchange up (a login with no right to declare it, e.g. a monitor's).
    """
    connection = connect(uri)
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True, passive=passive)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, exchange, routing_key=routing_key)
    except BaseException:
        if connection.is_open:
            connection.close()
        raise
    return connection, channel, queue


class Probe:
    """Watches a topic exchange: `poll()` returns every JSON body seen so far.

        probe = Probe(uri, "intake.events")
        wait_until(lambda: [e for e in probe.poll() if e["event"] == "ticket_received"])
    """

    def __init__(self, uri: str, exchange: str, routing_key: str = "#", passive: bool = False):
        self.connection, self.channel, self.queue = declare_probe(uri, exchange, routing_key, passive)
        self.bodies: list[Any] = []

    def poll(self) -> list[Any]:
        while True:
            method, _properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return list(self.bodies)
            self.bodies.append(json.loads(body))

    def events(self, name: str) -> list[dict]:
        return [b for b in self.poll() if isinstance(b, dict) and b.get("event") == name]

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def publish_event(uri: str, source: str, example: dict, ticket_id: str, occurred_at: datetime | None = None,
                  user_id: str = "guest", event_id: str | None = None, **data) -> dict:
    """Publish a producer's example event (from `source`'s events.EXAMPLES) about `ticket_id`, with
    `data` changed, as `user_id`, on `<source>.events`: what that service would have sent, the event and,
    when one of `source`'s digests carries it, that digest with the event alone (common/digests.py).
    `event_id`: that of an event sent before (a relay's re-send); a new one by default."""
    event = copy.deepcopy(example)
    event.update(event_id=event_id or str(uuid.uuid4()), ticket_id=ticket_id, correlation_id=ticket_id,
                 occurred_at=(occurred_at or datetime.now(timezone.utc)).isoformat())
    event["data"].update(data)
    if "ticket_no" in event["data"]:
        event["data"]["ticket_no"] = ticket_id
    connection = connect(uri)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(f"{source}.events", event["event"], json.dumps(event).encode(),
                              pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                   message_id=event["event_id"], user_id=user_id))
        for name, events in getattr(importlib.import_module(f"services.{source}.events"), "DIGESTS", {}).items():
            if event["event"] in events:
                body, message_id = compose([json.dumps(event)], [event["event_id"]])
                channel.basic_publish(f"{source}.events", digest_key(name), body,
                                      pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                           message_id=message_id, user_id=user_id))
    finally:
        connection.close()
    return event
