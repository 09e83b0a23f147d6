"""The four services as separate processes, as ops run them, on a throwaway vhost and fresh databases,
each with its own broker login and the keys of a `./sdj secure` (tokens, gateway secrets, Open311 clients)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from songdaojia.broker import delete_users
from songdaojia.peers import SmtpSink, free_port
from songdaojia.stack import SERVICES, ServiceProcess, Stack, prepare, start_all, stop_all

E2E_VOLUNTEERS = 20_000  # enough for every village to have volunteers; quick to seed
# the follow-up survey comes a day or three after resolution: a couple of seconds here. A test that needs
# deadlines to act marks itself, e.g. @pytest.mark.sla(dispatch=0.001)
E2E_SLA_SCALES = {"notify": 0.00002}


@dataclass
class RunningStack:
    stack: Stack
    sink: SmtpSink
    procs: dict[str, ServiceProcess]

    def restart(self, name: str, **extra_env: str) -> None:
        self.procs[name] = ServiceProcess(name, self.stack, extra_env).start()
        self.procs[name].wait_ready()

    def token(self, subject: str, role: str, area: str) -> dict:
        """The headers of someone signed in (a token as the county's identity provider would issue it)."""
        return {"Authorization": f"Bearer {self.stack.secrets.token(subject, role, area)}"}


@pytest.fixture
def running_stack(fresh_vhost_uri, tmp_path, request):
    sink = SmtpSink().start()
    marker = request.node.get_closest_marker("sla")
    stack = Stack(amqp_uri=fresh_vhost_uri, var_dir=tmp_path / "var", smtp_port=sink.port,
                  ports={name: free_port() for name in SERVICES},
                  sla_scales={**E2E_SLA_SCALES, **(marker.kwargs if marker else {})})
    stack.secure()
    prepare(stack, volunteers=E2E_VOLUNTEERS)
    procs = start_all(stack)
    running = RunningStack(stack, sink, procs)
    yield running
    stop_all(running.procs)
    sink.stop()
    delete_users(stack.vhost, stack.secrets.directory)
    call = getattr(request.node, "rep_call", None)
    if call is not None and call.failed:  # show what the services said
        for proc in running.procs.values():
            print(f"--- {proc.name} log ---\n{proc.tail(40)}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
