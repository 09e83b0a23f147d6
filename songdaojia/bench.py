"""The benchmark: the full loop at a chosen rate, next to the broker's own ceiling on this machine.

Prints tickets/s through the whole loop, acknowledgement latency p50/p95/p99,
the raw broker ceiling (pika publish + consume of messages of the same size,
persistent, to a durable queue) and our throughput as a ratio of it, the runtime's floor (an empty nameko
handler's CPU per message, and the broker's: bench_floor.py) times the messages a ticket delivers, and the
volunteer match decision time with 100,000 volunteers. `--surge` without `--rate` first measures what the loop
sustains in this hour (`sustainable_rate`).

With several instance counts (`--instances 1 2`), the loop runs once per count, with the same tickets and
rate, every run on PostgreSQL, and a table shows them side by side: throughput, acknowledgement latency,
CPU per ticket of each service (its instances summed), the broker and the load generator, each service's
outbox lag under load (its /metrics gauge sampled every second), and each instance's share of the work.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import sys
import threading
import time
import uuid
from typing import Callable

import pika
import requests

from . import scenario
from .demo import BENCH_SLA_SCALES, LOAD_GENERATOR, run_loop
from .loop import Habits, percentile
from .bench_floor import runtime_floor
from .bench_probes import Backlog, Profiles, Watches, broker_counters, per_ticket
from .stack import SERVICES, ServiceProcess, Stack
from .vhosts import throwaway_vhost

FLOOR_MESSAGES, FLOOR_RATE = 4000, 500.0  # about a ticket's messages at 20 tickets/s: each wakes the consumer
# more than the loop keeps up with on any hour seen (it closed 45 tickets/s at most): a ticket's CPU as it is when the
# cores are full, lower than at a steady rate (the runs' idle polling is shared by more tickets, batches are fuller)
CALIBRATION_TICKETS, CALIBRATION_RATE = 1200, 60.0

OUTBOX_LAG = re.compile(r'^sdj_outbox_lag_seconds\{service="(?P<service>[^"]+)"\} (?P<value>\S+)$', re.M)


def broker_ceiling(amqp_uri: str, body: bytes, count: int) -> float:
    """Messages per second that pika alone moves through the broker (publish + consume)."""
    queue = f"bench.ceiling.{uuid.uuid4().hex[:8]}"
    params = pika.URLParameters(amqp_uri)
    setup = pika.BlockingConnection(params)
    setup.channel().queue_declare(queue, durable=True)
    done = threading.Event()

    def consume():
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1000)
        seen = 0
        for method, _props, _body in ch.consume(queue, inactivity_timeout=30):
            if method is None:
                break
            seen += 1
            if seen % 500 == 0 or seen == count:
                ch.basic_ack(method.delivery_tag, multiple=True)
            if seen == count:
                break
        done.set()
        conn.close()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    start = time.perf_counter()
    publisher = pika.BlockingConnection(params)
    ch = publisher.channel()
    props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
    for i in range(count):
        ch.basic_publish("", queue, body, props)
    publisher.close()
    done.wait(120)
    elapsed = time.perf_counter() - start
    setup.channel().queue_delete(queue)
    setup.close()
    return count / elapsed


def matching_figures() -> dict:
    """The match decision with Suzhou's 100,000 demo volunteers, and (`million`) with 1,000,000."""
    from services.dispatch.areas import AreaMap
    from services.volunteer.bench_matching import measure
    villages = [(v.code, v.parent_code) for v in AreaMap.load().villages()]
    figures = measure(n_volunteers=100_000, n_requests=20_000, villages=villages)
    figures["million"] = measure(n_volunteers=1_000_000, n_requests=20_000, villages=villages)
    return figures


def _loop(stack: Stack, tickets: int, rate: float, volunteers: int, out, instances: int = 1,
          postgres: str | None = None, watch=None) -> dict:
    """The closed loop as the benchmark runs it: nobody misses anything, only the waits are short."""
    return run_loop(stack, tickets, rate, timeout=max(300.0, tickets / 5), volunteers=volunteers, out=out,
                    habits=Habits(), silent=0.0, withdraw=0.0, sla_scales=BENCH_SLA_SCALES,
                    instances=instances, postgres=postgres, watch=watch)


