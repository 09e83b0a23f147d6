"""What the fault tests share: the demo's people around a running stack, the faults' timing and how long
the loop took to recover, and the checks every fault test makes.

    def test_x(fault_run):                       # conftest's fixture: a FaultRun on a running_stack
        run = fault_run
        run.submit(TICKETS)                      # 200 requests at a brisk rate, in the background
        run.wait_for(lambda: run.observer.count_reached("routed") >= 20, "offers under way")
        with run.fault("dispatch killed -9"):    # timed; what was in flight is noted
            run.kill("dispatch")
            run.restart("dispatch")
        run.wait_all_closed()
        run.check_mail()                         # each resident's mail once (an ack for every ticket)
        run.check_dead_letters()

At the end of the test the fixture (`run.record`) appends one JSON line to var/artefacts/faults.jsonl (the repo's
git-ignored var/): the faults (when, how long, tickets in flight), the recovery (from the end of the last
fault: the first event, the first mail, the first ticket closed, every ticket closed; the longest stall of
the event stream) and what the test adds (`run.extra`); conftest's `pytest_terminal_summary` prints a line
per test. A failed test records its line too, with `"outcome": "failed"`.

Recovery is measured from samples of the Observer's counts, taken every SAMPLE_SECONDS.
"""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage

import requests
from sqlalchemy import create_engine, text

from services.dispatch.areas import AreaMap
from songdaojia.demo import Publisher
from songdaojia.loop import Console, Observer, Residents
from songdaojia.stack import ROOT
from tests.amqp_helpers import amqp_queue_messages
from tests.waiting import wait_until

from .requests_helpers import submission

ARTEFACTS = ROOT / "var" / "artefacts" / "faults.jsonl"
RECORDED: list[dict] = []  # this session's records, for the terminal summary
TICKETS = 200
RATE = 40.0  # requests a second: 200 in 5 s, so that faults meet submissions still coming in
SAMPLE_SECONDS = 0.05
SUPERVISE = os.environ.get("SDJ_E2E_SUPERVISE") == "1"  # restart a service that died by itself (see wait_all_closed)
VILLAGES = AreaMap.load().villages()
TICKET_NO = re.compile(r"SDJ-\d{6}-[0-9A-Z]{8}")
ACK_SUBJECT = re.compile(r"已受理 工单号 (SDJ-\d{6}-[0-9A-Z]{8})")
SERVICES = ("intake", "dispatch", "volunteer", "notify")


def requests_for(count: int, first: int = 0) -> list[tuple[str, dict]]:
    """`count` households in as many villages: distinct requests, none a duplicate of another."""
    return [("hotline", submission(i, category="301" if i % 2 else "801", village_code=VILLAGES[i].code,
                                   address=VILLAGES[i].name)) for i in range(first, first + count)]


def hold(seconds: float) -> None:
    """A fault that lasts a given time (a server down, a process frozen): here the waiting is the fault itself,
    not a hope that something has happened meanwhile (tests/waiting.py)."""
    time.sleep(seconds)


def message_id(message: EmailMessage) -> str:
    """The delivery's message id, from the mail's Message-ID `<id@domain>` (services/notify/channels.py)."""
    return str(message["Message-ID"] or "").strip().strip("<>").rsplit("@", 1)[0]


@dataclass
class Fault:
    what: str
    start: float
    end: float | None = None
    in_flight: int = 0  # tickets not closed when it began
    closed_before: int = 0


@dataclass
class Sample:
    at: float
    closed: int
    events: int


