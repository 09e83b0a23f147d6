"""Digests: a relay round's envelopes of some events, in one message, for consumers of them.

A consumer of events every ticket has (intake's status mirror follows eleven of dispatch's lifecycle events,
five or six a ticket; dispatch opens a case for each ticket_received) pays the runtime's cost per
message (frames, the AMQP client, a nameko worker, the ack: about 0.6 ms of its CPU each on a 2-core
machine, more than its own work on them). So a producer may declare digests
(`events.DIGESTS`: name → the events it carries): besides each event, sent on its own as always for every
other consumer, its outbox relay sends one message a round with the envelopes of that round's events of a
digest, on `<service>.events` with the routing key `<name>.digest`, as a JSON array in the order they were
written. A consumer of the digest (`on_event(source, *events, digest=name)`) binds that key instead of the
events'. Each envelope in it is the event as sent alone, with its own `event_id`; the digest's message id
is derived from them, so a relay's re-send of the same round repeats it. A digest is at least once, as an
event is, and its envelopes may repeat one sent in an earlier digest (a round re-sent after a crash): the
consumer must be idempotent by what the envelopes say (the mirror: the ticket's version) or by an inbox row
per envelope (its `event_id`: every other consumer of a digest), not by message id.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Iterable, Sequence

from .envelope import MalformedEvent, decode_json

_ID_SPACE = uuid.UUID("6c1d9e52-8f0b-4b8e-a6f4-5d1f0c7a3e20")


def digest_key(name: str) -> str:
    """The routing key a digest is sent with."""
    return f"{name}.digest"


def compose(bodies: Sequence[str], event_ids: Iterable[str]) -> tuple[bytes, str]:
    """A digest of envelopes already sealed (JSON text, as the outbox keeps them): its body and message id."""
    body = ("[" + ",".join(bodies) + "]").encode("utf-8")
    return body, str(uuid.uuid5(_ID_SPACE, ",".join(event_ids)))


def split(body: Any) -> list:
    """The envelopes of a digest, each as it was decoded (checked one by one by the consumer); a single
    envelope (a part sent back alone, from the retry queue) is a digest of one. MalformedEvent when the
    message is neither."""
    body = decode_json(body)
    if isinstance(body, dict):
        return [body]
    if not isinstance(body, list):
        raise MalformedEvent(f"a digest is a JSON array of envelopes, got {type(body).__name__}")
    return body


class Digest:
    """One digest message in hand: acked once each of its parts was settled, or requeued whole should any
    part have to be (the broker then delivers it again, parts already handled included)."""

    def __init__(self, message, parts: int, on_acked):
        """`on_acked(digest)`, once it is acked."""
        self.message, self.parts, self.left, self.requeue, self.on_acked = message, parts, parts, False, on_acked
        self.parked = 0  # parts sent to the retry or dead-letter queue, as messages of their own

    def settled(self, requeue: bool) -> None:
        self.requeue = self.requeue or requeue
        self.left -= 1
        if self.left:
            return
        if self.requeue:
            self.message.requeue()
        else:
            self.message.ack()
            self.on_acked(self)


class Part:
    """One envelope of a digest, settled as a message of its own (messaging.DigestConsumer): what a consumer
    reads of a message (properties, headers, delivery info, channel) is the digest's, the body this envelope
    (as JSON, for a copy sent to the retry or dead-letter queue alone), the message id its event id."""

    def __init__(self, digest: Digest, item: Any):
        message = digest.message
        self.digest, self.item = digest, item
        self.channel, self.headers = message.channel, message.headers
        self.delivery_info, self.content_type = message.delivery_info, message.content_type
        self.properties = dict(message.properties or {})
        if isinstance(item, dict) and isinstance(item.get("event_id"), str):
            self.properties["message_id"] = item["event_id"]
        self.sdj_started = getattr(message, "sdj_started", None)

    @property
    def body(self) -> bytes:
        return json.dumps(self.item, ensure_ascii=False).encode("utf-8")

    def ack(self) -> None:
        self.digest.settled(requeue=False)

    def requeue(self) -> None:
        self.digest.settled(requeue=True)