def core_count() -> int:
    return len(os.sched_getaffinity(0))


def cpu_ceiling(cpu_ms_per_ticket: dict[str, float], cores: int) -> float:
    """Tickets/s these cores allow at most: the CPU a ticket takes in every process of the run (the load
    generator's too, which shares the cores), the cores busy all the time."""
    total = sum(cpu_ms_per_ticket.values())
    return cores * 1000 / total if total else float("nan")


def sustainable_rate(new_stack: Callable[[], Stack], volunteers: int = 100_000, instances: int = 1,
                     postgres: str | None = None, out=sys.stdout) -> float:
    """What the loop sustains on this machine now, for `--surge` without `--rate`: a run that loads it fully
    (CALIBRATION_TICKETS at CALIBRATION_RATE, on a stack of its own), and the cores' ceiling at the CPU a
    ticket took in it (cpu_ceiling). An estimate from above: it counts every core busy all the time. The
    machine's speed moves by half within a day, so the surge is sized in the same hour, not from a figure
    written down."""
    stack = new_stack()
    stack.run_name = "bench-calibration"
    print(f"what the loop sustains here: {CALIBRATION_TICKETS} tickets offered at {CALIBRATION_RATE:g}/s, then the "
          f"cores' ceiling at the CPU a ticket took …", file=out, flush=True)
    report = _loop(stack, CALIBRATION_TICKETS, CALIBRATION_RATE, volunteers, out, instances=instances,
                   postgres=postgres)
    if not report["finished"]:
        raise SystemExit("bench: the calibration run did not close its tickets; see its errors above")
    cpu, n = report["CPU ms per ticket"], core_count()
    rate = cpu_ceiling(cpu, n)
    print(f"sustainable: at most {rate:.1f} tickets/s ({n} cores ÷ {sum(cpu.values()):.1f} CPU ms a ticket, "
          f"every process of the run, offered {CALIBRATION_RATE:g}/s)", file=out, flush=True)
    return rate


def _ceiling_floor_and_matching(stack: Stack, tickets: int, out) -> tuple[float, dict, dict]:
    body = json.dumps(scenario.requests(1)[0][1], ensure_ascii=False).encode()
    print(f"broker ceiling: pika publish + consume of {tickets * 10:,} messages of {len(body)} bytes; the runtime's "
          f"floor: an empty nameko handler fed {FLOOR_MESSAGES:,} at {FLOOR_RATE:g}/s …", file=out, flush=True)
    with throwaway_vhost(stack.amqp_uri, prefix="songdaojia-ceiling") as scratch:
        ceiling = broker_ceiling(scratch, body, tickets * 10)
        floor = runtime_floor(scratch, body, FLOOR_MESSAGES, FLOOR_RATE)
    return ceiling, floor, matching_figures()


def _floor_figures(floor: dict, broker: dict | None) -> dict:
    """The runtime's floor per message, and what a ticket's delivered messages would cost at it."""
    per_message = floor["consumer µs"] + floor["broker µs"]
    figures = {"floor µs/message": f"{floor['consumer µs']} consumer + {floor['broker µs']} broker"}
    if broker:
        figures["floor × delivered, ms"] = round(per_message * broker["delivered"] / 1000, 1)
    return figures


