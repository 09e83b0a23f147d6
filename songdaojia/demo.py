"""The run command: the whole closed loop on this machine, with a report at the end."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from datetime import datetime, timezone
from typing import Callable, Protocol

from tqdm import tqdm

from services.intake.client import IntakeClient

from . import scenario
from .door import DoorDay
from .loop import REPORTED, Console, Habits, Observer, Residents, percentile
from .peers import MailServer
from .vhosts import fresh_vhost
from .signins import write_demo_tokens
from .stack import (APPS, Stack, prepare, process_cpu_seconds, server_cpu_seconds, start_all, stop_all,
                    system_cpu_seconds)

REPORT_STATES = ("received", "acknowledged", "routed", "accepted", "resolved", "followed up",
                 "closed", "reopened")
FINAL = ("closed", "cancelled")
# A demo compresses a county's day: deadlines of minutes to seconds (dispatch, volunteer offers), and the
# waits of days before and after the follow-up survey (notify) harder still, so every path shows in a minute.
DEMO_SLA_SCALES = {"dispatch": 0.002, "volunteer": 0.02, "notify": 0.0001,  # a volunteer offer: 18 s
                   "outreach": 0.001}  # a daily call due by 10:00: 36 s after the day opens; a missed one 14 s more
# going to the door (问需): the city's key households registered, and one town's day of visits
DEMO_HOUSEHOLDS = 37_900
DEMO_DOOR_TOWN = "341302123"  # 西二铺镇, 埇桥区: about a hundred key households in four villages
# what the demo's people do now and then (loop.Habits): supervision has something to act on
DEMO_HABITS = Habits(miss=0.05, give_back=0.05, cancel=0.03, unreached=0.3)
DEMO_SILENT = 0.1  # residents who never answer the follow-up: a village cadre calls them (回访)
DEMO_WITHDRAW = 0.03  # residents who withdraw their request once acknowledged (proved through their mail system)
# the benchmark measures the loop, not supervision: nobody misses anything; only the waits are short
BENCH_SLA_SCALES = {"notify": 0.00001}


def run_loop(stack: Stack, count: int, rate: float | None, timeout: float, seed: int = 3413,
             keep_running: bool = False, volunteers: int = 100_000, out=sys.stdout,
             habits: Habits = DEMO_HABITS, silent: float = DEMO_SILENT, withdraw: float = DEMO_WITHDRAW,
             sla_scales: dict[str, float] = DEMO_SLA_SCALES, instances: int = 1,
             postgres: str | None = None, watch: Callable[[dict], Watch] | None = None,
             door_town: str | None = None) -> dict:
    """One run on a clean slate: its own vhost (`songdaojia-<run>`) and databases (`<var>/<run>`, or with
    `postgres` (an admin URL) PostgreSQL databases `songdaojia_<run>_<service>`, which `instances` > 1 needs).
    `watch(processes)`, if given, is started as the first request goes out and stopped once the last ticket
    closed: what its `stop()` returns joins the report (the benchmark samples outbox lag so).
    `door_town`: outreach runs too, with the demo's key households, and that town has its day of visits
    (door.DoorDay): its needs found become tickets the loop closes with the rest."""
    stop_on_signals()
    print(f"preparing: broker vhost {stack.run_name!r}, migrations, queues, {volunteers:,} demo volunteers …",
          file=out, flush=True)
    stack.amqp_uri = fresh_vhost(stack.amqp_uri, f"songdaojia-{stack.run_name}")
    stack.var_dir = stack.var_dir / stack.run_name
    shutil.rmtree(stack.var_dir, ignore_errors=True)
    if instances > 1 and not postgres:
        raise ValueError("several instances of a service share one database: give a PostgreSQL admin URL")
    if postgres:
        stack.db_urls = fresh_databases(postgres, stack.run_name)
    stack.secure()
    stack.sla_scales = dict(sla_scales)
    prepare(stack, volunteers=volunteers, households=DEMO_HOUSEHOLDS if door_town else 0, visited_town=door_town)
    residents = Residents(stack.http("notify"), ("mail", stack.secrets.gateway_secret("mail")), seed=seed,
                          silent_share=silent, intake_url=stack.http("intake"), withdraw_share=withdraw)
    sink = MailServer(residents.on_mail, port=stack.smtp_port).start()
    stack.smtp_port = sink.port
    procs = start_all(stack, instances=instances)
    observer = console = watching = door = None
    web = {}  # the people's web console and outreach: not part of the loop's figures (CPU, work per instance)
    try:  # from here on, whatever fails, the services are stopped
        web = start_all(stack, ("console",) * keep_running + ("outreach",) * bool(door_town))
        print("services: " + ", ".join(f"{n} {p.url}" for n, p in {**procs, **web}.items()), file=out, flush=True)
        observer = Observer(stack.uri("monitor"), REPORTED)
        console = Console(stack.uri("console-city"), stack.http("dispatch"), habits=habits,
                          token=lambda who, role, area, department=None: stack.secrets.token(
                              who, role, area, department=department))
        observer.start(), console.start()
        if door_town:
            door = DoorDay(stack.http("outreach"), door_town, seed=seed, token=lambda who, role, area:
                           stack.secrets.token(who, role, area))
            door.start()
        requests = scenario.requests(count, seed)
        broker = _broker_pid(stack.amqp_uri)  # the same process before and after, or none
        database = _database_pid(postgres) if postgres else None  # PostgreSQL's server, when it runs here
        counted_before = counters(procs)
        cpu_before = cpu_snapshot(procs, broker, database, sink.pid)
        kernel_before = cpu_snapshot(procs, broker, None, sink.pid, read=system_cpu_seconds)
        watching = watch(procs) if watch else None
        started = time.monotonic()
        publisher = Publisher(stack.uri("publisher-channels"), requests, rate)
        publisher.start()
        closed = wait_closed(observer, count, timeout)
        publisher.join()
        needs = 0
        if door is not None:  # the day's visits end; the tickets of the needs found close like the rest
            door.join(timeout=max(timeout - (time.monotonic() - started), 1))
            door.settle()
            needs = door.tickets_made()
            closed = wait_closed(observer, publisher.sent + needs, timeout) and closed
        watched = watching.stop() if watching else {}
        report = build_report(observer, publisher.sent + needs, closed,
                              console.errors + residents.errors + publisher.errors + (door.errors if door else []),
                              seconds=time.monotonic() - started)
        report.update(ledger_report(stack, console, observer))
        if door is not None:
            report.update(door_report(stack, door_town, door, observer))
        report["withdrawn by residents"] = residents.withdrawn
        counted_after = counters(procs)
        if instances > 1:
            report["messages handled per instance"] = work_per_instance(counted_after)
        report["service RSS MiB"] = {n: p.rss_mib() for n, p in procs.items()}
        cpu_after = cpu_snapshot(procs, broker, database, sink.pid)
        report["CPU ms per ticket"] = {n: round((cpu_after[n] - cpu_before[n]) * 1000 / max(count, 1), 1)
                                       for n in cpu_after if n in cpu_before}
        report["kernel share of CPU"] = kernel_shares(
            cpu_before, cpu_after, kernel_before, cpu_snapshot(procs, broker, None, sink.pid, read=system_cpu_seconds))
        report.update(per_ticket_counts(counted_before, counted_after, count))
        report.update(watched)
        print_report(report, out)
        if keep_running:  # people take over from the demo's staff: what comes in now waits in the web console
            console.stop()
            console = None
            print_listening(stack, sink, out)
            wait_for_interrupt()
        return report
    finally:
        try:
            for part in (watching, door, console, observer, residents):
                if part is not None:
                    try:
                        part.stop()
                    except Exception as exc:  # one part failing to stop must not leave the services running
                        print(f"stopping {type(part).__name__}: {exc!r}", file=sys.stderr)
        finally:
            stop_all({**procs, **web})
            sink.stop()


def fresh_databases(admin_url: str, run_name: str) -> dict[str, str]:
    """An empty PostgreSQL database per service for this run (dropped first if a run left one)."""
    import psycopg2
    from sqlalchemy.engine import make_url
    url = make_url(admin_url)
    admin = psycopg2.connect(connect_timeout=10, **url.translate_connect_args(username="user", database="dbname"))
    admin.autocommit = True  # CREATE/DROP DATABASE refuse to run in a transaction
    urls = {}
    try:
        with admin.cursor() as cursor:
            for service in APPS:
                name = f"songdaojia_{run_name}_{service}"
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
                urls[service] = url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.close()
    return urls


COUNTED = {"sdj_messages_total": ("service", "queue", "outcome"), "sdj_db_transactions_total": ("service", "by")}


def counters(procs) -> dict[str, dict[tuple, float]]:
    """Each process's counters from its /metrics (services/common/operations.py), keyed by name and labels:
    ("sdj_messages_total", service, queue, outcome) and ("sdj_db_transactions_total", service, by)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families
    read = {}
    for label, proc in procs.items():
        try:
            text = requests.get(f"{proc.url}/metrics", timeout=10).text
        except requests.RequestException:
            continue
        read[label] = {(s.name, *(s.labels[name] for name in COUNTED[s.name])): s.value
                       for family in text_string_to_metric_families(text) for s in family.samples if s.name in COUNTED}
    return read


