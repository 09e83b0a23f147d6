"""The four services as separate processes, as ops run them, on a throwaway vhost and fresh databases,
each with its own broker login and the keys of a `./sdj secure` (tokens, gateway secrets, Open311 clients)."""
from __future__ import annotations

import os
import shutil
import signal
import uuid
from dataclasses import dataclass, field

import pytest

from songdaojia.vhosts import delete_users
from songdaojia.cluster import Cluster
from songdaojia.demo import fresh_databases
from songdaojia.peers import SmtpSink, free_port
from songdaojia.stack import SERVICES, ServiceProcess, Stack, prepare, start_all, stop_all
from songdaojia.vhosts import fresh_vhost

E2E_VOLUNTEERS = 20_000  # enough for every village to have volunteers; quick to seed
# the follow-up survey comes a day or three after resolution: a couple of seconds here. A test that needs
# deadlines to act marks itself, e.g. @pytest.mark.sla(dispatch=0.001)
E2E_SLA_SCALES = {"notify": 0.00002}


@dataclass
class RunningStack:
    stack: Stack
    sink: SmtpSink
    procs: dict[str, ServiceProcess]
    broker: Cluster | None = None  # with @pytest.mark.own_broker
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)  # @pytest.mark.service_env

    def restart(self, label: str, **extra_env: str) -> None:
        """Start a service's process again (`dispatch`, or `dispatch-2` for its second instance)."""
        name, _, instance = label.partition("-")
        self.procs[label] = ServiceProcess(name, self.stack, {**self.service_env.get(name, {}), **extra_env},
                                           instance=int(instance or 1)).start()
        self.procs[label].wait_ready()

    def freeze(self, label: str) -> None:
        """SIGSTOP: the process is there, holds its connections and its claims, and does nothing."""
        os.killpg(self.procs[label].proc.pid, signal.SIGSTOP)

    def thaw(self, label: str) -> None:
        proc = self.procs[label]
        if proc.alive():
            os.killpg(proc.proc.pid, signal.SIGCONT)

    def token(self, subject: str, role: str, area: str) -> dict:
        """The headers of someone signed in (a token as the county's identity provider would issue it)."""
        return {"Authorization": f"Bearer {self.stack.secrets.token(subject, role, area)}"}


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
    names = tuple(marked("services").args) if marked("services") else tuple(SERVICES)
    broker = request.getfixturevalue("own_broker") if marked("own_broker") else None
    if broker is not None:  # a vhost there, made with its own rabbitmqctl (SDJ_RABBITMQCTL)
        vhost_uri = fresh_vhost(broker.uri(), f"sdj-test-{uuid.uuid4().hex[:8]}", replace=False)
    else:
        vhost_uri = request.getfixturevalue("fresh_vhost_uri")
    sink = SmtpSink().start()
    stack = Stack(amqp_uri=vhost_uri, var_dir=tmp_path / "var", smtp_port=sink.port,
                  ports={name: free_port() for name in SERVICES},
                  sla_scales={**E2E_SLA_SCALES, **(sla.kwargs if sla else {})})
    running = RunningStack(stack, sink, {}, broker, env.kwargs if env else {})
    try:  # whatever fails, from here on everything made is undone: a failed start must not spoil later tests
        if instances > 1 or marked("postgres"):  # several instances of a service share one database
            stack.run_name = f"e2e_{uuid.uuid4().hex[:8]}"
            stack.db_urls = fresh_databases(postgres_admin_url, stack.run_name)
        stack.secure()
        prepare(stack, volunteers=E2E_VOLUNTEERS)
        running.procs.update(start_all(stack, names, instances, running.service_env))
        yield running
    finally:
        for label in running.procs:  # a test that failed while a service was frozen
            running.thaw(label)
        stop_all(running.procs)
        sink.stop()
        call = getattr(request.node, "rep_call", None)
        if call is not None and call.failed:  # show what the services said
            for proc in running.procs.values():
                print(f"--- {proc.label} log ---\n{proc.tail(40)}")
        if stack.secrets is not None:
            try:
                delete_users(stack.vhost, stack.secrets.directory)
            except RuntimeError:
                pass  # our own node is gone already
        if stack.db_urls:
            drop_databases(postgres_admin_url, stack.run_name)


def drop_databases(admin_url: str, run_name: str) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url
    args = make_url(admin_url).translate_connect_args(username="user", database="dbname")
    admin = psycopg2.connect(connect_timeout=10, **args)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            for service in SERVICES:
                cursor.execute(f'DROP DATABASE IF EXISTS "songdaojia_{run_name}_{service}" WITH (FORCE)')
    finally:
        admin.close()


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