def run_bench(stack: Stack, tickets: int, rate: float, volunteers: int = 100_000, out=sys.stdout,
              instances: int = 1, postgres: str | None = None, console: bool = False, profile: bool = False) -> dict:
    from .bench_console import ConsolePages
    stack.run_name = "bench"
    ceiling, floor, match = _ceiling_floor_and_matching(stack, tickets, out)
    watch = Watches(Backlog(stack, tickets / rate if rate else 0.0), Profiles() if profile else None,
                    ConsolePages(stack) if console else None)  # the console's pages: once the loop has closed
    counted = broker_counters()
    report = _loop(stack, tickets, rate, volunteers, out, instances=instances, postgres=postgres, watch=watch)
    broker = per_ticket(counted, broker_counters(), report["closed"])
    figures = {
        "tickets": tickets, "offered rate /s": rate,
        "closed loop tickets/s": round(report["closed per second"], 1),
        "ack p50 ms": round(report["ack p50 ms"], 1), "ack p95 ms": round(report["ack p95 ms"], 1),
        "ack p99 ms": round(report["ack p99 ms"], 1),
        "ack p50/p99 to intake": report["ack p50 / p99 ms, intake"],  # submitted -> ticket committed
        "ack p50/p99 then notify": report["ack p50 / p99 ms, notify"],  # committed -> acknowledgement sent
        "broker ceiling msg/s": round(ceiling),
        "tickets/s ÷ broker msg/s": f"{report['closed per second'] / ceiling:.2%}",
        "match p50 ms": match["p50_ms"], "match p99 ms": match["p99_ms"],
        "match 1M p50 / p99 ms": f"{match['million']['p50_ms']} / {match['million']['p99_ms']}",
        "service RSS MiB": report["service RSS MiB"],
        "CPU ms per ticket": report["CPU ms per ticket"],
        "CPU ms per ticket, all": round(sum(report["CPU ms per ticket"].values()), 1),
        "cores' ceiling tickets/s": round(cpu_ceiling(report["CPU ms per ticket"], core_count()), 1),
        "CPU ms, services+broker": round(sum(v for k, v in report["CPU ms per ticket"].items()
                                             if k not in LOAD_GENERATOR), 1),
        "kernel share of CPU": report.get("kernel share of CPU", "n/a"),
        "messages per ticket": broker or "n/a (rabbitmqctl could not say)",
        **_floor_figures(floor, broker),
        "backlog peak messages": report.get("backlog peak messages", "n/a"),
        "backlog peak at s": report.get("backlog peak at s", "n/a"),
        "drained s after last req.": report.get("drained s after the last request", "n/a"),
    }
    if profile:
        figures["flame graphs"] = report.get("flame graphs")
    if instances > 1:
        figures["messages handled per instance"] = report.get("messages handled per instance")
    print("\nbenchmark", file=out)
    for key, value in figures.items():
        print(f"  {key:<26} {value}", file=out)
    if report.get("console pages"):
        figures["console pages"] = report["console pages"]
        print("\nthe web console's pages (one person clicking; request to answer over loopback)", file=out)
        for name, page in report["console pages"].items():
            print(f"  {name:<26} p50 {page['p50 ms']:>6} ms   p95 {page['p95 ms']:>6} ms   {page['bytes']:>6} bytes",
                  file=out)
    return figures


class OutboxLagSampler(threading.Thread):
    """Every `every` seconds, each service's `sdj_outbox_lag_seconds` from its /metrics (services/common/
    operations.py): the age of its oldest unsent event, read from the database its instances share, so one
    instance answers for all; they take turns. Started as the load starts, stopped when the loop closed."""

    def __init__(self, procs: dict[str, ServiceProcess], every: float = 1.0):
        super().__init__(daemon=True, name="outbox-lag")
        self.every = every
        self.instances: dict[str, list[ServiceProcess]] = {}
        for proc in procs.values():
            self.instances.setdefault(proc.name, []).append(proc)
        self.samples: dict[str, list[float]] = {name: [] for name in self.instances}
        self.misses = 0
        self._stopping = threading.Event()
        self._result: dict | None = None
        self.start()

    def run(self) -> None:
        session, turn = requests.Session(), 0
        while not self._stopping.wait(self.every):
            for name, procs in self.instances.items():
                proc = procs[turn % len(procs)]
                try:
                    text = session.get(f"{proc.url}/metrics", timeout=2).text
                except requests.RequestException:
                    self.misses += 1
                    continue
                for match in OUTBOX_LAG.finditer(text):
                    if match["service"] == name:
                        self.samples[name].append(float(match["value"]))
            turn += 1

    def stop(self) -> dict:
        if self._result is None:
            self._stopping.set()
            self.join(10)
            self._result = {"outbox lag s": {
                name: {"max": round(max(values), 2) if values else float("nan"),
                       "p95": round(percentile(sorted(values), 95), 2), "samples": len(values)}
                for name, values in self.samples.items()}}
        return self._result


def _service_of(label: str) -> str | None:
    """`dispatch-2` -> dispatch; the load generator (demo.LOAD_GENERATOR), the broker (`rabbitmq`) and the database
    server (`postgresql`) are no service."""
    name = label.rsplit("-", 1)[0] if label.rsplit("-", 1)[-1].isdigit() else label
    return name if name in SERVICES else None


