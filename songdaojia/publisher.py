"""The outside channels of a demo or benchmark run: the hotline, WeChat and the service centres publishing the
scenario's requests to intake at the offered rate, in a process of their own.

A process, not a thread of the load generator: the offered rate must not wait on the people around the system
(the observer, the consoles, the residents: songdaojia/loop.py), who share the load generator's interpreter
lock and, in a run, yield the processor (`loop.yield_processor`). Its CPU is the load generator's too
(`demo.cpu_snapshot`, `publisher`).
"""
from __future__ import annotations

import math
import multiprocessing
import time
from datetime import datetime, timezone

from .stack import process_cpu_seconds

READY_SECONDS = 90.0  # to start the process and connect (IntakeClient waits up to 60 s for a broker)


def _publish(amqp_uri: str, requests: list[tuple[str, dict]], rate: float | None, go, sent, results) -> None:
    """The publishing process: connect, wait for `go`, publish each request at its time (its `submitted_at`
    set as it goes), count each in `sent`; last, send back (errors, CPU seconds)."""
    from services.intake.client import IntakeClient
    errors, published = [], 0
    try:
        with IntakeClient(amqp_uri, source="demo") as client:
            results.send("ready")
            go.wait()
            interval = 1.0 / rate if rate else 0.0
            start = time.monotonic()
            for i, (channel, request) in enumerate(requests):
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                request["submitted_at"] = datetime.now(timezone.utc).isoformat()
                client.submit(channel, request)
                published += 1
                sent.value = published
    except Exception as exc:  # reported, and the loop waits only for what was sent
        errors.append(f"publishing stopped after {published}: {exc!r}")
    results.send((errors, time.process_time()))


class Publisher:
    """Publishes `requests` (channel, request) to intake at `rate` a second (None: at once) once started;
    `sent` counts them as they go, `errors` says why it stopped early. Constructing it starts the process and
    connects, so that `start()` begins at once."""

    def __init__(self, amqp_uri: str, requests: list[tuple[str, dict]], rate: float | None):
        context = multiprocessing.get_context("spawn")  # not a fork of a process with threads
        self._go, self._sent = context.Event(), context.RawValue("q", 0)
        self._results, child_end = context.Pipe(duplex=False)
        self._process = context.Process(target=_publish, name="publisher", daemon=True,
                                        args=(amqp_uri, requests, rate, self._go, self._sent, child_end))
        self._process.start()
        child_end.close()
        self._errors: list[str] = []
        self._cpu: float | None = None
        if not self._results.poll(READY_SECONDS):
            self._process.kill()
            raise RuntimeError(f"the publisher did not connect within {READY_SECONDS:g} s")
        first = self._results.recv()
        if first != "ready":  # it stopped before it could publish: (errors, CPU)
            self._process.join(10)
            raise RuntimeError(f"the publisher could not start: {'; '.join(first[0])}")

    def start(self) -> None:
        self._go.set()

    @property
    def sent(self) -> int:
        return self._sent.value

    @property
    def errors(self) -> list[str]:
        self._collect(0)
        return self._errors

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._collect(timeout)
        self._process.join(timeout)

    def cpu_seconds(self) -> float:
        """CPU used so far: read from the process while it runs, as it said last once it ended."""
        if self._cpu is None:
            running = process_cpu_seconds(self._process.pid)  # NaN once it is gone
            if not math.isnan(running):
                return running
            self._collect(10)  # ended: its last word is in the pipe
        return self._cpu or 0.0

    def _collect(self, timeout: float | None) -> None:
        if self._cpu is None and self._results.poll(timeout):
            try:
                self._errors, self._cpu = self._results.recv()
            except EOFError:  # it died without a word (killed)
                self._errors, self._cpu = [f"the publisher ended ({self._process.exitcode}) after {self.sent}"], 0.0
