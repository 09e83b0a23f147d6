"""The four services as separate processes, as ops run them, on a throwaway vhost and fresh databases,
each with its own broker login and the keys of a `./sdj secure` (tokens, gateway secrets, Open311 clients)."""
from __future__ import annotations

import os
import shutil
import uuid

import pytest

from songdaojia.cluster import Cluster
from songdaojia.stack import SERVICES
from songdaojia.vhosts import fresh_vhost
from tests.stacks import RunningStack, started_stack  # noqa: F401 (RunningStack: what running_stack yields)


MARKERS = (
    "instances(n): n processes of every service (keyed dispatch, dispatch-2, ...), on PostgreSQL",
    "postgres: the services' databases on PostgreSQL (fresh ones for the test), one process each",
    "services(*names): start only these services (all are prepared)",
    "service_env(**{service: {VAR: value}}): extra environment of a service's processes",
    "own_broker(nodes=1): the stack on RabbitMQ nodes of the test's own (deploy/rabbitmq-cluster.sh, ports "
    "5691…; with several nodes a cluster, quorum queues), which the test may stop and start: running_stack.broker",
)


def pytest_configure(config):
    for line in MARKERS:
        config.addinivalue_line("markers", line)


OWN_BROKER_PORT = 5691  # node 1 of a broker of the test's own: never the system broker on 5672


@pytest.fixture
def own_broker(request, monkeypatch):
    """RabbitMQ nodes of the test's own (songdaojia/cluster.py): one, or `own_broker(nodes=3)` a cluster."""
    if shutil.which("rabbitmq-server", path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/lib/rabbitmq/bin") is None:
        pytest.skip("rabbitmq-server is not installed here: no broker nodes of the test's own")
    marker = request.node.get_closest_marker("own_broker")
    broker = Cluster(nodes=marker.kwargs.get("nodes", 1) if marker else 1, port=OWN_BROKER_PORT)
    try:
        broker.up()
        monkeypatch.setenv("SDJ_RABBITMQCTL", broker.rabbitmqctl_command())  # vhost and users made there
        yield broker
    finally:  # the nodes and their data go, whatever the test left behind (a node stopped, say)
        broker.down()


@pytest.fixture
def running_stack(tmp_path, request, postgres_admin_url):
    def marked(name):
        return request.node.get_closest_marker(name)

    sla, instances, env = marked("sla"), marked("instances"), marked("service_env")
    instances = instances.args[0] if instances else 1
    broker = request.getfixturevalue("own_broker") if marked("own_broker") else None
    if broker is not None:  # a vhost there, made with its own rabbitmqctl (SDJ_RABBITMQCTL)
        vhost_uri = fresh_vhost(broker.uri(), f"sdj-test-{uuid.uuid4().hex[:8]}", replace=False)
    else:
        vhost_uri = request.getfixturevalue("fresh_vhost_uri")
    with started_stack(tmp_path / "var", vhost_uri, names=tuple(marked("services").args) if marked("services")
                       else tuple(SERVICES), instances=instances, sla_scales=sla.kwargs if sla else {},
                       service_env=env.kwargs if env else {}, broker=broker,
                       postgres_admin=postgres_admin_url if instances > 1 or marked("postgres") else None,
                       failed=lambda: getattr(getattr(request.node, "rep_call", None), "failed", False)) as running:
        yield running


@pytest.fixture
def fault_run(running_stack, request):
    """The demo's people around the running stack, the faults' stopwatch; records the run at the end (faults.py)."""
    from .faults import FaultRun
    run = FaultRun(running_stack, request.node.name)
    try:
        yield run
    finally:
        run.stop()
        call = getattr(request.node, "rep_call", None)
        run.record("failed" if call is None or call.failed else "passed")


def pytest_terminal_summary(terminalreporter):
    """How long each fault test's loop took to recover (tests/e2e/faults.py; also in var/artefacts/faults.jsonl)."""
    from .faults import RECORDED, summary_line
    if RECORDED:
        terminalreporter.section("fault recovery (var/artefacts/faults.jsonl)")
        for record in RECORDED:
            terminalreporter.write_line(summary_line(record))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