def _cpu_by_part(cpu: dict[str, float]) -> dict[str, float]:
    """CPU ms per ticket of each service (its instances summed), the broker and the load generator."""
    parts = {name: 0.0 for name in SERVICES}
    for label, ms in cpu.items():
        part = _service_of(label) or ("load generator" if label in LOAD_GENERATOR else label)
        parts[part] = parts.get(part, 0.0) + ms
    return parts


def _shares(report: dict, instances: int) -> dict[str, str]:
    """Each instance's share of the messages its service handled (`./sdj run --instances`' figure)."""
    handled = report.get("messages handled per instance") or {}
    shares = {}
    for name in SERVICES:
        counts = [handled.get(name if n == 1 else f"{name}-{n}") for n in range(1, instances + 1)]
        if instances == 1:
            shares[name] = "100%"
        elif None in counts or not sum(counts):
            shares[name] = "n/a"
        else:
            shares[name] = " / ".join(f"{c / sum(counts):.0%}" for c in counts)
    return shares


REPEATED = ("closed loop tickets/s", "ack p50 ms", "ack p95 ms", "ack p99 ms", "CPU ms, services+broker",
            "CPU ms per ticket", "backlog peak messages", "drained s after last req.", "floor × delivered, ms")


def repeated_figures(runs: list[dict]) -> dict[str, str]:
    """Several runs of the same load, figure by figure: the median and the range (min–max), per service for the
    CPU. One run's noise is a few ms a ticket: a lever smaller than the range has not shown."""
    def spread(values) -> str:
        values = sorted(v for v in values if isinstance(v, (int, float)))
        if not values:
            return "n/a"
        return f"{statistics.median(values):g} ({values[0]:g}–{values[-1]:g})"
    summary = {}
    for key in REPEATED:
        if key == "CPU ms per ticket":
            for process in dict.fromkeys(p for run in runs for p in run.get(key, {})):
                summary[f"CPU ms, {process}"] = spread(run.get(key, {}).get(process) for run in runs)
        else:
            summary[key] = spread(run.get(key) for run in runs)
    return summary


def repeat_bench(new_stack: Callable[[], Stack], times: int, out=sys.stdout, **kwargs) -> dict[str, str]:
    """`run_bench` `times` times, each on a stack of its own, then the figures side by side as repeated_figures."""
    runs = []
    for n in range(times):
        print(f"\n=== run {n + 1} of {times} ===", file=out, flush=True)
        runs.append(run_bench(new_stack(), out=out, **kwargs))
    summary = repeated_figures(runs)
    print(f"\nover {times} runs: median (min–max)", file=out)
    for key, value in summary.items():
        print(f"  {key:<26} {value}", file=out)
    return summary


def compare_instances(new_stack: Callable[[], Stack], tickets: int, rate: float, counts: list[int],
                      postgres: str, volunteers: int = 100_000, out=sys.stdout) -> dict[int, dict]:
    """The loop once per instance count, same tickets and rate, all on PostgreSQL: a table side by side."""
    first = new_stack()
    ceiling, _floor, match = _ceiling_floor_and_matching(first, tickets, out)
    reports = {}
    for n in counts:
        stack = new_stack()
        stack.run_name = "bench"
        print(f"\n=== {n} instance{'s' if n > 1 else ''} of every service (PostgreSQL) ===", file=out, flush=True)
        reports[n] = _loop(stack, tickets, rate, volunteers, out, instances=n, postgres=postgres,
                           watch=OutboxLagSampler)
    print(side_by_side(reports, tickets, rate, ceiling, match), file=out, flush=True)
    return reports


