"""The loop's four services, outreach and the web console run locally as separate processes, as ops would run them.

Each is `nameko run --config services/<name>/config.yaml ...`; this module chooses their environment
(broker logins, keys and secrets, database files, ports), prepares what they need before they start
(migrations, queues, demo volunteers: for these it imports each service's class, migrations and seed),
starts, watches and stops them. The services' own code never imports this module.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"intake": "IntakeService", "dispatch": "DispatchService",
            "volunteer": "VolunteerService", "notify": "NotifyService"}  # the loop
# going to the door: households and visits; the needs found enter the loop at intake, as any request does
DOOR = {"outreach": "OutreachService"}
# and the people's web console, a backend-for-frontend over the loop's HTTP APIs (its own process and database)
APPS = {**SERVICES, **DOOR, "console": "ConsoleService"}
DEFAULT_PORTS = {"intake": 8001, "dispatch": 8002, "volunteer": 8003, "notify": 8004, "console": 8005,
                 "outreach": 8006}
CONSOLE_AREA = "3413"  # the demo's console follows the whole city's work
LOGINS = {"console": "console-city"}  # a process's broker login, where it is not the service's own name
# CPU priority (nice): the later stages yield the processor to the acknowledgement's (intake, notify), so
# that a surge shows as their backlog, not as residents waiting to hear (README, "The acknowledgement
# first"); deploy/ gives them the same lower weight (systemd CPUWeight=, compose cpu_shares)
YIELDING = {"dispatch": 10, "volunteer": 10, "outreach": 10}


@dataclass
class Stack:
    """Where the services find the broker, their keys, their databases and each other."""
    amqp_uri: str = "amqp://guest:guest@127.0.0.1:5672/"  # a login that may set the vhost up (before: guest)
    var_dir: Path = ROOT / "var"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    db_urls: dict[str, str] = field(default_factory=dict)
    smtp_port: int = 2525
    run_name: str = "demo"  # the demo and the benchmark each get a vhost and databases of this name
    channel: str = "email"
    sms_url: str = ""
    secrets: object = None  # security.Secrets, once secured
    users: dict[str, str] = field(default_factory=dict)  # broker user -> its AMQP URI, once secured
    # SLA_SCALE per service (services/common/clock.py): a demo compresses deadlines of minutes and waits of days
    sla_scales: dict[str, float] = field(default_factory=dict)

    @property
    def vhost(self) -> str:
        from services.common.amqp import broker_uris
        path = urlsplit(broker_uris(self.amqp_uri)[0]).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    def secure(self, consoles: dict[str, tuple[str, ...]] | None = None) -> None:
        """Keys and secrets in <var>/secrets, and the vhost's broker users and rights (see broker.py)."""
        from . import broker, security
        self.secrets = security.ensure(self.var_dir / "secrets")
        self.users = broker.secure(self.amqp_uri, self.vhost, self.secrets.directory,
                                   consoles=consoles or {"city": (CONSOLE_AREA,)})

    def use_secrets(self, directory: Path) -> None:
        """Run with keys and broker logins made before (`./sdj secure`): ops' prepare, the look-ups."""
        from .security import Secrets
        self.secrets = Secrets(Path(directory))
        self.users = {p.stem: p.read_text(encoding="utf-8").strip() for p in (Path(directory) / "broker").glob("*.uri")}
        self.amqp_uri = next((uri for user, uri in self.users.items() if user.endswith(".admin")), self.amqp_uri)

    def uri(self, who: str) -> str:
        """The AMQP URI of a party (a service, admin, publisher-channels, console-city, monitor)."""
        from .broker import user_name
        try:
            return self.users[user_name(self.vhost, who)]
        except KeyError:
            raise RuntimeError(f"no broker user {who!r} on {self.vhost!r}: secure() the stack first") from None

    def db_url(self, service: str) -> str:
        return self.db_urls.get(service) or f"sqlite:///{self.var_dir / (service + '.db')}"

    def http(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def instance_port(self, service: str, instance: int) -> int:
        """Instance 2, 3 … of a service listen 100, 200 … above the first."""
        return self.ports[service] + 100 * (instance - 1)

    def env(self, service: str | None = None) -> dict[str, str]:
        """The environment of a service's process (or, without one, what every service shares)."""
        env = dict(os.environ, SMTP_HOST="127.0.0.1", SMTP_PORT=str(self.smtp_port), NOTIFY_CHANNEL="",
                   NOTIFY_CHANNELS=",".join(dict.fromkeys((self.channel, "email", "sms")))  # preferred first
                   if self.sms_url else self.channel,
                   PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore::DeprecationWarning",
                   SDJ_BROKER_PREFIX=self.vhost, **self.secrets.service_env())
        env["AMQP_URI"] = self.uri(LOGINS.get(service, service)) if service else self.uri("admin")
        if service in self.sla_scales:
            env["SDJ_SLA_SCALE"] = repr(self.sla_scales[service])
        if self.sms_url:
            env["SMS_GATEWAY_URL"] = self.sms_url
        for name in APPS:
            if name in self.ports:
                env[f"{name.upper()}_HTTP"] = f"127.0.0.1:{self.ports[name]}"
            env[f"{name.upper()}_DB_URL"] = self.db_url(name)
        env["CONSOLE_AREA"] = CONSOLE_AREA
        return env

    def config(self, service: str) -> dict:
        """The service's own config file, read with this stack's environment (as its admin)."""
        from services.common.config import config_path, load_config
        saved = dict(os.environ)
        os.environ.update(self.env())
        try:
            return load_config(config_path(service))
        finally:
            os.environ.clear()
            os.environ.update(saved)


class ServiceProcess:
    """One `nameko run` of a service; instance 2, 3 … of it listen on ports of their own."""

    def __init__(self, name: str, stack: Stack, extra_env: dict[str, str] | None = None, instance: int = 1):
        self.name, self.stack, self.instance = name, stack, instance
        self.label = name if instance == 1 else f"{name}-{instance}"
        self.port = stack.ports[name] if instance == 1 else stack.instance_port(name, instance)
        self.extra_env = {f"{name.upper()}_HTTP": f"127.0.0.1:{self.port}",
                          f"{name.upper()}_INSTANCE_ID": self.label, **(extra_env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = stack.var_dir / "logs" / f"{self.label}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServiceProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        nameko = Path(sys.executable).with_name("nameko")
        log = open(self.log_path, "ab")
        nice = ["nice", "-n", str(YIELDING[self.name])] if self.name in YIELDING else []
        self.proc = subprocess.Popen(
            [*nice, str(nameko), "run", "--config", str(ROOT / "services" / self.name / "config.yaml"),
             f"services.{self.name}.service:{APPS[self.name]}"],
            cwd=ROOT, env={**self.stack.env(self.name), **self.extra_env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        port = self.port
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}:\n{self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"{self.label} did not listen on {port} within {timeout}s:\n{self.tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)  # nameko finishes running workers, then exits
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9: no clean-up at all, as in a crash."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def rss_mib(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return float("nan")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def prepare(stack: Stack, volunteers: int = 100_000, names=tuple(APPS), households: int = 0,
            visited_town: str | None = None) -> None:
    """Migrate the databases, declare every exchange and queue (as the vhost's admin), seed demo
    volunteers (when volunteer is one) and demo households (when outreach is one: `households`, of which
    those of `visited_town` get visit plans). The stack must be secured first."""
    import importlib

    from services.common.messaging import declare_topology
    from services.common.migrations import upgrade

    stack.var_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        upgrade(name, stack.db_url(name))
        if name == "console":  # the console declares nothing: its feed's queue is its own, made as it starts
            continue
        service_cls = getattr(importlib.import_module(f"services.{name}.service"), APPS[name])
        declare_topology(service_cls, stack.config(name))
    if "volunteer" in names and volunteers:
        from services.common.database import make_engine
        from services.dispatch.areas import AreaMap
        from services.volunteer.seed import seed_volunteers
        engine = make_engine(stack.db_url("volunteer"))
        seed_volunteers(engine, [(v.code, v.parent_code) for v in AreaMap.load().villages()], count=volunteers)
        engine.dispose()
    if "outreach" in names and households:
        from services.common.database import make_engine
        from services.dispatch.areas import AreaMap
        from services.outreach.seed import seed_households
        areas = AreaMap.load()
        engine = make_engine(stack.db_url("outreach"))
        grids = [(g.code, v.code, v.parent_code) for v in areas.villages() for g in areas.grids_of(v.code)]
        seed_households(engine, grids, count=households, visited_town=visited_town)
        engine.dispose()


def start_all(stack: Stack, names=tuple(SERVICES), instances: int = 1,
              service_env: dict[str, dict[str, str]] | None = None) -> dict[str, ServiceProcess]:
    """Every service as `instances` processes (keyed `dispatch`, `dispatch-2`, …), once all listen;
    `service_env` adds to a service's environment."""
    procs = {}
    for name in names:
        for n in range(1, instances + 1):
            proc = ServiceProcess(name, stack, (service_env or {}).get(name), instance=n)
            procs[proc.label] = proc.start()
    try:
        for proc in procs.values():
            proc.wait_ready()
    except Exception:
        stop_all(procs)
        raise
    return procs


def stop_all(procs: dict[str, ServiceProcess]) -> None:
    for proc in procs.values():
        if proc.alive():
            proc.proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        proc.stop()


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    """From a /proc/<pid>/stat: (parent pid, the process's user + system clock ticks, its exited children's,
    the process's system ticks alone), or None when it is gone."""
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]),
                int(fields[12]))
    except (OSError, IndexError, ValueError):
        return None


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    stat = _stat(Path(f"/proc/{pid}/stat"))
    return float("nan") if stat is None else stat[1] / os.sysconf("SC_CLK_TCK")


def system_cpu_seconds(pid: int) -> float:
    """The part of process_cpu_seconds spent in the kernel (system calls, the network stack) (Linux /proc)."""
    stat = _stat(Path(f"/proc/{pid}/stat"))
    return float("nan") if stat is None else stat[3] / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(pid: int) -> float:
    """CPU time used so far by a server that forks a process per client (PostgreSQL's postmaster and its
    backends): the process, its children that have exited, and those alive now with theirs (Linux /proc)."""
    own = _stat(Path(f"/proc/{pid}/stat"))
    if own is None:
        return float("nan")
    children = (_stat(path) for path in Path("/proc").glob("[0-9]*/stat"))
    ticks = own[1] + own[2] + sum(c[1] + c[2] for c in children if c is not None and c[0] == pid)
    return ticks / os.sysconf("SC_CLK_TCK")
