"""What the benchmark watches while the loop runs, to tell where the time goes (`./sdj bench`):

- `broker_counters()`: the broker's own counts of messages received, routed and delivered (RabbitMQ's global
  counters, read with `rabbitmqctl eval`): before and after the loop, per closed ticket. They are the whole
  node's: the benchmark should be the only load on it.
- `Backlog`: every half second, how many messages wait in the services' queues (a passive declare of each,
  over AMQP as the vhost's admin): the peak, and how long after the last request went out the queues took to
  drain to at most 10 messages, or 1 % of the peak (the surge's figure).
- `Profiles`: a py-spy flame graph (SVG) of each service process over the run (`--profile`), under
  var/artefacts/profiles/, and beside each a summary (`flame_summary`): the share of the samples spent in each
  library's own code (the ORM, eventlet, the AMQP client, nameko, ours…) and the functions that cost most.
- `Watches`: several of these as the one `watch` run_loop takes.
"""
from __future__ import annotations

import html
import importlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pika

from .stack import ROOT, SERVICES, Stack
from .vhosts import rabbitmqctl

DRAIN_PATIENCE = 600.0  # seconds the benchmark waits, after the last ticket closed, for the backlog to drain
DRAINED_AT_MOST = 10  # messages waiting, or 1 % of the peak if more: the backlog has drained
COUNTERS = re.compile(r"\[(\d+),(\d+),(\d+)\]")
_COUNTERS_EVAL = (
    "O = rabbit_global_counters:overview(), P = maps:get([{protocol,amqp091}], O), "
    "D = fun(T) -> maps:get(messages_delivered_total, maps:get([{protocol,amqp091},{queue_type,T}], O)) end, "
    "[maps:get(messages_received_total, P), maps:get(messages_routed_total, P), "
    "D(rabbit_classic_queue) + D(rabbit_quorum_queue)].")


def broker_counters() -> dict[str, int] | None:
    """Messages the broker node received from publishers, routed to queues and delivered to consumers so far;
    None where rabbitmqctl cannot say (another broker, an older RabbitMQ)."""
    try:
        found = COUNTERS.search(rabbitmqctl("eval", _COUNTERS_EVAL).replace(" ", "").replace("\n", ""))
    except RuntimeError:
        return None
    if not found:
        return None
    return dict(zip(("received", "routed", "delivered"), map(int, found.groups())))


def per_ticket(before: dict | None, after: dict | None, tickets: int) -> dict[str, float] | None:
    if not before or not after or not tickets:
        return None
    return {name: round((after[name] - before[name]) / tickets, 1) for name in before}


def service_queues(stack: Stack) -> list[str]:
    """Every queue the services consume (not their retry and dead-letter queues)."""
    from services.common.messaging import consumers_of
    names = []
    for name, cls in SERVICES.items():
        service_cls = getattr(importlib.import_module(f"services.{name}.service"), cls)
        names += [consumer.queue for consumer in consumers_of(service_cls)]
    return names


