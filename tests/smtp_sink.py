"""The tests' SMTP server: a real one on 127.0.0.1 that keeps what it receives.

It listens on 127.0.0.1 on an ephemeral port, records what it receives in a
lock-protected list, and offers `wait_for(predicate, timeout)` so callers wait
on a condition with a deadline instead of sleeping a fixed time. (The tests' SMS
gateway is an HTTP recorder: tests/http_recorder.py. The demo's and the benchmark's residents read their
mail from songdaojia/peers.py `MailServer`.)

`wait_for` accepts a predicate taking either no argument or one argument (a
snapshot list of what has been received so far); it returns that snapshot as
soon as the predicate is truthy and raises TimeoutError otherwise.
"""
from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from typing import Any

from aiosmtpd.controller import Controller

from songdaojia.peers import LOCALHOST, free_port, offer_pipelining

_POLL_INTERVAL = 0.02
_DESCRIBE_LAST = 5  # a timeout message shows only the most recent items

Predicate = Callable[..., Any]


def _takes_snapshot(predicate: Predicate) -> bool:
    try:
        parameters = inspect.signature(predicate).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


def wait_on(
    predicate: Predicate,
    snapshot: Callable[[], list],
    timeout: float,
    describe_state: Callable[[list], str],
    description: str | None,
) -> list:
    with_snapshot = _takes_snapshot(predicate)
    deadline = time.monotonic() + timeout
    while True:
        items = snapshot()
        if predicate(items) if with_snapshot else predicate():
            return items
        if time.monotonic() >= deadline:
            wanted = description or getattr(predicate, "__name__", repr(predicate))
            raise TimeoutError(
                f"condition {wanted!r} not met within {timeout:g}s; {describe_state(items)}"
            )
        time.sleep(_POLL_INTERVAL)


def body_text(message: EmailMessage) -> str:
    """The plain-text body of a message, decoded from its charset."""
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    return part.get_content()


class _RecordingHandler:
    """aiosmtpd handler: refuses configured recipients, records every message."""

    def __init__(self, sink: SmtpSink):
        self._sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self._sink._refusal_for(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return offer_pipelining(responses) if self._sink.pipelining else responses

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        self._sink._record(message_from_bytes(raw, policy=DEFAULT_POLICY), session.peer)
        return "250 Message accepted for delivery"


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts. It offers PIPELINING, as the common
    mail servers do, unless told `pipelining=False` (a server that takes one command at a time)."""

    def __init__(self, host: str = LOCALHOST, port: int | None = None,
                 on_message: Callable[[EmailMessage], None] | None = None, pipelining: bool = True):
        self.host = host
        self.port: int | None = port
        self.pipelining = pipelining
        self.on_message = on_message  # called for each accepted message, before the server answers
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self._peers: list[tuple] = []  # the client's (host, port) of each message: its connection
        self._refusals: dict[str, str] = {}
        self._controller: Controller | None = None

    def start(self, attempts: int = 3) -> SmtpSink:
        # The probed port may be taken by someone else before aiosmtpd binds
        # it, so a couple of fresh ports are tried before giving up.
        for attempt in range(1, attempts + 1):
            port = self.port if self.port and attempt == 1 else free_port(self.host)
            controller = Controller(_RecordingHandler(self), hostname=self.host, port=port)
            try:
                controller.start()
            except OSError:
                controller.loop.close()
                if attempt == attempts:
                    raise
                continue
            self._controller, self.port = controller, port
            return self
        raise RuntimeError("unreachable")

    def stop(self) -> None:
        """Stop listening (the port is closed: connections are refused) and end open sessions; `restart()`
        listens again on the same port."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self, timeout: float = 10.0) -> SmtpSink:
        """Listen again on the port it had (a mail server back from an outage); what it received before is
        kept. Tries until `timeout` while the port is still held, then raises OSError."""
        if self._controller is not None:
            return self
        deadline = time.monotonic() + timeout
        while True:
            controller = Controller(_RecordingHandler(self), hostname=self.host, port=self.port)
            try:
                controller.start()
            except OSError:
                controller.loop.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            self._controller = controller
            return self

    @property
    def listening(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 Mailbox unavailable") -> None:
        """Answer RCPT TO for `address` with `reply` (use a 4xx for a temporary refusal)."""
        with self._lock:
            self._refusals[address.lower()] = reply

    def _refusal_for(self, address: str) -> str | None:
        with self._lock:
            return self._refusals.get(address.lower())

    def _record(self, message: EmailMessage, peer: tuple = ()) -> None:
        with self._lock:
            self._messages.append(message)
            self._peers.append(tuple(peer or ()))
        if self.on_message is not None:
            self.on_message(message)

    @property
    def messages(self) -> list[EmailMessage]:
        """A snapshot copy of the messages received so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def connections(self) -> int:
        """How many client connections the messages so far came on."""
        with self._lock:
            return len(set(self._peers))

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._peers.clear()

    def bodies(self) -> list[str]:
        return [body_text(message) for message in self.messages]

    def count_with(self, text: str) -> int:
        return sum(1 for message in self.messages if _mentions(message, text))

    def wait_for(
        self, predicate: Predicate, timeout: float = 10.0, description: str | None = None
    ) -> list[EmailMessage]:
        return wait_on(predicate, lambda: self.messages, timeout, self._describe, description)

    def _describe(self, messages: list[EmailMessage]) -> str:
        subjects = [str(message["Subject"]) for message in messages[-_DESCRIBE_LAST:]]
        return (
            f"SmtpSink {self.host}:{self.port} holds {len(messages)} message(s); "
            f"latest subjects {subjects}"
        )


def _mentions(message: EmailMessage, text: str) -> bool:
    return text in str(message["Subject"] or "") or text in body_text(message)
