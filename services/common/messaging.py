"""Reliable consuming: retry with back-off, then a dead-letter queue that keeps the reason.

nameko acks a message even when its handler raised, and kombu raises inside the
consumer loop on a body it cannot decode. Here the consumer receives raw
messages, decodes them itself, and settles every message explicitly:
- handled                     -> ack
- malformed (can never work)  -> dead-letter queue with the reason, ack
- failed (may work later)     -> retry queue with a delay, ack; after the
                                 last attempt, the dead-letter queue
The original is acked only after the broker confirmed the copy, so nothing is lost.
"""
from __future__ import annotations

import logging
import traceback
from functools import partial
from typing import Callable

from kombu import Connection, Exchange, Queue, binding
from marshmallow import ValidationError
from nameko.containers import ServiceContainer
from nameko.messaging import Consumer, QueueConsumer

from .amqp import ConfirmingPublisher, Outgoing, PublishFailed
from .envelope import MalformedEvent, open_envelope, utcnow
from .faults import crash_point

log = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS = (0.2, 1.0, 5.0, 15.0)  # seconds; then dead-letter


def dead_letter_queue(service: str) -> str:
    return f"{service}.dead-letter"


def queues_for(service: str, name: str, exchange: str, routing_keys) -> tuple[Queue, Queue, Queue]:
    """The work queue, its retry queue (expired messages flow back) and the dead-letter queue."""
    source = Exchange(exchange, type="topic", durable=True)
    work = Queue(name, durable=True, auto_delete=False,
                 bindings=[binding(source, routing_key=k) for k in routing_keys])
    retry = Queue(f"{name}.retry", durable=True, queue_arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": name})
    return work, retry, Queue(dead_letter_queue(service), durable=True)


class RawQueueConsumer(QueueConsumer):
    """nameko's queue consumer, handing providers the undecoded message."""

    def get_consumers(self, consumer_cls, channel):
        for provider in self._providers:
            consumer = consumer_cls(queues=[provider.queue],
                                    on_message=partial(self._on_raw_message, provider))
            consumer.qos(prefetch_count=self.prefetch_count)
            self._consumers[provider] = consumer
        return self._consumers.values()

    def _on_raw_message(self, provider, message):
        self.handle_message(provider, message.body, message)


class ReliableConsumer(Consumer):
    """Consume a queue bound to `exchange` by `routing_keys`, never losing a message.

    `decode(body, message)` returns the handler's positional arguments or raises
    MalformedEvent; a handler that raises MalformedEvent or a marshmallow
    ValidationError is dead-lettered at once, any other error is retried.
    `on_dead_letter(message, reason, bad_input)` may return messages (e.g. telling the
    sender why; `bad_input` is False for our own error, retried until we gave up) to
    publish in the same confirmed batch as the dead-letter copy: the original is acked
    only once the broker confirmed them all, else it is requeued.
    """
    queue_consumer = RawQueueConsumer()

    def __init__(self, exchange: str, routing_keys: tuple[str, ...], decode: Callable,
                 queue_name: str | None = None,
                 on_dead_letter: Callable[..., list[Outgoing]] | None = None, **kwargs):
        self.exchange_name = exchange
        self.routing_keys = routing_keys
        self.decode = decode
        self.queue_name = queue_name
        self.on_dead_letter = on_dead_letter
        super().__init__(queue=None, **kwargs)

    def setup(self) -> None:
        cfg = self.container.config
        service = self.container.service_name
        self.queue_name = self.queue_name or f"{service}.{self.method_name}"
        self.retry_delays = tuple(cfg.get("RETRY_DELAYS", DEFAULT_RETRY_DELAYS))
        self.queue, self.retry_queue, self.dead_letters = queues_for(
            service, self.queue_name, self.exchange_name, self.routing_keys)
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

    def handle_message(self, body, message):
        try:
            args = self.decode(body, message)
        except MalformedEvent as exc:
            self._settle(message, self._dead_letter, str(exc), "MalformedEvent")
            return
        context_data = self.unpack_message_headers(message)
        try:
            self.container.spawn_worker(self, args, {}, context_data=context_data,
                                        handle_result=partial(self.handle_result, message))
        except Exception:  # container being killed: leave the message to the broker
            self.queue_consumer.requeue_message(message)

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        if exc_info is None:
            crash_point("consumer.before_ack")  # committed, not yet acked: the broker will redeliver
            self.queue_consumer.ack_message(message)
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

    def _settle(self, message, route: Callable, reason: str, kind: str) -> None:
        try:
            route(message, reason, kind)
        except PublishFailed:
            log.error("could not park message from %s; leaving it on the queue", self.queue_name)
            self.queue_consumer.requeue_message(message)
            return
        self.queue_consumer.ack_message(message)

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
        self.publisher.publish([self._copy(message, "", self.retry_queue.name, {
            "x-attempt": attempt + 1, "x-last-error": reason[:500]}, expiration=str(delay_ms))])

    def _dead_letter(self, message, reason: str, kind: str, bad_input: bool = True) -> None:
        info, reason = message.delivery_info or {}, reason[:2000]
        self.publisher.publish([self._copy(message, "", self.dead_letters.name, {
            "x-reason": reason, "x-error-kind": kind, "x-queue": self.queue_name,
            "x-exchange": info.get("exchange", ""), "x-routing-key": info.get("routing_key", ""),
            "x-attempts": self._attempt(message), "x-dead-lettered-at": utcnow().isoformat()}),
            *self._told_of_dead_letter(message, reason, bad_input)])
        log.warning("dead-lettered a message from %s: %s", self.queue_name, reason)

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
        headers.update(extra_headers)
        body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
        return Outgoing(exchange=exchange, routing_key=routing_key, body=body,
                        message_id=props.get("message_id") or "", headers=headers,
                        correlation_id=props.get("correlation_id"),
                        content_type=message.content_type or "application/octet-stream",
                        type=props.get("type"), expiration=expiration, reply_to=props.get("reply_to"))


def _envelope_args(body, message) -> tuple:
    return (open_envelope(body),)


def on_event(source: str, *events: str, **kwargs):
    """Decorate a handler of `source`'s events; it receives the checked envelope."""
    return ReliableConsumer.decorator(f"{source}.events", events, _envelope_args, **kwargs)


def declare_topology(service_cls, config: dict) -> list[str]:
    """Declare the service's exchange and every queue it consumes, before it ever runs.

    Publishing to an exchange with no bound queue drops the message: declaring
    consumers' queues up front means a service started late still gets every event.
    """
    container = ServiceContainer(service_cls, config)
    service = container.service_name
    declared = []
    with Connection(config["AMQP_URI"]) as conn:
        Exchange(f"{service}.events", type="topic", durable=True)(conn.default_channel).declare()
        for ext in container.entrypoints:
            if isinstance(ext, ReliableConsumer):
                name = ext.queue_name or f"{service}.{ext.method_name}"
                for queue in queues_for(service, name, ext.exchange_name, ext.routing_keys):
                    queue(conn.default_channel).declare()
                declared.append(name)
    return declared
