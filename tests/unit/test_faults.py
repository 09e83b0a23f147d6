"""Crash points count messages: a batch, or a digest's envelopes, passes one once for each."""
import signal

from services.common import faults


def test_a_batch_passes_a_crash_point_once_for_each_of_its_messages(monkeypatch):
    killed = []
    monkeypatch.setattr(faults, "_remaining", {"consumer.before_ack": 40})
    monkeypatch.setattr(faults.os, "kill", lambda _pid, sig: killed.append(sig))
    faults.crash_point("consumer.before_ack", 39)
    faults.crash_point("relay.before_mark")  # not armed: nothing
    assert killed == []
    faults.crash_point("consumer.before_ack")
    assert killed == [signal.SIGKILL]
