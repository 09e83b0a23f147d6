"""A 3-node RabbitMQ cluster of the test's own (deploy/rabbitmq-cluster.sh), quorum queues, two instances of
every service on PostgreSQL: one node stops mid-run and comes back. Skipped, saying so, where RabbitMQ is not
installed (the nodes need `rabbitmq-server`)."""
from __future__ import annotations

import pytest

from songdaojia.vhosts import rabbitmqctl


@pytest.mark.own_broker(nodes=3)
@pytest.mark.instances(2)
def test_one_node_of_three_stopped_mid_run_loses_nothing(fault_run):
    """Node 1 is the node every client tried first, so every connection moves: `stop_app` closes them, the
    services, the publisher and the demo's listeners go on with node 2 or 3 (AMQP_URI lists all three), and
    the quorum queues elect new leaders among the two left. Then node 1 starts again and rejoins."""
    run = fault_run
    kinds = {line.split("\t")[0]: line.split("\t")[1] for line in rabbitmqctl(
        "list_queues", "-q", "--no-table-headers", "-p", run.stack.vhost, "name", "type").splitlines() if "\t" in line}
    assert kinds and set(kinds.values()) == {"quorum"}, f"every queue a quorum queue: {kinds}"
    publisher = run.submit(rate=20)
    run.wait_for(lambda: run.observer.count_reached("routed") >= 5 and publisher.sent >= 60, "offers under way")
    with run.fault("node 1 of 3 stopped (stop_app) until 10 tickets closed on the other two, then started"):
        run.running.broker.ctl(1, "stop_app")
        run.wait_for(lambda: run.closed() >= 10, "tickets closing on two nodes", timeout=120)
        run.running.broker.ctl(1, "start_app")
    run.wait_all_closed()
    run.check_all()
    assert run.observer.reconnects >= 1 and run.console.reconnects >= 1, "the listeners moved to another node"
    run.extra.update({"observer reconnects": run.observer.reconnects, "console reconnects": run.console.reconnects})
