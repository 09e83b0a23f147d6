"""The services as separate processes, as ops run them, on a throwaway vhost and fresh databases, each with
its own broker login and the keys of a `./sdj secure` (tokens, gateway secrets, Open311 clients): what the
e2e tests (tests/e2e/conftest.py `running_stack`) and the browser tests (with the web console) start."""
from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from songdaojia.cluster import Cluster
from songdaojia.demo import fresh_databases
from songdaojia.peers import free_port
from tests.smtp_sink import SmtpSink
from songdaojia.stack import APPS, SERVICES, ServiceProcess, Stack, prepare, start_all, stop_all
from songdaojia.vhosts import delete_users

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

    def restart(self, label: str, ready: bool = True, **extra_env: str) -> None:
        """Start a service's process again (`dispatch`, or `dispatch-2` for its second instance).

        `ready=False` does not wait for it to listen: a process started with a crash point may meet
        it (a backlog's first digest) before its HTTP port opens."""
        name, _, instance = label.partition("-")
        self.procs[label] = ServiceProcess(name, self.stack, {**self.service_env.get(name, {}), **extra_env},
                                           instance=int(instance or 1)).start()
        if ready:
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


@contextmanager
def started_stack(var_dir: Path, vhost_uri: str, names=tuple(SERVICES), instances: int = 1,
                  sla_scales: dict[str, float] | None = None, service_env: dict[str, dict[str, str]] | None = None,
                  broker: Cluster | None = None, postgres_admin: str | None = None,
                  failed: Callable[[], bool] = lambda: False) -> Iterator[RunningStack]:
    """The stack started on `vhost_uri` (on PostgreSQL databases of its own when `postgres_admin` is given);
    whatever fails, from the start on, everything made is undone: a failed start must not spoil later tests.
    When `failed()` says so at the end, the services' logs are printed."""
    sink = SmtpSink().start()
    stack = Stack(amqp_uri=vhost_uri, var_dir=var_dir, smtp_port=sink.port,
                  ports={name: free_port() for name in APPS},
                  sla_scales={**E2E_SLA_SCALES, **(sla_scales or {})})
    running = RunningStack(stack, sink, {}, broker, service_env or {})
    try:
        if postgres_admin:  # several instances of a service share one database
            stack.run_name = f"e2e_{uuid.uuid4().hex[:8]}"
            stack.db_urls = fresh_databases(postgres_admin, stack.run_name)
        stack.secure()
        prepare(stack, volunteers=E2E_VOLUNTEERS)
        running.procs.update(start_all(stack, names, instances, running.service_env))
        yield running
    finally:
        for label in running.procs:  # a test that failed while a service was frozen
            running.thaw(label)
        stop_all(running.procs)
        sink.stop()
        if failed():  # show what the services said
            for proc in running.procs.values():
                print(f"--- {proc.label} log ---\n{proc.tail(40)}")
        if stack.secrets is not None:
            try:
                delete_users(stack.vhost, stack.secrets.directory)
            except RuntimeError:
                pass  # our own node is gone already
        if stack.db_urls:
            drop_databases(postgres_admin, stack.run_name)


def drop_databases(admin_url: str, run_name: str) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url
    args = make_url(admin_url).translate_connect_args(username="user", database="dbname")
    admin = psycopg2.connect(connect_timeout=10, **args)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            for service in APPS:
                cursor.execute(f'DROP DATABASE IF EXISTS "songdaojia_{run_name}_{service}" WITH (FORCE)')
    finally:
        admin.close()
