"""Reliable consuming: retry with back-off, then a dead-letter queue that keeps the reason.

nameko acks a message even when its handler raised, and kombu raises inside the
consumer loop on a body it cannot decode. Here the consumer receives raw
messages, decodes them itself, and settles every message explicitly:
- handled                     -> ack
- malformed (can never work)  -> dead-letter queue with the reason, ack
- failed (may work later)     -> retry queue with a delay, ack; after the
                                 last attempt, the dead-letter queue
- not from whom it must be    -> dead-letter queue with the reason, ack
The original is acked only after the broker confirmed the copy, so nothing is lost.
A batch (BatchConsumer) or a digest (DigestConsumer) is settled message by message, envelope
by envelope in a digest: a poison one is parked alone and the others are handled.

Who sent a message is its AMQP `user_id`, which the broker checks against the login
that published it. An event is accepted only from the broker user of the service that
owns the exchange (config `BROKER_USERS`); a submission from anyone allowed to publish
there, who must say who they are. Copies go through the service's own `<service>.parking`
exchange (never the default exchange, which reaches every queue) and remember the
original sender and routing key in `x-original-user-id` / `x-original-routing-key`:
when a copy comes back from the retry queue, it is judged by its original.
"""
from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from functools import partial
from typing import Callable

import eventlet
from eventlet.hubs import get_hub
from kombu import Connection, Exchange, Queue, binding
from marshmallow import ValidationError
from nameko.containers import ServiceContainer
from nameko.messaging import Consumer, QueueConsumer

from .amqp import ConfirmingPublisher, Outgoing, PublishFailed, broker_uris, broker_user, corked
from .digests import Digest, Part, digest_key, split
from .envelope import MalformedEvent, open_envelope, utcnow
from .faults import crash_point
from .lanes import Lanes
from .operations import settled

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS = (0.2, 1.0, 5.0, 15.0)  # seconds; then dead-letter


DEAD_LETTER_KEY = "dead-letter"


def dead_letter_queue(service: str) -> str:
    return f"{service}.dead-letter"


def parking_exchange(service: str) -> str:
    """Where a service puts copies it parks: retries (keyed by their queue) and dead letters."""
    return f"{service}.parking"


@dataclass(frozen=True)
class Origin:
    """Who published a message, and with which routing key, as the broker saw the original."""
    sender: str
    routing_key: str


def origin_of(message, own_user: str) -> Origin:
    props, headers = message.properties or {}, message.headers or {}
    user = props.get("user_id") or ""
    if user == own_user and "x-original-user-id" in headers:  # our own copy back from the retry queue
        return Origin(str(headers["x-original-user-id"]), str(headers.get("x-original-routing-key", "")))
    return Origin(user, (message.delivery_info or {}).get("routing_key", ""))


QUEUE_TYPES = ("auto", "quorum", "classic")


def queue_type(config: dict) -> str:
    """Config QUEUE_TYPE: `quorum` (replicated on a cluster's nodes: a node may stop and nothing is lost),
    `classic`, or `auto` (the default): quorum when AMQP_URI names several brokers (a cluster), else classic.
    A queue keeps the type it was declared with: switching an existing deployment means new queues."""
    chosen = str(config.get("QUEUE_TYPE") or "auto").lower()
    if chosen not in QUEUE_TYPES:
        raise ValueError(f"QUEUE_TYPE: {chosen!r} is not one of {', '.join(QUEUE_TYPES)}")
    if chosen == "auto":
        return "quorum" if len(broker_uris(config["AMQP_URI"])) > 1 else "classic"
    return chosen