def work_per_instance(read: dict[str, dict[tuple, float]]) -> dict[str, int]:
    """Messages each process handled, from `counters`."""
    return {label: int(sum(v for key, v in samples.items() if key[0] == "sdj_messages_total" and key[-1] == "handled"))
            for label, samples in read.items()}


def per_ticket_counts(before: dict, after: dict, tickets: int) -> dict[str, dict[str, float]]:
    """What the run added to the counters (`counters` before and after), a ticket: the transactions each service
    began, the same by what began them (`service.entrypoint`, or a background part), and the messages handled
    from each queue. Instances of a service are summed."""
    added: dict[tuple, float] = {}
    for label, samples in after.items():
        for key, value in samples.items():
            added[key] = added.get(key, 0.0) + value - before.get(label, {}).get(key, 0.0)
    services: dict[str, float] = {}
    by_what: dict[str, float] = {}
    queues: dict[str, float] = {}
    for key, value in added.items():
        if key[0] == "sdj_db_transactions_total":
            services[key[1]] = services.get(key[1], 0.0) + value
            by_what[f"{key[1]}.{key[2]}"] = value
        elif key[-1] == "handled":
            queues[key[2]] = queues.get(key[2], 0.0) + value

    def each(counts: dict[str, float]) -> dict[str, float]:
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        shares = {name: round(value / max(tickets, 1), 2) for name, value in ranked}
        return {name: share for name, share in shares.items() if share > 0}
    return {"transactions a ticket": each(services), "transactions a ticket, by what began them": each(by_what),
            "messages handled a ticket, by queue": each(queues)}