class Backlog(threading.Thread):
    """Messages waiting in the services' queues, sampled every `every` s from the first request on."""

    def __init__(self, stack: Stack, publishing_seconds: float, every: float = 0.5):
        super().__init__(daemon=True, name="backlog")
        self.stack, self.publishing_seconds, self.every = stack, publishing_seconds, every
        self.samples: list[tuple[float, int]] = []  # (seconds since the first request, messages waiting)
        self._stopping = threading.Event()

    def __call__(self, procs) -> "Backlog":
        self.queues = service_queues(self.stack)
        self.started = time.monotonic()
        self.start()
        return self

    def run(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.stack.uri("admin")))
        channel = connection.channel()
        try:
            while not self._stopping.wait(self.every):
                waiting = sum(channel.queue_declare(queue, passive=True).method.message_count for queue in self.queues)
                self.samples.append((time.monotonic() - self.started, waiting))
        finally:
            connection.close()

    def stop(self, patience: float = DRAIN_PATIENCE) -> dict:
        """The figures; called once the last ticket closed, it first waits (at most `patience` s) for what the
        later stages still have in their queues (e.g. dispatch noting deliveries) to be worked off."""
        deadline = time.monotonic() + patience
        while self.is_alive() and self._drained_at() is None and time.monotonic() < deadline:
            time.sleep(self.every)
        self._stopping.set()
        self.join(10)
        if not self.samples:
            return {}
        peak_at, peak = max(self.samples, key=lambda sample: sample[1])
        drained = self._drained_at()
        return {"backlog peak messages": peak, "backlog peak at s": round(peak_at, 1),
                "drained s after the last request": round(drained - self.publishing_seconds, 1)
                if drained is not None else "not within the run"}

    def _drained_at(self) -> float | None:
        samples = list(self.samples)
        if not samples:
            return None
        peak_at, peak = max(samples, key=lambda sample: sample[1])
        low = max(DRAINED_AT_MOST, peak // 100)  # what trickles on after the last ticket (its last mails) is no backlog
        return next((at for at, waiting in samples if at >= max(peak_at, self.publishing_seconds)
                     and waiting <= low), None)


class Profiles:
    """py-spy recording each service process for the whole run; its flame graphs written as the run ends."""

    def __init__(self, directory: Path = ROOT / "var" / "artefacts" / "profiles"):
        self.directory, self.recorders = directory, {}

    def __call__(self, procs) -> "Profiles":
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.directory.mkdir(parents=True, exist_ok=True)
        for label, proc in procs.items():
            path = self.directory / f"{label}.svg"
            self.recorders[label] = (path, subprocess.Popen(
                [spy, "record", "--pid", str(proc.proc.pid), "--output", str(path), "--format", "flamegraph",
                 "--rate", "100", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        return self

    def stop(self) -> dict:
        written = {}
        for label, (path, recorder) in self.recorders.items():
            if recorder.poll() is None:
                recorder.send_signal(signal.SIGINT)  # py-spy writes the flame graph when interrupted
            try:
                _, err = recorder.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                recorder.kill()
                err = b"did not finish"
            if not path.exists():
                written[label] = f"none ({err.decode(errors='replace').strip().splitlines()[-1:] or 'py-spy failed'})"
                continue
            summary = flame_summary(path.read_text(encoding="utf-8"))
            path.with_suffix(".txt").write_text(summary_text(label, summary), encoding="utf-8")
            written[label] = {"svg": str(path.relative_to(ROOT)), "% own time by library": summary["by library"]}
        return {"flame graphs": written}


# a py-spy flame graph's frame: <g><title>function (file:line) (N samples, P%)</title><rect … y="…" fg:x="…" fg:w="…"
_FRAME = re.compile(r'<g><title>(?P<title>[^<]*)</title><rect [^>]*?y="(?P<y>\d+)"[^>]*?fg:x="(?P<x>\d+)" '
                    r'fg:w="(?P<w>\d+)"')
_SAMPLES = re.compile(r" \([\d,]+ samples?, [\d.]+%\)$")
LIBRARIES = (("sqlalchemy", "sqlalchemy/"), ("eventlet", "eventlet/"), ("amqp, kombu", ("amqp/", "kombu/")),
             ("nameko", "nameko/"), ("marshmallow", "marshmallow/"), ("ours", ("services/", "songdaojia/")))


def flame_summary(svg: str, top: int = 25) -> dict:
    """What a py-spy flame graph says, as figures: each frame's own samples (its width less its children's, one
    row further from the root), summed per library and per function (lines merged), as % of all samples."""
    frames = []
    for m in _FRAME.finditer(svg):
        name = re.sub(r":\d+\)$", ")", _SAMPLES.sub("", html.unescape(m["title"])))
        frames.append((int(m["y"]), int(m["x"]), int(m["w"]), name))
    if not frames:
        return {"samples": 0, "by library": {}, "top": []}
    rows: dict[int, list] = {}
    for frame in frames:
        rows.setdefault(frame[0], []).append(frame)
    root_row = min(rows)
    total = sum(w for _y, _x, w, _n in rows[root_row]) or 1
    step = min((y for y in rows if y > root_row), default=root_row + 16) - root_row
    own: dict[str, int] = {}
    for y, x, w, name in frames:
        if y == root_row:
            continue  # "all": its own samples are none of the process's code
        children = sum(cw for _cy, cx, cw, _cn in rows.get(y + step, ()) if x <= cx and cx + cw <= x + w)
        own[name] = own.get(name, 0) + w - children
    by_library: dict[str, float] = {}
    for name, samples in own.items():
        library = next((label for label, marks in LIBRARIES
                        if any(mark in name for mark in ((marks,) if isinstance(marks, str) else marks))), "other")
        by_library[library] = by_library.get(library, 0) + samples

    def share(samples: int) -> float:
        return round(100 * samples / total, 1)
    return {"samples": total,
            "by library": {k: share(v) for k, v in sorted(by_library.items(), key=lambda kv: -kv[1])},
            "top": [(share(v), k) for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:top]]}


def summary_text(label: str, summary: dict) -> str:
    lines = [f"{label}: {summary['samples']} samples; % of them in each library's own code"]
    lines += [f"  {pct:5.1f}%  {library}" for library, pct in summary["by library"].items()]
    lines += ["functions by their own samples (lines merged)"]
    lines += [f"  {pct:5.1f}%  {name}" for pct, name in summary["top"]]
    return "\n".join(lines) + "\n"


class Watches:
    """Several watches as one: started together, stopped in turn, their figures merged."""

    def __init__(self, *watches):
        self.watches, self.started = [w for w in watches if w is not None], []

    def __call__(self, procs) -> "Watches":
        self.started = [watch(procs) for watch in self.watches]
        return self

    def stop(self) -> dict:
        figures = {}
        for watch in self.started:
            figures.update(watch.stop())
        return figures
