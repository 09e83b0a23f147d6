"""Waiting in tests: `wait_until` is the only sanctioned way to wait.

Tests never `time.sleep()` a fixed time hoping something has happened by then:
that is slow when the system is fast and flaky when it is slow. They wait for
a condition, with a deadline, and fail with a message naming the condition:

    from tests.waiting import wait_until

    row = wait_until(lambda: store.find(ticket_id), timeout=5, message="ticket row")

The predicate is polled every `interval` seconds (under eventlet `time.sleep`
is cooperative, so services running in the same process keep working while a
test waits). Helpers with their own deadline-based waits (the peers'
`wait_for`) follow the same rule.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "",
) -> T:
    """Poll `predicate()` until it returns something truthy and return that value.

    Raises AssertionError("timed out after {timeout}s waiting for {message}")
    when the deadline passes; the predicate is evaluated once more after the
    last sleep, so a condition met just at the deadline still counts. An
    exception raised by the predicate propagates at once.
    """
    what = message or getattr(predicate, "__qualname__", None) or repr(predicate)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {described}")
        time.sleep(min(interval, remaining))