LOAD_GENERATOR = ("demo", "mail server")  # cpu_snapshot's parts that are the run's own load: no service, no broker


def cpu_snapshot(procs, broker: int | None = None, database: int | None = None, mail_server: int | None = None,
                 read: Callable[[int], float] = process_cpu_seconds) -> dict[str, float]:
    """CPU seconds used so far by each service, this process (publisher, console, residents), the residents'
    mail server (`mail_server`, its pid), the local broker (`broker`) and the local PostgreSQL server
    (`database`, its postmaster's pid: with every backend), if they run here. `read`: the seconds of one
    process (system_cpu_seconds: those in the kernel only; the database server is then left out)."""
    snapshot = {name: read(proc.proc.pid) for name, proc in procs.items()}
    this_process, mail = LOAD_GENERATOR
    snapshot[this_process] = read(os.getpid())
    if mail_server:
        snapshot[mail] = read(mail_server)
    if broker:
        snapshot["rabbitmq"] = read(broker)
    if database and read is process_cpu_seconds:
        snapshot["postgresql"] = server_cpu_seconds(database)
    return snapshot


def kernel_shares(cpu_before: dict, cpu_after: dict, kernel_before: dict, kernel_after: dict) -> dict[str, str]:
    """Each process's share of its CPU over the run spent in the kernel: system calls and the network stack
    (more messages, more wake-ups) against the interpreter's own work."""
    shares = {}
    for name, kernel in kernel_after.items():
        spent = cpu_after.get(name, float("nan")) - cpu_before.get(name, float("nan"))
        if name in kernel_before and spent > 0:
            shares[name] = f"{(kernel - kernel_before[name]) / spent:.0%}"
    return shares


