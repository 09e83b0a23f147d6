"""A small AMQP publisher that confirms in batches.

Publishing one message and waiting for its confirm caps a service at about a
thousand events a second; here a batch is published and then all of its
confirms are awaited together, so one round trip covers many events. The
batch's frames also go to the socket in one write (`corked`), not one
system call per message.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

import amqp
from eventlet.semaphore import Semaphore

log = logging.getLogger(__name__)


class PublishFailed(RuntimeError):
    pass


@dataclass
class Outgoing:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: dict = field(default_factory=dict)
    correlation_id: str | None = None
    type: str | None = None
    content_type: str = "application/json"
    expiration: str | None = None
    reply_to: str | None = None


def broker_uris(amqp_uri: str) -> list[str]:
    """The brokers (cluster nodes) of an AMQP_URI: one URI, or several separated by `;` as kombu takes them."""
    uris = [part.strip() for part in amqp_uri.split(";") if part.strip()]
    if not uris:
        raise ValueError("AMQP_URI: empty; give amqp://user:password@host:port/vhost (several separated by ;)")
    return uris


def broker_user(amqp_uri: str) -> str:
    """The login in an AMQP URI (the first of several): what the broker checks a message's user_id against."""
    return unquote(urlparse(broker_uris(amqp_uri)[0]).username or "guest")


def connect(amqp_uri: str, heartbeat: int = 0, first: int = 0) -> tuple[amqp.Connection, int]:
    """A connection to the first broker of the list that answers, trying them in turn from `first`;
    returns it with the index of the broker it reached (where to start next time)."""
    uris = broker_uris(amqp_uri)
    error: Exception | None = None
    for step in range(len(uris)):
        index = (first + step) % len(uris)
        try:
            return _connect_one(uris[index], heartbeat), index
        except Exception as exc:  # refused, timed out, node shutting down: the next one
            error = exc
            log.warning("broker %s unreachable (%r)%s", _where(uris[index]), exc,
                        "; trying the next" if step + 1 < len(uris) else "")
    raise error


def _where(uri: str) -> str:
    url = urlparse(uri)
    return f"{url.hostname}:{url.port or 5672}"


def _connect_one(amqp_uri: str, heartbeat: int) -> amqp.Connection:
    url = urlparse(amqp_uri)
    vhost = unquote(url.path[1:]) if len(url.path) > 1 else "/"
    conn = amqp.Connection(
        host=f"{url.hostname or '127.0.0.1'}:{url.port or 5672}",
        userid=unquote(url.username or "guest"),
        password=unquote(url.password or "guest"),
        virtual_host=vhost,
        heartbeat=heartbeat,
        connect_timeout=5,
    )
    conn.connect()
    return conn


class ConfirmingPublisher:
    def __init__(self, amqp_uri: str, app_id: str, confirm_timeout: float = 10.0,
                 exchanges: tuple[str, ...] = ()):
        self.amqp_uri = amqp_uri
        self.exchanges = exchanges  # declared (topic, durable) on every (re)connect
        self._lock = Semaphore()
        self.app_id = app_id
        self.user_id = broker_user(amqp_uri)  # every message says who sent it; the broker checks
        self.confirm_timeout = confirm_timeout
        self._conn: amqp.Connection | None = None
        self._broker = 0  # which of the brokers (cluster nodes) to try first: the last that answered
        self._channel = None
        self._next_tag = 1
        self._acked_up_to = 0
        self._nacked: set[int] = set()

    def _ensure_channel(self):
        if self._channel is None:
            self._conn, self._broker = connect(self.amqp_uri, first=self._broker)
            ch = self._conn.channel()
            ch.confirm_select()
            ch.events["basic_ack"].add(self._on_ack)
            ch.events["basic_nack"].add(self._on_nack)
            for name in self.exchanges:
                ch.exchange_declare(name, "topic", durable=True, auto_delete=False)
            self._channel, self._next_tag, self._acked_up_to = ch, 1, 0
            self._pending: set[int] = set()
        return self._channel

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._pending = {t for t in self._pending if t > delivery_tag}
        else:
            self._pending.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        tags = {t for t in self._pending if t <= delivery_tag} if multiple else {delivery_tag}
        self._nacked |= tags & self._pending
        self._pending -= tags

    def publish(self, batch: list[Outgoing]) -> None:
        """Publish every message persistently; return only when the broker confirmed all."""
        with self._lock:  # one batch at a time on this channel
            self._publish(batch)

    def _publish(self, batch: list[Outgoing]) -> None:
        try:
            ch = self._ensure_channel()
            with corked(self._conn.transport):
                self._put(ch, batch)
            while self._pending:
                self._conn.drain_events(timeout=self.confirm_timeout)
            if self._nacked:
                self._nacked.clear()
                raise PublishFailed("broker refused (nack) part of the batch")
        except PublishFailed:
            raise
        except Exception as exc:  # connection lost, timeout: the caller re-sends the batch
            if self._conn is not None:  # it had answered, then failed: start with the next node next time
                self._broker += 1
            self.close()
            raise PublishFailed(f"publish failed: {exc!r}") from exc

    def _put(self, ch, batch: list[Outgoing]) -> None:
        for out in batch:
            props = dict(
                content_type=out.content_type, delivery_mode=2, message_id=out.message_id,
                app_id=self.app_id, user_id=self.user_id, application_headers=out.headers or {},
            )
            if out.correlation_id:
                props["correlation_id"] = out.correlation_id
            if out.type:
                props["type"] = out.type
            if out.expiration:
                props["expiration"] = out.expiration
            if out.reply_to:
                props["reply_to"] = out.reply_to
            ch.basic_publish(amqp.Message(out.body, **props), exchange=out.exchange, routing_key=out.routing_key)
            self._pending.add(self._next_tag)
            self._next_tag += 1

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                conn.collect()
            except Exception:  # already gone
                pass


@contextmanager
def corked(transport):
    """Frames written inside go to the socket in one write as the block ends (py-amqp writes each message's
    frames with one `transport._write` call, a copy of a buffer it reuses). If the block raises, nothing of it
    is sent: the caller closes the connection and publishes the batch again."""
    chunks: list[bytes] = []
    send = transport._write
    transport._write = lambda data: chunks.append(bytes(data))
    try:
        yield
    finally:
        transport._write = send
    if chunks:
        send(b"".join(chunks))