def queues_for(service: str, name: str, exchange: str, routing_keys,
               create_source: bool = False, kind: str = "classic") -> tuple[Queue, Queue, Queue]:
    """The work queue, its retry queue (expired messages flow back) and the dead-letter queue,
    all of one `kind` (queue_type).

    Another service's exchange is only looked up (passive): declaring it needs rights on it
    that a consumer does not have; `prepare` creates every exchange first (`create_source`).
    A quorum retry queue dead-letters at least once (a message leaves it only when the work
    queue took it), which needs `reject-publish` overflow.
    """
    own = exchange.startswith(f"{service}.")
    source = Exchange(exchange, type="topic", durable=True, passive=not (own or create_source))
    parking = Exchange(parking_exchange(service), type="direct", durable=True)
    typed = {"x-queue-type": "quorum"} if kind == "quorum" else {}
    work = Queue(name, durable=True, auto_delete=False, queue_arguments=dict(typed) or None,
                 bindings=[binding(source, routing_key=k) for k in routing_keys])
    retry_arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": name, **typed}
    if typed:
        retry_arguments.update({"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
    retry = Queue(f"{name}.retry", durable=True, queue_arguments=retry_arguments,
                  bindings=[binding(parking, routing_key=f"{name}.retry")])
    dead = Queue(dead_letter_queue(service), durable=True, queue_arguments=dict(typed) or None,
                 bindings=[binding(parking, routing_key=DEAD_LETTER_KEY)])
    return work, retry, dead


class RawQueueConsumer(QueueConsumer):
    """nameko's queue consumer, handing providers the undecoded message. Its acks leave in batches: those
    given in one turn of the event loop go to the socket in one write as the turn ends (under load, one
    write for several messages, not a write and a system call each)."""

    def setup(self):
        super().setup()
        self._acks: list = []

    def ack_message(self, message):
        if not self._acks:
            get_hub().schedule_call_global(0, self.send_acks)
        self._acks.append(message)

    def send_acks(self) -> None:
        """Send the acks given so far. A connection gone meanwhile (a broker node restarted) has put its
        messages back already: the broker delivers them again, and the inbox makes that harmless."""
        acks, self._acks = self._acks, []
        by_connection: dict[int, tuple] = {}
        for message in acks:
            connection = message.channel.connection
            if connection is not None:
                by_connection.setdefault(id(connection), (connection, []))[1].append(message)
        for connection, messages in by_connection.values():
            try:
                with corked(connection.transport):
                    for message in messages:
                        message.ack()
            except Exception as exc:
                log.warning("could not ack %d messages (%r); the broker delivers them again", len(messages), exc)

    def stop(self):
        self.send_acks()  # what was handled is not delivered again after a clean stop
        super().stop()

    def get_consumers(self, consumer_cls, channel):
        for provider in self._providers:
            consumer = consumer_cls(queues=[provider.queue],
                                    on_message=partial(self._on_raw_message, provider))
            consumer.qos(prefetch_count=self.prefetch_count)
            self._consumers[provider] = consumer
        return self._consumers.values()

    def _on_raw_message(self, provider, message):
        self.handle_message(provider, message.body, message)

    def consume(self, *args, **kwargs):
        # kombu waits up to a second per loop for messages before it looks at a stop request, and a
        # stop takes two loops: a shorter wait lets a service stop (restart, deploy) in a fraction of that
        kwargs.setdefault("safety_interval", 0.2)
        return super().consume(*args, **kwargs)


class UrgentQueueConsumer(RawQueueConsumer):
    """The urgent lane's own connection and drain loop (lanes.py): a separate shared extension of the container."""


class ReliableConsumer(Consumer):
    """Consume a queue bound to `exchange` by `routing_keys`, never losing a message.

    `decode(body, message, origin)` returns the handler's positional arguments or raises
    MalformedEvent; a handler that raises MalformedEvent or a marshmallow
    ValidationError is dead-lettered at once, any other error is retried.
    `source` names the service whose broker user alone may publish here (its
    `BROKER_USERS` entry); without it, any sender that gives its user_id is accepted.
    `on_dead_letter(message, reason, bad_input)` may return messages (e.g. telling the
    sender why; `bad_input` is False for our own error, retried until we gave up) to
    publish in the same confirmed batch as the dead-letter copy: the original is acked
    only once the broker confirmed them all, else it is requeued.
    `urgent`: the handler acknowledges residents and goes first (lanes.py).
    """
    queue_consumer = RawQueueConsumer()
    lanes = Lanes()

    def __init__(self, exchange: str, routing_keys: tuple[str, ...], decode: Callable,
                 queue_name: str | None = None, source: str | None = None,
                 on_dead_letter: Callable[..., list[Outgoing]] | None = None, urgent: bool = False, **kwargs):
        self.urgent = urgent
        if urgent:
            self.queue_consumer = UrgentQueueConsumer()
        self.exchange_name = exchange
        self.routing_keys = routing_keys
        self.decode = decode
        self.queue_name = queue_name
        self.source = source
        self.on_dead_letter = on_dead_letter
        super().__init__(queue=None, **kwargs)

    def setup(self) -> None:
        cfg = self.container.config
        service = self.container.service_name
        self.queue_name = self.queue_name or f"{service}.{self.method_name}"
        self.retry_delays = tuple(cfg.get("RETRY_DELAYS", DEFAULT_RETRY_DELAYS))
        self.queue, self.retry_queue, self.dead_letters = queues_for(
            service, self.queue_name, self.exchange_name, self.routing_keys, kind=queue_type(cfg))
        self.parking = parking_exchange(service)
        self.own_user = broker_user(cfg["AMQP_URI"])
        self.expected_sender = None if self.source is None else expected_publisher(cfg, self.source)
        self.publisher = ConfirmingPublisher(cfg["AMQP_URI"], service)
        with Connection(cfg["AMQP_URI"]) as conn:
            self.declare(conn)
        super().setup()

    def declare(self, conn: Connection) -> None:
        channel = conn.default_channel
        for queue in (self.queue, self.retry_queue, self.dead_letters):
            queue(channel).declare()

    def stop(self) -> None:
        super().stop()
        self.publisher.close()

    def _decoded(self, body, message) -> tuple | None:
        """The handler's arguments; None when the message is malformed (then it is dead-lettered already)."""
        try:
            return self.decode(body, message, self._check_sender(message))
        except MalformedEvent as exc:
            self._settle(message, self._dead_letter, str(exc), "MalformedEvent")
            return None

    def handle_message(self, body, message):
        args = self._decoded(body, message)
        if args is None:
            return
        context_data = self.unpack_message_headers(message)
        self.lanes.began(self.urgent)
        message.sdj_started = time.monotonic()  # for the handler latency histogram
        try:
            self.container.spawn_worker(self, args, {}, context_data=context_data,
                                        handle_result=partial(self.handle_result, message))
        except Exception:  # container being killed: leave the message to the broker
            self.lanes.ended(self.urgent)
            self._requeue(message)

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        self.lanes.ended(self.urgent)
        if exc_info is None:
            crash_point("consumer.before_ack")  # committed, not yet acked: the broker will redeliver
            self._ack(message)
            self._count(message, "handled")
            return result, exc_info
        exc = exc_info[1]
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, (MalformedEvent, ValidationError)):
            self._settle(message, self._dead_letter, reason, type(exc).__name__)
        else:
            log.warning("%s failed on %s: %s", self.queue_name, message.properties.get("message_id"),
                        "".join(traceback.format_exception(*exc_info)[-3:]))
            self._settle(message, self._retry_or_dead_letter, reason, type(exc).__name__)
        return result, exc_info

    def _check_sender(self, message) -> Origin:
        origin = origin_of(message, self.own_user)
        if not origin.sender:
            raise MalformedEvent("user_id: missing; publish with the AMQP user_id property set to your login")
        if self.expected_sender is not None and origin.sender != self.expected_sender:
            raise MalformedEvent(f"user_id: {origin.sender[:60]!r} may not publish on {self.exchange_name}")
        return origin

    def _settle(self, message, route: Callable, reason: str, kind: str) -> None:
        try:
            route(message, reason, kind)
        except PublishFailed:
            log.error("could not park message from %s; leaving it on the queue", self.queue_name)
            self._requeue(message)
            return
        self._ack(message)

    def _ack(self, message) -> None:
        """Ack on the channel the message came on, as this turn of the event loop ends (RawQueueConsumer). When
        that connection is gone (a broker node restarted, connections closed), the broker has put the message
        back already and delivers it again, to us once the consumer has reconnected or to another instance:
        the inbox makes that harmless."""
        self.queue_consumer.ack_message(message)

    def _requeue(self, message) -> None:
        try:
            self.queue_consumer.requeue_message(message)
        except Exception as exc:  # the connection is gone: the broker has requeued it already
            log.warning("%s: could not requeue %s (%r); the broker delivers it again", self.queue_name,
                        (message.properties or {}).get("message_id"), exc)

    def _attempt(self, message) -> int:
        try:  # a header from outside may say anything
            return max(1, int((message.headers or {}).get("x-attempt", 1)))
        except (TypeError, ValueError):
            return 1

    def _retry_or_dead_letter(self, message, reason: str, kind: str) -> None:
        attempt = self._attempt(message)
        if attempt > len(self.retry_delays):
            self._dead_letter(message, f"gave up after {attempt} attempts; last error {reason}", kind,
                              bad_input=False)
            return
        delay_ms = int(self.retry_delays[attempt - 1] * 1000)
        self.publisher.publish([self._copy(message, self.parking, self.retry_queue.name, {
            "x-attempt": attempt + 1, "x-last-error": reason[:500]}, expiration=str(delay_ms))])
        self._count(message, "retried")

    def _dead_letter(self, message, reason: str, kind: str, bad_input: bool = True) -> None:
        info, reason = message.delivery_info or {}, reason[:2000]
        self.publisher.publish([self._copy(message, self.parking, DEAD_LETTER_KEY, {
            "x-reason": reason, "x-error-kind": kind, "x-queue": self.queue_name,
            "x-exchange": info.get("exchange", ""), "x-routing-key": info.get("routing_key", ""),
            "x-attempts": self._attempt(message), "x-dead-lettered-at": utcnow().isoformat()}),
            *self._told_of_dead_letter(message, reason, bad_input)])
        log.warning("dead-lettered a message from %s: %s", self.queue_name, reason)
        self._count(message, "dead_lettered")

    def _count(self, message, outcome: str) -> None:
        settled(self.container.service_name, self.queue_name, outcome, getattr(message, "sdj_started", None))

    def _told_of_dead_letter(self, message, reason: str, bad_input: bool) -> list[Outgoing]:
        """The hook's messages; a hook that fails must not keep the message from its dead-letter queue."""
        if self.on_dead_letter is None:
            return []
        try:
            return list(self.on_dead_letter(message, reason, bad_input))
        except Exception:
            log.exception("on_dead_letter failed for a message from %s; dead-lettering it alone",
                          self.queue_name)
            return []

    def _copy(self, message, exchange, routing_key, extra_headers, expiration=None) -> Outgoing:
        props = message.properties or {}
        headers = {k: v for k, v in (message.headers or {}).items() if v is not None}
        origin = origin_of(message, self.own_user)  # the copy is ours: remember whose the original was
        headers.update({"x-original-user-id": origin.sender, "x-original-routing-key": origin.routing_key})
        headers.update(extra_headers)
        body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
        return Outgoing(exchange=exchange, routing_key=routing_key, body=body,
                        message_id=props.get("message_id") or "", headers=headers,
                        correlation_id=props.get("correlation_id"),
                        content_type=message.content_type or "application/octet-stream",
                        type=props.get("type"), expiration=expiration, reply_to=props.get("reply_to"))


class BatchConsumer(ReliableConsumer):
    """A background consumer whose handler takes several messages in one call, and so one transaction: it
    receives a list, each message's first argument (an envelope), up to `batch` of them, gathered for at most
    LINGER seconds. Once the handler returned, each message is acked. Should it raise, each message of the
    batch is handled again on its own and settled as ReliableConsumer settles one: a poison message goes to
    the dead-letter queue (or its retries) alone, and the others are handled. The broker hands a consumer
    at most max_workers unacknowledged messages: a batch is at most half of them, so that the next one
    gathers while this one is handled."""

    LINGER = 0.02  # seconds

    def __init__(self, *args, batch: int = 10, **kwargs):
        self.batch = batch
        super().__init__(*args, **kwargs)

    def setup(self) -> None:
        super().setup()
        self.batch = max(1, min(self.batch, int(self.container.max_workers) // 2))
        self._gathered: list = []
        self._flusher = None

    def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        gathered, self._gathered = self._gathered, []
        for message, _args in gathered:  # not handled yet: the broker gives them to whoever runs next
            self._requeue(message)
        super().stop()

    def handle_message(self, body, message):
        args = self._decoded(body, message)
        if args is None:
            return
        message.sdj_started = time.monotonic()
        self._gathered.append((message, args))
        if len(self._gathered) >= self.batch:
            self._flush()
        elif self._flusher is None:
            self._flusher = eventlet.spawn_after(self.LINGER, self._flush)

    def _flush(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        batch, self._gathered = self._gathered, []
        if batch:
            self._run(batch)

    def _run(self, batch) -> None:
        """The handler, once, on the batch's envelopes (in a worker of its own)."""
        self.lanes.began(False)
        try:
            self.container.spawn_worker(self, ([args[0] for _message, args in batch],), {},
                                        context_data=self.unpack_message_headers(batch[0][0]),
                                        handle_result=partial(self.handle_batch_result, batch))
        except Exception:  # container being killed: leave the messages to the broker
            self.lanes.ended(False)
            for message, _args in batch:
                self._requeue(message)

    def handle_batch_result(self, batch, worker_ctx, result=None, exc_info=None):
        if exc_info is not None and len(batch) == 1:  # settled as a message alone (handle_result ends the lane)
            return self.handle_result(batch[0][0], worker_ctx, result, exc_info)
        self.lanes.ended(False)
        if exc_info is None:
            crash_point("consumer.before_ack", len(batch))  # committed, not yet acked: the broker will redeliver
            for message, _args in batch:
                self._ack(message)
                self._count(message, "handled")
        else:  # one of them may be poison: each alone, outside this worker (its slot is still taken)
            eventlet.spawn_n(self._one_by_one, batch)
        return result, exc_info

    def _one_by_one(self, batch) -> None:
        for message, args in batch:
            self.lanes.began(False)
            try:
                self.container.spawn_worker(self, ([args[0]],), {},
                                            context_data=self.unpack_message_headers(message),
                                            handle_result=partial(self.handle_result, message))
            except Exception:
                self.lanes.ended(False)
                self._requeue(message)


class DigestConsumer(BatchConsumer):
    """A background consumer of a source's digest (digests.py: the envelopes of some of its events that one
    relay round sent, in one message), handled as BatchConsumer handles a batch: the handler receives, in one
    call, the envelopes of the events it follows (`events`; others in the digest are skipped), in the order
    they were sent. Each envelope is settled as a message of its own (digests.Part): a malformed one, or one
    the handler still fails on alone, goes to the dead-letter queue (or its retries) by itself, as a message
    of that envelope alone, and the others are handled. The digest is acked once every part was settled; if
    a part could not be parked, the whole digest is requeued (what was handled is then handled again: the
    handler must be idempotent by what the envelopes say, as the status mirror is by version). A part back
    from the retry queue is a message of one envelope: a digest of one."""

    def __init__(self, exchange: str, digest: str, events: tuple[str, ...], decode: Callable, **kwargs):
        self.digest, self.events = digest, tuple(events)
        super().__init__(exchange, (digest_key(digest),), decode, **kwargs)

    def handle_message(self, body, message):
        message.sdj_started = time.monotonic()
        try:  # who sent it, and is it a digest at all: else the whole message is dead-lettered
            origin, items = self._check_sender(message), split(body)
        except MalformedEvent as exc:
            self._settle(message, self._dead_letter, str(exc), "MalformedEvent")
            return
        if not items:
            self._ack(message)
            return
        digest = Digest(message, len(items), on_acked=self._acked)
        batch = []
        for item in items:
            part = Part(digest, item)
            try:
                args = self.decode(item, part, origin)
            except MalformedEvent as exc:  # this envelope alone, to the dead-letter queue
                self._settle(part, self._dead_letter, str(exc), "MalformedEvent")
                continue
            if args[0]["event"] in self.events:
                batch.append((part, args))
            else:
                self._ack(part)  # not one this consumer follows
        if batch:
            self._run(batch)

    def _count(self, message, outcome: str) -> None:
        """A part handled is counted with its digest, once (`_acked`); one parked is a message of its own."""
        if isinstance(message, Part):
            if outcome == "handled":
                return
            message.digest.parked += 1
        super()._count(message, outcome)

    def _acked(self, digest: Digest) -> None:
        """A digest is a message handled, unless every part of it was parked (each then counted on its own)."""
        if digest.parked < digest.parts:
            super()._count(digest.message, "handled")


def expected_publisher(config: dict, source: str) -> str:
    """The broker user that alone publishes `source`'s events (config BROKER_USERS)."""
    try:
        return config["BROKER_USERS"][source]
    except (KeyError, TypeError):
        raise ValueError(f"BROKER_USERS.{source}: which broker user publishes {source}'s events? "
                         "(see README, Security model)") from None


def _envelope_args(body, message, origin) -> tuple:
    return (open_envelope(body),)


def on_event(source: str, *events: str, batch: int = 1, digest: str | None = None, **kwargs):
    """Decorate a handler of `source`'s events; it receives the checked envelope (with `batch` > 1: a list of
    them, see BatchConsumer; from `source`'s `digest` of them: a list, see DigestConsumer)."""
    if digest is not None:
        return DigestConsumer.decorator(f"{source}.events", digest, events, _envelope_args, source=source,
                                        **kwargs)
    if batch > 1:
        return BatchConsumer.decorator(f"{source}.events", events, _envelope_args, source=source, batch=batch,
                                       **kwargs)
    return ReliableConsumer.decorator(f"{source}.events", events, _envelope_args, source=source, **kwargs)


def on_replies(queue: str, source: str, **kwargs):
    """Decorate a handler of the answers `source` sends to this service's own `queue` (a reply_to queue, fed by
    the default exchange: nothing to bind); it receives the checked envelope, from `source`'s broker user only."""
    return ReliableConsumer.decorator("", (), _envelope_args, queue_name=queue, source=source, **kwargs)


def declare_topology(service_cls, config: dict, unbind_digested: bool = False) -> list[str]:
    """Declare the service's exchange and every queue it consumes, before it ever runs.

    Publishing to an exchange with no bound queue drops the message: declaring
    consumers' queues up front means a service started late still gets every event.
    `unbind_digested`: a queue fed by a digest is unbound from the digest's events, should it have followed
    them one by one before (an upgrade's last step, once every producer sends its digests: until then the queue
    gets both, each envelope twice, and its consumer applies it once). Unbinding what is not bound does nothing.
    """
    from .outbox import Outbox
    service = service_cls.name
    published = [f"{service}.events"] + [name for value in vars(service_cls).values() if isinstance(value, Outbox)
                                         for name in value.extra_exchanges]
    declared = []
    with Connection(config["AMQP_URI"]) as conn:
        for name in published:
            Exchange(name, type="topic", durable=True)(conn.default_channel).declare()
        for consumer in consumers_of(service_cls):
            for queue in queues_for(service, consumer.queue, consumer.exchange, consumer.routing_keys,
                                    create_source=True, kind=queue_type(config)):
                queue(conn.default_channel).declare()
            for key in consumer.replaced if unbind_digested else ():
                conn.default_channel.queue_unbind(consumer.queue, consumer.exchange, key)
            declared.append(consumer.queue)
    return declared


@dataclass(frozen=True)
class Consumed:
    queue: str
    exchange: str
    routing_keys: tuple[str, ...]
    replaced: tuple[str, ...] = ()  # the events a digest now brings this queue: unbound by `declare --unbind-digested`


def consumers_of(service_cls) -> list[Consumed]:
    """The queues a service consumes, with what feeds them: read from its class, nothing started."""
    container = ServiceContainer(service_cls, {"AMQP_URI": "amqp://nobody@unused/"})
    return [Consumed(ext.queue_name or f"{container.service_name}.{ext.method_name}", ext.exchange_name,
                     tuple(ext.routing_keys), ext.events if isinstance(ext, DigestConsumer) else ())
            for ext in container.entrypoints if isinstance(ext, ReliableConsumer)]
