"""The residents' mail server goes away mid-run and comes back on the same port: nothing is given up, nothing
is sent twice, and the mail that waited goes out (faults.py records how soon)."""
from __future__ import annotations

import time

import pytest

from .faults import delivery_states, hold, undelivered


def smtp_outage(run, seconds: float) -> set[str]:
    """The SMTP peer stops listening (its port closed, open sessions cut) for `seconds`, once the
    acknowledgements are going out; returns the message ids still to deliver when it is back."""
    run.submit()
    run.wait_for(lambda: len(run.arrivals) >= 20, "acknowledgements going out")
    with run.fault(f"SMTP peer down for {seconds:g} s"):
        run.sink.stop()
        try:
            hold(seconds)
        finally:
            run.sink.restart()
    waiting = undelivered(run.stack)
    run.extra["mails waiting when it came back"] = len(waiting)
    return waiting


def wait_delivered(run, waiting: set[str], timeout: float) -> float:
    """Until every mail in `waiting` reached the server; seconds since it came back."""
    back = run.faults[-1].end
    run.wait_for(lambda: waiting <= {mid for _, mid in run.arrivals}, timeout=timeout,
                 message=f"the {len(waiting)} mails that waited delivered (states now {delivery_states(run.stack)})")
    drained = round(time.monotonic() - back, 2)
    run.extra["waiting mails delivered within s"] = drained
    return drained


def test_the_smtp_peer_down_for_20_s_mid_run_loses_nothing(fault_run):
    """Delivery tries back off (2, 4, 8, 16 s, each ±20 %): every mail that waited goes out within about 20 s of
    the server's return, none is given up, none is sent twice."""
    run = fault_run
    waiting = smtp_outage(run, 20)
    assert waiting, "the outage met no mail: the test proved nothing"
    wait_delivered(run, waiting, timeout=60)
    run.wait_all_closed()
    assert delivery_states(run.stack)["failed"] == 0
    run.check_all()


PATIENCE_S, MAX_BACKOFF_S, OUTAGE_S = 1800, 30, 30


@pytest.mark.service_env(notify={"NOTIFY_DELIVERY_PATIENCE_SECONDS": str(PATIENCE_S),
                                 "NOTIFY_DELIVERY_MAX_BACKOFF_SECONDS": str(MAX_BACKOFF_S)})
def test_the_smtp_peer_down_for_10_minutes_gives_nothing_up(fault_run):
    """The 10-minute outage of the mail server, at 1/20 of real time: down 30 s, notify's delivery back-off capped
    at 30 s (NOTIFY_DELIVERY_MAX_BACKOFF_SECONDS; 600 s in production) and its patience (how long it keeps
    trying before it falls back, NOTIFY_DELIVERY_PATIENCE_SECONDS) at half an hour (6 h in production), well
    above the outage. It proves:
    nothing is given up (no delivery `failed`), no resident gets a mail twice, and every mail that waited is
    delivered within one maximum back-off (plus a little for the courier's poll and the send) of the server's
    return. Every ticket still closes meanwhile (an unanswered survey goes to the village's 回访 call)."""
    run = fault_run
    waiting = smtp_outage(run, OUTAGE_S)
    assert waiting, "the outage met no mail: the test proved nothing"
    assert delivery_states(run.stack)["failed"] == 0, "a delivery was given up during the outage"
    drained = wait_delivered(run, waiting, timeout=MAX_BACKOFF_S + 30)
    assert drained <= MAX_BACKOFF_S + 10, f"the mail that waited took {drained} s after the return"
    run.wait_all_closed()
    assert delivery_states(run.stack)["failed"] == 0
    run.check_all()