def side_by_side(reports: dict[int, dict], tickets: int, rate: float, ceiling: float, match: dict,
                 cores: int | None = None) -> str:
    cores = cores or core_count()
    counts = list(reports)
    rows: list[tuple[str, list[str]]] = []

    def row(title, values):
        rows.append((title, [str(v) for v in values]))
    row("closed loop tickets/s", [f"{reports[n]['closed per second']:.1f}" for n in counts])
    row("finished, acknowledged twice", [f"{'yes' if reports[n]['finished'] else 'NO'}, "
                                         f"{reports[n]['acknowledged twice']}" for n in counts])
    row("still open, errors seen", [f"{reports[n]['still open']}, {len(reports[n]['errors'])}"
                                    f"{'+' if len(reports[n]['errors']) >= 10 else ''}" for n in counts])
    for p in (50, 99):
        row(f"ack p{p} ms", [f"{reports[n][f'ack p{p} ms']:.0f}" for n in counts])
    cpu = {n: _cpu_by_part(reports[n]["CPU ms per ticket"]) for n in counts}
    parts = list(SERVICES) + [p for p in cpu[counts[0]] if p not in SERVICES]
    for part in parts:
        row(f"CPU ms/ticket {part}", [f"{cpu[n].get(part, float('nan')):.1f}" for n in counts])
    row("CPU ms/ticket, all", [f"{sum(cpu[n].values()):.1f}" for n in counts])
    for name in SERVICES:
        row(f"outbox lag s {name} max/p95", [
            f"{lag['max']:.2f} / {lag['p95']:.2f}" if (lag := reports[n].get("outbox lag s", {}).get(name))
            else "n/a" for n in counts])
    shares = {n: _shares(reports[n], n) for n in counts}
    for name in SERVICES:
        row(f"work share {name}", [shares[n][name] for n in counts])
    row("service RSS MiB, all", [f"{sum(v for v in reports[n]['service RSS MiB'].values() if v == v):.0f}"
                                 for n in counts])
    header = [f"{n} instance{'s' if n > 1 else ''}" for n in counts]
    width = max(len(title) for title, _ in rows)
    columns = [max(len(header[i]), *(len(values[i]) for _, values in rows)) for i in range(len(counts))]
    lines = [f"\nside by side: {tickets} tickets offered at {rate:g}/s, every run on PostgreSQL, {cores} CPU cores "
             f"(broker ceiling {ceiling:,.0f} msg/s; volunteer match p50/p99 {match['p50_ms']}/{match['p99_ms']} ms; "
             f"PostgreSQL's server counted when it runs here; it and the broker count whoever else uses them)",
             " " * width + "  " + "  ".join(h.rjust(c) for h, c in zip(header, columns))]
    lines += [title.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(values, columns))
              for title, values in rows]
    lines.append(why(reports, cpu, rate, cores))
    return "\n".join(lines)


def why(reports: dict[int, dict], cpu: dict[int, dict[str, float]], rate: float, cores: int) -> str:
    """One line: why more instances cannot multiply throughput on these cores, and where the CPU goes."""
    counts = sorted(reports)
    low, high = counts[0], counts[-1]
    total = {n: sum(cpu[n].values()) for n in counts}
    ceiling = cpu_ceiling(cpu[low], cores)
    top = sorted(((ms, part) for part, ms in cpu[low].items()), reverse=True)[:3]
    where = ", ".join(f"{part} {ms / total[low]:.0%}" for ms, part in top)
    growth = max(((cpu[high].get(p, 0) - cpu[low].get(p, 0), p) for p in cpu[high]), default=(0.0, "-"))
    bound = (f"offered {rate:g}/s, below that ceiling, both runs show cost rather than capacity"
             if rate < 0.8 * ceiling else f"offered {rate:g}/s, near or above that ceiling, the cores bound both runs")
    extra = (f" (most in {growth[1]}, {growth[0]:+.1f}: each process polls its own timers and outbox and holds its "
             f"own connections)" if total[high] > total[low] else "")
    return (f"why: every instance shares the same {cores} cores: a ticket costs {total[low]:.0f} CPU ms across the "
            f"loop ({where}), so at most ~{ceiling:.0f} tickets/s however many instances run; {high} instances "
            f"cost {total[high] - total[low]:+.0f} ms/ticket{extra} and went {reports[low]['closed per second']:.1f}"
            f" -> {reports[high]['closed per second']:.1f} tickets/s; {bound}"
            + "".join(f"; {n} instance{'s' if n > 1 else ''} did not finish within the timeout (its figures cover "
                      f"what closed; see its errors)" for n in counts if not reports[n]["finished"]) + ".")
