"""Crash points, for fault tests: die with SIGKILL at the worst moment, on purpose.

    SDJ_CRASH_AT="consumer.before_ack:25,relay.before_mark:3"

kills this process (no clean-up, exactly like `kill -9`) when the 25th handled
message is about to be acked (a batch or a digest's envelopes count one each),
or the 3rd time the outbox relay has published a batch but not yet marked it
sent. Unset, a crash point costs one dictionary lookup.
"""
from __future__ import annotations

import os
import signal


def _parse(spec: str) -> dict[str, int]:
    points = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = item.partition(":")
        points[name] = int(count or 1)
    return points


_remaining = _parse(os.environ.get("SDJ_CRASH_AT", ""))


def crash_point(name: str, times: int = 1) -> None:
    """Passed `times` more times at once (the messages of a batch)."""
    if name in _remaining:
        _remaining[name] -= times
        if _remaining[name] <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