@dataclass
class FaultRun:
    """The demo's people (Observer, Console, Residents: songdaojia/loop.py) around a running stack, a publisher
    of requests, the faults made and the Observer's progress, sampled."""
    running: object  # conftest.RunningStack
    name: str
    tickets: int = TICKETS
    extra: dict = field(default_factory=dict)  # what the test adds to its record
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        stack = self.stack
        self.started = time.monotonic()
        self.observer = Observer(stack.uri("monitor"))
        self.console = Console(stack.uri("console-city"), stack.http("dispatch"),
                               token=lambda who, role, area, department=None: stack.secrets.token(
                                   who, role, area, department=department))
        self.residents = Residents(stack.http("notify"), ("mail", stack.secrets.gateway_secret("mail")),
                                   unsatisfied_share=0.0)  # same end state every run: closed
        self.arrivals: list[tuple[float, str]] = []  # (when, message id) of every mail, as it arrived
        self.running.sink.on_message = self._on_mail
        self.samples: list[Sample] = []
        self.publishers: list[Publisher] = []
        self.down: set[str] = set()  # processes the test killed and has not restarted
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True, name="fault-sampler")
        self.observer.start(), self.console.start(), self._sampler.start()

    @property
    def stack(self):
        return self.running.stack

    @property
    def sink(self):
        return self.running.sink

    @property
    def procs(self):
        return self.running.procs

    def _on_mail(self, message: EmailMessage) -> None:
        self.arrivals.append((time.monotonic(), message_id(message)))
        self.residents.on_mail(message)

    def _sample(self) -> None:
        while not self._stopping.wait(SAMPLE_SECONDS):
            self.samples.append(Sample(time.monotonic(), self.observer.count_in("closed"), self.observer.events_seen()))

    # --- driving ----------------------------------------------------------------------------------

    def submit(self, count: int | None = None, rate: float | None = RATE, first: int = 0) -> Publisher:
        """Publish `count` requests (the run's tickets by default) in the background, at `rate` a second."""
        publisher = Publisher(self.stack.uri("publisher-channels"), requests_for(count or self.tickets, first), rate)
        publisher.start()
        self.publishers.append(publisher)
        return publisher

    def kill(self, label: str) -> None:
        """kill -9 of a service's process (`dispatch`, `dispatch-2`): down until `restart(label)`."""
        self.procs[label].kill()
        self.down.add(label)

    def restart(self, label: str, ready: bool = True, **extra_env: str) -> None:
        self.running.restart(label, ready, **extra_env)
        self.down.discard(label)

    def crash_at(self, label: str, points: str) -> None:
        """Start a service's process again with crash points (services/common/faults.py) and wait for it
        to kill itself at them; any other exit fails the test."""
        self.restart(label, ready=False, SDJ_CRASH_AT=points)
        proc = self.procs[label]
        self.wait_for(lambda: not proc.alive(), f"{label} to die at {points}")
        assert proc.proc.returncode == -signal.SIGKILL, \
            f"{label} exited with {proc.proc.returncode}, not at {points}; its log ends: {proc.tail(1)[-300:]}"
        self.down.add(label)

    def died(self) -> list[str]:
        """Processes that exited though the test did not kill them, with the last line of their log."""
        return [f"{label} exited with {proc.proc.returncode}, not killed by the test; its log ends: "
                f"{proc.tail(1)[-300:]}" for label, proc in self.procs.items()
                if label not in self.down and not proc.alive()]

    def closed(self) -> int:
        return self.observer.count_in("closed")

    def wait_for(self, predicate: Callable, message: str, timeout: float = 120) -> object:
        return wait_until(predicate, timeout=timeout, interval=0.05, message=message)

    def begin(self, what: str) -> Fault:
        closed = self.closed()
        fault = Fault(what, time.monotonic(), in_flight=self.tickets - closed, closed_before=closed)
        self.faults.append(fault)
        return fault

    def end(self, fault: Fault) -> None:
        fault.end = time.monotonic()

    @contextmanager
    def fault(self, what: str):
        """Times a fault: it ends when the `with` block does (kill and restart inside it: it ends at the restart)."""
        fault = self.begin(what)
        try:
            yield fault
        finally:
            self.end(fault)

    def wait_all_closed(self, timeout: float = 240) -> None:
        """Until every ticket is closed; at once an AssertionError if a service died by itself meanwhile
        (with SDJ_E2E_SUPERVISE=1 it is started again instead, as systemd's Restart=always would, and noted
        in the record: to measure what production would see while such a bug is open)."""
        def done() -> bool:
            died = self.died()
            if died and SUPERVISE:
                self.extra.setdefault("died by itself, restarted (SDJ_E2E_SUPERVISE)", []).extend(died)
                for label, proc in list(self.procs.items()):
                    if label not in self.down and not proc.alive():
                        self.restart(label)
                died = []
            assert not died, "a service died: " + "; ".join(died)
            return self.closed() == self.tickets
        wait_until(done, timeout=timeout, interval=0.2, message=lambda: self.stuck_report())

    # --- checks -----------------------------------------------------------------------------------

    def check_mail(self, may_repeat: set[str] = frozenset()) -> dict:
        """Every ticket's resident acknowledged, and no resident got a mail twice (counted per ticket and
        subject, which names what it says), save mails whose message id is in `may_repeat`: what a notify
        instance was sending when it was killed -9 (the courier's repeat window, services/notify/courier.py)."""
        messages = self.sink.messages
        acks = Counter(m.group(1) for m in map(ACK_SUBJECT.search, (str(x["Subject"]) for x in messages)) if m)
        assert set(acks) == set(self.observer.snapshot()) and len(acks) == self.tickets, "every resident acknowledged"
        by_subject: dict[tuple, list[str]] = {}
        for mail in messages:
            subject = str(mail["Subject"])
            ticket = TICKET_NO.search(subject)
            by_subject.setdefault((ticket and ticket.group(0), subject), []).append(message_id(mail))
        repeated = {key: ids for key, ids in by_subject.items() if len(ids) > 1}
        unexplained = [key for key, ids in repeated.items() if not set(ids) <= set(may_repeat)]
        assert unexplained == [], f"a resident got the same message twice: {unexplained[:5]}"
        figures = {"mails": len(messages), "mails repeated": sum(len(ids) - 1 for ids in repeated.values())}
        self.extra.update(figures)
        return figures

    def check_closed(self) -> None:
        tracks = self.observer.snapshot()
        assert len(tracks) == self.tickets and all(t.state == "closed" for t in tracks.values())
        assert self.console.errors == [] and self.residents.errors == []
        assert [e for p in self.publishers for e in p.errors] == []

    def check_dead_letters(self) -> None:
        for service in SERVICES:
            assert amqp_queue_messages(self.stack.uri("admin"), f"{service}.dead-letter") == [], service

    def check_all(self, may_repeat: set[str] = frozenset()) -> None:
        """What every fault test asserts at the end."""
        assert self.faults and min(f.in_flight for f in self.faults) > 0, \
            "a fault met nothing in flight: the test proved nothing"
        self.check_closed()
        self.check_mail(may_repeat)
        self.check_dead_letters()

    def stuck_report(self) -> str:
        """What a person would look at when tickets do not close: where each one stands, and why."""
        tracks = self.observer.snapshot()
        open_tickets = [t for t, track in tracks.items() if track.state != "closed"]
        lines = [f"all {self.tickets} closed; states now {Counter(t.state for t in tracks.values())}",
                 f"console errors: {self.console.errors[:5]}; residents' errors: {self.residents.errors[:5]}",
                 f"publishers: {[(p.sent, p.errors[:2]) for p in self.publishers]}",
                 f"observer: reconnects {self.observer.reconnects}, errors {self.observer.connection_errors[-3:]}",
                 "processes: " + ", ".join(f"{n} {'up' if p.alive() else 'down'}" for n, p in self.procs.items())]
        supervisor = {"Authorization": f"Bearer {self.stack.secrets.token('supervisor-1', 'supervisor', '3413')}"}
        for ticket_id in open_tickets[:5]:
            try:
                r = requests.get(f"{self.stack.http('dispatch')}/tickets/{ticket_id}", headers=supervisor, timeout=5)
                lines.append(f"{ticket_id}: {r.status_code} {r.text[:1500]}")
            except requests.RequestException as exc:
                lines.append(f"{ticket_id}: {exc!r}")
        return "\n".join(lines)

    # --- recovery -----------------------------------------------------------------------------------

    def recovery(self) -> dict:
        """From the end of the last fault: the first event seen, the first mail, the first ticket closed, and
        every ticket closed (seconds); the longest time with no event at all during the run."""
        ended = [f.end for f in self.faults if f.end is not None]
        if not ended or not self.samples:
            return {}
        end, samples = max(ended), list(self.samples)
        before = [s for s in samples if s.at <= end] or samples[:1]
        closed_then, events_then = before[-1].closed, before[-1].events
        after = [s for s in samples if s.at >= end]

        def first(condition) -> float | None:
            return next((round(s.at - end, 2) for s in after if condition(s)), None)

        gaps, last = [0.0], samples[0]
        for s in samples[1:]:
            if s.events != last.events:
                gaps.append(s.at - last.at)
                last = s
        series, step = [], 5.0  # tickets closed, every 5 s from the fault's end: the shape of the recovery
        for s in after:
            if s.at - end >= step * len(series):
                series.append(s.closed)
        return {"first_event_s": first(lambda s: s.events > events_then),
                "first_mail_s": next((round(t - end, 2) for t, _ in self.arrivals if t >= end), None),
                "first_close_s": first(lambda s: s.closed > closed_then) if closed_then < self.tickets else None,
                "all_closed_s": first(lambda s: s.closed >= self.tickets),
                "closed_at_fault_end": closed_then, "longest_stall_s": round(max(gaps), 2),
                "closed_every_5_s": series}

    def record(self, outcome: str) -> dict:
        t0 = self.started
        record = {"test": self.name, "outcome": outcome, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "tickets": self.tickets, "wall_s": round(time.monotonic() - t0, 1),
                  "faults": [{"what": f.what, "at_s": round(f.start - t0, 2),
                              "lasted_s": round(f.end - f.start, 2) if f.end is not None else None,
                              "in_flight": f.in_flight} for f in self.faults],
                  "recovery": self.recovery(), **self.extra}
        ARTEFACTS.parent.mkdir(parents=True, exist_ok=True)
        with open(ARTEFACTS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        RECORDED.append(record)
        return record

    def stop(self) -> None:
        self._stopping.set()
        for part in (self.console, self.observer, self.residents):
            part.stop()
        self.running.sink.on_message = None


def summary_line(record: dict) -> str:
    r = record.get("recovery") or {}

    def s(key):
        value = r.get(key)
        return "-" if value is None else f"{value:.1f} s"

    faults = "; ".join(f"{f['what']} ({f['in_flight']} in flight)" for f in record["faults"]) or "no fault made"
    extra = {k: (len(v) if isinstance(v, list) and not all(isinstance(x, (int, float)) for x in v) else v)
             for k, v in record.items() if k not in ("test", "outcome", "at", "tickets", "wall_s", "faults",
                                                     "recovery") and not isinstance(v, dict)}
    return (f"{record['test']} [{record['outcome']}, {record['wall_s']:.0f} s, {record['tickets']} tickets]: {faults}"
            f" | after the last fault: first event {s('first_event_s')}, first mail {s('first_mail_s')}, first close "
            f"{s('first_close_s')}, all closed {s('all_closed_s')}; longest stall {s('longest_stall_s')}"
            + (f" | {', '.join(f'{k} {v}' for k, v in extra.items())}" if extra else ""))


# --- notify's database: what its courier had in hand ----------------------------------------------------


def notify_rows(stack, sql: str, **params) -> list:
    engine = create_engine(stack.db_url("notify"))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def sending(stack, instance: str) -> set[str]:
    """Message ids of the deliveries `instance` (its INSTANCE_ID: the process label) had claimed and not
    recorded: right after a kill -9, what it was sending (each may have reached the resident)."""
    return {row[0] for row in notify_rows(stack, "SELECT message_id FROM deliveries "
                                                 "WHERE state = 'sending' AND claimed_by = :who", who=instance)}


def delivery_states(stack) -> Counter:
    return Counter({row[0]: row[1] for row in notify_rows(stack, "SELECT state, count(*) FROM deliveries GROUP BY state")})


def undelivered(stack) -> set[str]:
    return {row[0] for row in notify_rows(stack, "SELECT message_id FROM deliveries WHERE state IN ('pending', 'sending')")}