def _broker_pid(amqp_uri: str) -> int | None:
    """The process of this machine listening on the run's AMQP port (the broker's beam.smp), if any: other
    RabbitMQ nodes may run here too (a cluster, tests), and only this one carries the run."""
    from urllib.parse import urlsplit
    return _listening_pid(urlsplit(amqp_uri.split(";")[0].strip()).port or 5672)


def _database_pid(postgres_url: str) -> int | None:
    """The PostgreSQL server of this machine listening on the run's database port (its postmaster), if any."""
    from sqlalchemy.engine import make_url
    return _listening_pid(make_url(postgres_url).port or 5432)


def _listening_pid(port: int) -> int | None:
    """The process of this machine listening on TCP `port`, if any (and ours to look at)."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:  # sl local_address rem_address st … inode
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                listening.add(f"socket:[{fields[9]}]")
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in listening for fd in fds.iterdir()):
                return int(fds.parent.name)
        except OSError:  # gone, or not ours to look at
            continue
    return None


class Watch(Protocol):
    """Something that watches a run under load (run_loop's `watch`): stopped once, or again when it failed."""

    def stop(self) -> dict: ...


class Publisher(threading.Thread):
    """The outside channels publishing the scenario at the offered rate, while the loop runs."""

    def __init__(self, amqp_uri: str, requests: list[tuple[str, dict]], rate: float | None):
        super().__init__(daemon=True)
        self.amqp_uri, self.requests, self.rate = amqp_uri, requests, rate
        self.sent, self.errors = 0, []

    def run(self) -> None:
        interval = 1.0 / self.rate if self.rate else 0.0
        start = time.monotonic()
        try:
            with IntakeClient(self.amqp_uri, source="demo") as client:
                for i, (channel, request) in enumerate(self.requests):
                    delay = start + i * interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    request["submitted_at"] = datetime.now(timezone.utc).isoformat()
                    client.submit(channel, request)
                    self.sent += 1
        except Exception as exc:  # reported, and the loop waits only for what was sent
            self.errors.append(f"publishing stopped after {self.sent}: {exc!r}")


def wait_closed(observer: Observer, count: int, timeout: float) -> bool:
    """Until every request is closed, or merged into a ticket that is."""
    deadline = time.monotonic() + timeout
    with tqdm(total=count, desc="submitted → closed or cancelled", unit="ticket") as bar:
        while time.monotonic() < deadline:
            final = sum(observer.count_in(state) for state in FINAL)
            done = final + len(observer.merged)
            bar.update(done - bar.n)
            if done >= count and final == len(observer.snapshot()):
                return True
            time.sleep(0.2)
    return False


def build_report(observer: Observer, submitted: int, finished: bool, errors: list[str],
                 seconds: float) -> dict:
    tickets = observer.snapshot()
    def reached(state):
        return sum(1 for t in tickets.values() if state in t.states)
    latencies = observer.ack_latencies_ms()
    return {
        "submitted": submitted,
        "received": sum(1 for t in tickets.values() if t.submitted_at),
        "merged into open": len(observer.merged),
        "acknowledged": sum(1 for t in tickets.values() if t.acks),
        "acknowledged twice": sum(1 for t in tickets.values() if t.acks > 1),
        "followed up": sum(1 for t in tickets.values() if "closed" in t.states or t.reopened),
        "closed": reached("closed"), "cancelled": reached("cancelled"),
        "reopened": sum(1 for t in tickets.values() if t.reopened),
        "with volunteer": sum(1 for t in tickets.values() if t.volunteer),
        "still open": sum(1 for t in tickets.values() if t.state not in FINAL),
        "missing": submitted - sum(1 for t in tickets.values() if t.submitted_at) - len(observer.merged),
        "ack p50 ms": percentile(latencies, 50), "ack p95 ms": percentile(latencies, 95),
        "ack p99 ms": percentile(latencies, 99),
        **{f"ack p50 / p99 ms, {part}": f"{percentile(observer.ack_latencies_ms(part), 50):.0f} / "
                                       f"{percentile(observer.ack_latencies_ms(part), 99):.0f}"
           for part in ("intake", "notify")},
        "loop seconds": seconds, "closed per second": reached("closed") / seconds if seconds else 0.0,
        "finished": finished, "errors": errors[:10],
    }


def ledger_report(stack: Stack, console: Console, observer: Observer) -> dict:
    """How far the tickets went and what supervision did, as the ledger (台账) counts it (the observer does not
    follow routed, accepted, resolved: loop.REPORTED), and the calls the console's people made."""
    import requests
    token = stack.secrets.token("demo-report", "supervisor", "3413")
    r = requests.get(f"{stack.http('dispatch')}/ledger", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    r.raise_for_status()
    totals = r.json()["totals"]
    def rate(key):
        return "n/a" if totals.get(key) is None else f"{totals[key]:.0%}"
    return {
        "opened by dispatch": totals["received"], "accepted": totals["accepted"], "resolved": totals["resolved"],
        "deadlines missed": observer.counts.get("ticket_overdue", 0),
        "escalated": totals["escalated"], "returned": totals["returned"], "reassigned": totals["reassigned"],
        "cancelled by dispatchers": console.done.get("cancel", 0),
        "volunteer offers expired": observer.counts.get("offer_expired", 0),
        "callback tasks p99 ms": percentile(observer.callback_latencies_ms(), 99),
        "callbacks made": console.done.get("callback calls", 0),
        "回访 calls made": console.done.get("follow_up calls", 0),
        "proxy items handled": totals["proxy_handled"],
        "found at the door": rate("found_at_door_rate"),
        "acknowledged ≤ 10 s": rate("acknowledged_10s_rate"),
        "accepted on time": rate("accepted_on_time_rate"), "resolved on time": rate("resolved_on_time_rate"),
        "satisfaction": rate("satisfaction_rate"),
    }


def door_report(stack: Stack, town: str, door: DoorDay, observer: Observer) -> dict:
    """The town's day of visits, as outreach's ledger counts it, and the tickets of the needs found."""
    import requests
    token = stack.secrets.token("demo-report", "town_dispatcher", town)
    r = requests.get(f"{stack.http('outreach')}/ledger/visits", params={"area": town, "days": 1},
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
    r.raise_for_status()
    book = r.json()
    totals = book["totals"]
    tickets = observer.snapshot()
    numbers = door.ticket_numbers()
    return {
        "visits due (town)": totals["due"], "visits done": totals["done"], "visits on time": totals["on_time"],
        "visits missed": totals["missed"], "visits at the village": totals["at_village"],
        "visits left open": totals["due"] - totals["done"],
        "needs found": totals["needs_found"], "needs per 100 visits": totals["needs_per_100"],
        "raised at a night talk": door.talk_items,
        "tickets from the door": ", ".join(f"{sum(1 for n in numbers if n in tickets and tickets[n].state == s)} {s}"
                                           for s in ("closed", "cancelled")) + f" of {len(numbers)}",
        "key households not reached": len(book["not_reached"]),
    }


def print_report(report: dict, out=sys.stdout) -> None:
    print("\nclosed-loop report", file=out)
    for key, value in report.items():
        if key in ("errors",):
            continue
        shown = f"{value:.1f}" if isinstance(value, float) else value
        print(f"  {key:<22} {shown}", file=out)
    for err in report["errors"]:
        print(f"  error: {err}", file=out)
    out.flush()


def print_listening(stack: Stack, sink: MailServer, out) -> None:
    print("\nleft running (Ctrl-C stops everything):", file=out)
    for name in APPS:
        print(f"  {name:<10} {stack.http(name)}   log {stack.var_dir / 'logs' / (name + '.log')}", file=out)
    print(f"\nthe web console: {stack.http('console')}/signin  (paste a token; each file is one person of the "
          f"demo's village, valid 8 hours)", file=out)
    for person, path in write_demo_tokens(stack.secrets, stack.var_dir / "console-sign-in"):
        print(f"  {person.role:<18} {person.subject:<24} area {person.area:<17} {path}", file=out)
    print(file=out)
    print(f"  broker     {stack.uri('publisher-channels')}  (outside publishers: exchange intake.submissions)",
          file=out)
    print(f"  mailbox    smtp://127.0.0.1:{sink.port}", file=out)
    print(f"  secrets    {stack.secrets.directory}  (a staff token: ./sdj token --role supervisor --area 3413)",
          file=out, flush=True)


def stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP alike end the run and stop the services it started (the `finally` of
    run_loop). SIGINT too when started in the background by a shell that made it ignore SIGINT."""
    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


def wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
