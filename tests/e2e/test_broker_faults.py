"""The broker fails mid-run: every connection closed by it, or its node restarted. Services, the outside
publisher and the demo's own listeners (songdaojia/loop.py) connect again by themselves; no ticket is lost,
no resident gets a message twice, and the loop's recovery is recorded (faults.py)."""
from __future__ import annotations

import pytest

from songdaojia.vhosts import rabbitmqctl


def mid_submission(run):
    """Requests at 20 a second (10 s for 200), and wait until offers are under way with requests still coming:
    the fault meets tickets in every state and the outside publisher mid-way (IntakeClient sends again what
    was not confirmed). Notes in the record how many were still to come."""
    publisher = run.submit(rate=20)
    run.wait_for(lambda: run.observer.count_reached("routed") >= 5 and publisher.sent >= 60, "offers under way")
    run.extra["requests still to come at the fault"] = run.tickets - publisher.sent
    return publisher


def test_every_broker_connection_closed_mid_run_loses_nothing(fault_run):
    """`rabbitmqctl close_all_connections` on the test's own vhost of the system broker (other tests' vhosts
    are not touched): every service, the publisher, the observer and the console lose their connection at once,
    while requests are still coming in."""
    run = fault_run
    mid_submission(run)
    with run.fault("every connection of the vhost closed by the broker"):
        rabbitmqctl("close_all_connections", "--vhost", run.stack.vhost, "fault test")
    run.wait_all_closed()
    run.check_all()
    assert run.observer.reconnects >= 1 and run.console.reconnects >= 1, "the listeners connected again"
    run.extra.update({"observer reconnects": run.observer.reconnects, "console reconnects": run.console.reconnects,
                      "events seen twice, dropped": run.observer.repeats})


@pytest.mark.own_broker
def test_the_broker_node_restarted_mid_run_loses_nothing(fault_run):
    """A single-node broker of our own (deploy/rabbitmq-cluster.sh on port 5691: the system broker is never
    stopped) stops (`rabbitmqctl stop`: its whole Erlang VM) and starts again, while requests come in and
    tickets sit between every pair of states. Durable queues and persistent messages survive it; every
    client finds the node again on the same port."""
    run = fault_run
    mid_submission(run)
    with run.fault("the broker node stopped and started again"):
        run.running.broker.stop_node(1)
        run.running.broker.start_node(1)
    run.wait_all_closed()
    run.check_all()
    assert run.observer.reconnects >= 1 and run.console.reconnects >= 1, "the listeners connected again"
    run.extra.update({"observer reconnects": run.observer.reconnects, "console reconnects": run.console.reconnects,
                      "events seen twice, dropped": run.observer.repeats})
