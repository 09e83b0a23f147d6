"""The residents' mail server for the demo and the benchmark (`MailServer`), and a free local port.

The tests' own SMTP server, which keeps what it receives and waits on conditions, is tests/smtp_sink.py.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as DEFAULT_POLICY

from aiosmtpd.controller import Controller

LOCALHOST = "127.0.0.1"
_HEADERS_ONLY = BytesHeaderParser(policy=DEFAULT_POLICY)  # the body is left as it came (MailServer)


def free_port(host: str = LOCALHOST) -> int:
    """A port nobody listens on right now (the OS picks it for a bind to 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True



def offer_pipelining(responses: list[str]) -> list[str]:
    """aiosmtpd's EHLO answer, with PIPELINING among the extensions (aiosmtpd takes pipelined commands in
    order, but does not say so)."""
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


class _Forwarding:
    """aiosmtpd handler of MailServer's process: every message, as it came, to the parent. It offers PIPELINING,
    as the residents' real mail servers do."""

    def __init__(self, outbox):
        self._outbox = outbox

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return offer_pipelining(responses)

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        self._outbox.put(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
        return "250 Message accepted for delivery"


def _serve_mail(host: str, port: int, outbox, ready, stop) -> None:
    controller = Controller(_Forwarding(outbox), hostname=host, port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()
    outbox.put(None)


class MailServer:
    """The residents' mail server for the demo and the benchmark: an SMTP server in a process of its own, as it
    is in life, so that answering notify never waits on the load generator's threads (one interpreter lock).
    `on_message` is called here, in a thread of this process, for each message it took, its headers parsed
    (what a resident reads to know what a mail is about: the subject and whom it is for) and its body as it came,
    unparsed: parsing it too would cost the load generator about twice the CPU a mail (README, Benchmark)."""

    def __init__(self, on_message: Callable[[EmailMessage], None], host: str = LOCALHOST, port: int | None = None):
        self.host, self.port, self.on_message = host, port, on_message
        self._process = self._reader = None

    def start(self, timeout: float = 30.0) -> MailServer:
        import multiprocessing
        context = multiprocessing.get_context("spawn")  # not a fork of a process with threads
        self.port = self.port if self.port and _free(self.host, self.port) else free_port(self.host)
        self._outbox, ready, self._stop = context.Queue(), context.Event(), context.Event()
        self._process = context.Process(target=_serve_mail, name="mail-server", daemon=True,
                                        args=(self.host, self.port, self._outbox, ready, self._stop))
        self._process.start()
        if not ready.wait(timeout):
            self._process.kill()
            raise RuntimeError(f"the mail server did not listen on {self.host}:{self.port} within {timeout:g} s")
        self._reader = threading.Thread(target=self._read_mail, name="mail-reader", daemon=True)
        self._reader.start()
        return self

    @property
    def pid(self) -> int | None:
        """The mail server's process, while it runs (its CPU is the load generator's: songdaojia/demo.py)."""
        return self._process.pid if self._process is not None else None

    def _read_mail(self) -> None:
        while (raw := self._outbox.get()) is not None:
            try:
                self.on_message(_HEADERS_ONLY.parsebytes(raw))
            except Exception:  # one message's trouble must not stop the next being read
                logging.getLogger(__name__).exception("mail server: on_message failed")

    def stop(self) -> None:
        if self._process is None:
            return
        self._stop.set()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._outbox.put(None)
        self._reader.join(timeout=10)
        self._process = None
