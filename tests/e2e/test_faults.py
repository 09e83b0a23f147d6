"""kill -9 in the middle of a run loses no ticket and sends no resident a second acknowledgement."""
from __future__ import annotations

from .faults import TICKETS


def test_kill_9_of_dispatch_with_200_tickets_in_flight_loses_nothing(fault_run):
    run = fault_run
    run.submit(TICKETS, rate=None)  # all at once, as fast as the broker confirms

    # dispatch dies with no warning while tickets sit between every pair of states: once from
    # outside at a random moment, then at its two worst moments (crash points, see services/common/faults.py)
    run.wait_for(lambda: run.observer.count_reached("routed") >= 20, "offers under way", timeout=60)
    fault = run.begin("dispatch killed -9")
    run.kill("dispatch")
    for crash_at in ("consumer.before_ack:40", "relay.before_mark:4"):
        run.end(fault)
        run.crash_at("dispatch", crash_at)
        fault = run.begin(f"dispatch crashed at {crash_at}")
    run.restart("dispatch")
    run.end(fault)

    run.wait_all_closed()
    run.check_all()
