"""The tests' SMS gateway: an HTTP server on 127.0.0.1 that records requests and answers like one.

`wait_for(predicate, timeout)` waits on a condition with a deadline (tests/smtp_sink.py `wait_on`);
`fail_next(n, status)` makes it refuse the next requests.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from songdaojia.peers import LOCALHOST
from tests.smtp_sink import Predicate, wait_on

_DESCRIBE_LAST = 5  # a timeout message shows only the most recent requests


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON when the body is JSON, else the raw text
    status: int  # what the recorder answered
    client_port: int = 0  # the connection it came on

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup (HTTP header names are not case-sensitive)."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


def _parse_body(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class _RecorderHandler(BaseHTTPRequestHandler):
    server: _RecorderServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, reply = self.server.recorder._answer(
            self.command, self.path, dict(self.headers.items()), _parse_body(raw), self.client_address[1]
        )
        payload = json.dumps(reply).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output readable; the recorder keeps the requests


class _KeepAliveHandler(_RecorderHandler):
    protocol_version = "HTTP/1.1"


class _RecorderServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 resets connections when a test fires a burst.
    request_queue_size = 128
    recorder: HttpRecorder


class HttpRecorder:
    """An HTTP server on 127.0.0.1 that records requests and answers like an SMS gateway."""

    def __init__(self, path: str = "/sms", host: str = LOCALHOST, keep_alive: bool = False):
        """`keep_alive`: answer in HTTP/1.1 and keep connections open between requests (else HTTP/1.0, a
        connection per request)."""
        self.path = path
        self.host = host
        self.keep_alive = keep_alive
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._forced_statuses: list[int] = []
        self._replies_sent = 0  # not reset by clear(), so gateway ids stay unique
        self._server: _RecorderServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HttpRecorder:
        handler = _KeepAliveHandler if self.keep_alive else _RecorderHandler
        server = _RecorderServer((self.host, 0), handler)
        server.recorder = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"HttpRecorder:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> HttpRecorder:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HttpRecorder is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` requests with `status` instead of 200."""
        with self._lock:
            self._forced_statuses.extend([status] * n)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for(
        self, predicate: Predicate, timeout: float = 10.0, description: str | None = None
    ) -> list[RecordedRequest]:
        return wait_on(predicate, lambda: self.requests, timeout, self._describe, description)

    def _answer(self, method: str, path: str, headers: dict[str, str], body: Any,
                client_port: int = 0) -> tuple[int, dict]:
        # Decide and record under one lock so the sequence number, the forced
        # failure and the recorded order stay consistent across threads.
        with self._lock:
            status = self._forced_statuses.pop(0) if self._forced_statuses else 200
            self._requests.append(RecordedRequest(method, path, headers, body, status, client_port))
            self._replies_sent += 1
            sequence = self._replies_sent
        if 200 <= status < 300:
            return status, {"id": f"gw-{sequence}"}
        return status, {"error": f"forced failure {status}"}

    def _describe(self, requests: list[RecordedRequest]) -> str:
        latest = [f"{r.method} {r.path} -> {r.status}" for r in requests[-_DESCRIBE_LAST:]]
        return f"HttpRecorder {self.url} received {len(requests)} request(s); latest {latest}"
