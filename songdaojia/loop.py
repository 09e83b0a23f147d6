"""The people around the system in a demo or benchmark run, and the one who keeps score.

- `Observer` listens to every service's events and tracks each ticket.
- `Console` is the people at dispatch consoles: it consumes the work exchange and
  accepts, resolves, returns, reassigns, files, decides and makes call tasks over
  dispatch's HTTP API, each person with their own token, with the `Habits` of a demo.
- `Residents` read their mail and answer the follow-up survey; their mail system
  forwards each answer to notify as a gateway does: signed, with the survey's code.

They live through faults as the people they stand for would: the listeners (Observer, Console) connect
again by themselves when the broker goes away (a node restarted, connections closed by the broker), with
back-off, to the next of several brokers when given a list (or `;`-separated URIs), and keep their queue
meanwhile; each counts an event once, by its event id. A console's HTTP call is tried again while dispatch
is down (`Console._call_api`), a resident's a few times (`Residents._post`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Callable

import pika
import requests

from services.common.gateways import signature

log = logging.getLogger(__name__)

OBSERVED = {  # every step of a ticket the tests watch for (`count_reached("routed")`), and no more
    "intake.events": ("ticket_received", "ticket_merged"),
    "dispatch.events": ("ticket_routed", "ticket_accepted", "ticket_resolved", "ticket_closed",
                        "ticket_reopened", "ticket_cancelled", "ticket_overdue", "ticket_escalated",
                        "ticket_returned", "task_assigned"),
    "volunteer.events": ("volunteer_offered", "offer_expired"),
    "notify.events": ("resident_acknowledged",),
}
# what a demo or benchmark report needs from events: not the steps every ticket takes on its way (routed,
# accepted, resolved), which the report reads from dispatch's ledger (demo.ledger_report); the observer shares
# the machine it measures, and each message it is delivered costs the broker what a service's does (README)
REPORTED = {**OBSERVED, "dispatch.events": tuple(key for key in OBSERVED["dispatch.events"]
                                                 if key not in ("ticket_routed", "ticket_accepted", "ticket_resolved"))}
TICKET_NO = re.compile(r"SDJ-\d{6}-[0-9A-Z]{8}")
SURVEY_CODE = re.compile(r"\[(?:评价码|code) ([0-9A-Z]+)\]")
# the residents' mail system tries a call to a service this often, over about 20 s, a second apart at least:
# a signature carries the second it was made, and notify refuses one it has seen before (a replay)
HTTP_ATTEMPTS, HTTP_FIRST_DELAY, HTTP_MAX_DELAY, HTTP_TIMEOUT = 5, 1.0, 8.0, 10.0


@dataclass
class TicketTrack:
    submitted_at: datetime | None = None
    received_at: datetime | None = None  # intake committed the ticket (ticket_received's occurred_at)
    acked_at: datetime | None = None
    acks: int = 0
    states: list[str] = field(default_factory=list)
    reopened: int = 0
    volunteer: bool = False
    callback_task_at: datetime | None = None  # when the hotline callback task was made (10-second promise)
    version: int = 0  # the ticket_version of `latest`
    latest: str | None = None  # the state of the newest version seen (events of two instances may overtake)

    @property
    def state(self) -> str:
        return self.latest or (self.states[-1] if self.states else "received")


class _Stopped(Exception):
    """A call given up because its client is stopping."""


def local_session() -> requests.Session:
    """A keep-alive HTTP session to the stack on this machine. It does not look in the environment for proxies,
    a .netrc or a CA bundle, as requests otherwise does on every call (its CPU: README, Benchmark)."""
    session = requests.Session()
    session.trust_env = False
    return session


class _HttpClient:
    _local: threading.local

    def _session(self) -> requests.Session:
        """One keep-alive session per thread (a Session is not shared across threads)."""
        if not hasattr(self._local, "session"):
            self._local.session = local_session()
        return self._local.session


def _who(uri: str) -> str:
    """The party a broker login is (`<vhost>.monitor` -> `monitor`): its own queues are named after it."""
    from urllib.parse import unquote, urlsplit
    parts = urlsplit(uri)
    vhost, user = unquote(parts.path[1:]) or "/", unquote(parts.username or "guest")
    return user[len(vhost) + 1:] if user.startswith(vhost + ".") else user


def amqp_uris(amqp_uri: str | list[str] | tuple[str, ...]) -> list[str]:
    """One URI, a list of them, or a `;`-separated string of them (as kombu takes a cluster's URIs)."""
    uris = amqp_uri.split(";") if isinstance(amqp_uri, str) else list(amqp_uri)
    uris = [u.strip() for u in uris if u and u.strip()]
    if not uris:
        raise ValueError("no AMQP URI given")
    return uris


QUEUE_EXPIRES_SECONDS = 300.0  # a listener's queue outlives a lost connection this long (x-expires)
RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY = 0.2, 5.0
RECENT_IDS = 200_000  # event ids remembered to drop repeats (a redelivery, a relay's re-send come soon after)


class _RecentIds:
    """The last `capacity` ids seen: `add` says whether an id is new."""

    def __init__(self, capacity: int = RECENT_IDS):
        self.capacity, self.ids, self.order = capacity, set(), deque()

    def add(self, key: str) -> bool:
        if key in self.ids:
            return False
        self.ids.add(key)
        self.order.append(key)
        if len(self.order) > self.capacity:
            self.ids.discard(self.order.popleft())
        return True


class _Listener(threading.Thread):
    """A pika consumer on its own connection and thread, that outlives its connection.

    Its queue is server-named (the monitor's and consoles' broker rights allow `amq.gen-…` names only), durable,
    not exclusive and not auto-delete, and expires `queue_expires` seconds after its last consumer went
    (x-expires): a broker restarted, a node gone, connections closed by the broker, and the listener connects
    again with back-off (to the next URI when given several: a list, or `;`-separated), finds its queue and
    goes on where it stopped; what arrived meanwhile waits there. Only a queue gone for good (expired, or on a
    node that is down) is declared anew, and bound again (`queues_lost` counts those: events were missed).
    A message is handled once per event id (`repeats` counts those dropped): a redelivery after a lost
    connection, or an outbox relay's re-send, does not count twice. The first connection is made at once, so
    a wrong login or a missing exchange fails the constructor; `stop()` deletes the queue.
    """

    def __init__(self, amqp_uri: str | list[str], bindings: list[tuple[str, str]],
                 queue_expires: float = QUEUE_EXPIRES_SECONDS):
        super().__init__(daemon=True)
        self.uris = amqp_uris(amqp_uri)
        self.bindings = bindings
        self.queue_expires = queue_expires
        self.queue: str | None = None
        self.reconnects = 0  # connections made again after one was lost
        self.queues_lost = 0
        self.repeats = 0
        self.connection_errors: list[str] = []  # the last few reasons a connection was lost
        self._seen = _RecentIds()
        self._stopping = threading.Event()
        self._next = 0  # index into uris of the next connection to try
        self.conn = self.channel = None
        self._connect_any()

    # --- connection -----------------------------------------------------------------------------

    def _connect_any(self) -> None:
        """Connect to the first of the URIs (from the next one on) that answers; raise the last error if none."""
        error: Exception | None = None
        for _ in range(len(self.uris)):
            uri = self.uris[self._next % len(self.uris)]
            try:
                self._connect(uri)
                return
            except Exception as exc:  # noqa: BLE001 - the next URI, then the caller's back-off
                error = exc
                self._drop()
                self._next += 1
        raise error

    def _connect(self, uri: str) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(uri))
        self.channel = self.conn.channel()
        for exchange in dict.fromkeys(exchange for exchange, _ in self.bindings):  # only looked up: its owner's
            self.channel.exchange_declare(exchange, "topic", durable=True, passive=True)
        if self.queue is not None:
            try:  # passive: a name `amq.gen-…` may be looked up, not declared
                self.channel.queue_declare(self.queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                log.warning("listener: queue %s is gone (%s); a new one from now on", self.queue, exc.reply_text)
                self.queues_lost += 1
                self.queue = None
                self.channel = self.conn.channel()
        if self.queue is None:
            arguments = {"x-expires": int(self.queue_expires * 1000)}
            name = ""  # server-named
            if len(self.uris) > 1:  # a cluster: a quorum queue outlives a node; it must be named (`<who>.…`)
                name, arguments["x-queue-type"] = f"{_who(uri)}.{uuid.uuid4().hex[:12]}", "quorum"
            self.queue = self.channel.queue_declare(
                name, durable=True, exclusive=False, auto_delete=False, arguments=arguments).method.queue
        for exchange, key in self.bindings:  # binding again what is bound already changes nothing
            self.channel.queue_bind(self.queue, exchange, key)
        self.channel.basic_qos(prefetch_count=500)
        self.channel.basic_consume(self.queue, self._on_message)

    def _drop(self) -> None:
        try:
            if self.conn is not None and self.conn.is_open:
                self.conn.close()
        except Exception:  # noqa: BLE001 - already broken: nothing to close cleanly
            pass
        self.conn = self.channel = None

    def run(self) -> None:
        delay = RECONNECT_FIRST_DELAY
        while not self._stopping.is_set():
            try:
                if self.conn is None:
                    self._connect_any()
                    self.reconnects += 1
                    delay = RECONNECT_FIRST_DELAY
                # until stopped, or the broker cancelled the consumer (its queue deleted): then connect again
                while not self._stopping.is_set() and self.channel.consumer_tags:
                    self.conn.process_data_events(time_limit=0.5)
            except Exception as exc:  # noqa: BLE001 - a lost connection: connect again below
                if self._stopping.is_set():
                    break
                self.connection_errors = [*self.connection_errors[-9:], repr(exc)[:300]]
                log.warning("listener: %r; connecting again in %.1f s", exc, delay)
            if self._stopping.is_set():
                break
            self._drop()
            self._next += 1  # the next URI: this one's node may be the one that is gone
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
        self._close(delete_queue=True)

    def _close(self, delete_queue: bool) -> None:
        try:
            if delete_queue and self.channel is not None and self.channel.is_open and self.queue:
                self.channel.queue_delete(self.queue)
        except Exception:  # noqa: BLE001 - it expires by itself
            pass
        self._drop()

    # --- messages -------------------------------------------------------------------------------

    def _on_message(self, ch, method, props, body) -> None:
        try:
            message = json.loads(body)
            key = (message.get("event_id") if isinstance(message, dict) else None) or props.message_id
            if key is None or self._seen.add(key):
                self.handle(message)
            else:
                self.repeats += 1
        except Exception:  # noqa: BLE001 - a message it cannot read is dropped, not redelivered forever
            log.exception("listener: could not handle a message")
        ch.basic_ack(method.delivery_tag)

    def handle(self, message: dict) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopping.set()
        if self.ident is None:  # never started: close here
            self._close(delete_queue=True)
        else:
            self.join(10)


class Observer(_Listener):
    """Every service's events (`observed`: exchange → routing keys), counted once each (by event id), and
    where each ticket stands as far as those events tell."""

    def __init__(self, amqp_uri: str | list[str], observed: dict[str, tuple[str, ...]] = OBSERVED):
        super().__init__(amqp_uri, [(exchange, key) for exchange, keys in observed.items() for key in keys])
        self.followed = frozenset(key for keys in observed.values() for key in keys)
        self.lock = threading.Lock()
        self.tickets: dict[str, TicketTrack] = {}
        self.counts: dict[str, int] = {}
        self.merged: set[str] = set()

    def handle(self, ev: dict) -> None:
        name, ticket_id, data = ev["event"], ev["ticket_id"], ev.get("data", {})
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1
            if name == "ticket_merged":  # a repeat joined an open ticket: accounted for, nothing to close
                self.merged.add(data["report_no"])
                return
            track = self.tickets.setdefault(ticket_id, TicketTrack())
            if name == "ticket_received":
                track.submitted_at = datetime.fromisoformat(data["submitted_at"])
                track.received_at = datetime.fromisoformat(ev["occurred_at"])
            elif name == "resident_acknowledged":
                track.acks += 1
                track.acked_at = track.acked_at or datetime.fromisoformat(data["delivered_at"])
            elif name == "volunteer_offered":
                track.volunteer = True
            elif name == "task_assigned":
                if data.get("kind") == "callback" and track.callback_task_at is None:
                    track.callback_task_at = datetime.fromisoformat(ev["occurred_at"])
            elif name.startswith("ticket_") and "state" in data:
                track.states.append(data["state"])
                version = data.get("ticket_version") or 0
                if version >= track.version:
                    track.version, track.latest = version, data["state"]
                if name == "ticket_reopened":
                    track.reopened += 1

    def snapshot(self) -> dict[str, TicketTrack]:
        with self.lock:
            return dict(self.tickets)

    def events_seen(self) -> int:
        """Events counted so far (each once)."""
        with self.lock:
            return sum(self.counts.values())

    def count_in(self, state: str) -> int:
        """Tickets in `state` now (a final state: closed, cancelled)."""
        self._following(state)
        with self.lock:
            return sum(1 for t in self.tickets.values() if t.state == state)

    def count_reached(self, state: str) -> int:
        """Tickets that have been in `state`, whatever they are in now (`routed` lasts an instant)."""
        self._following(state)
        with self.lock:
            return sum(1 for t in self.tickets.values() if state in t.states)

    def _following(self, state: str) -> None:
        """A count of a state whose event this observer does not follow would be 0, silently: refused."""
        if f"ticket_{state}" not in self.followed:
            raise ValueError(f"this observer does not follow ticket_{state} (see loop.OBSERVED, REPORTED)")

    def callback_latencies_ms(self) -> list[float]:
        """From the hotline request's submission to its callback task, per ticket, sorted."""
        with self.lock:
            return sorted((t.callback_task_at - t.submitted_at).total_seconds() * 1000
                          for t in self.tickets.values() if t.callback_task_at and t.submitted_at)

    def ack_latencies_ms(self, part: str = "all") -> list[float]:
        """From submission to the acknowledgement delivered, per ticket, sorted; `part` "intake": until intake
        committed the ticket, "notify": from then on (the stages of the acknowledgement's path)."""
        start, end = {"all": ("submitted_at", "acked_at"), "intake": ("submitted_at", "received_at"),
                      "notify": ("received_at", "acked_at")}[part]
        with self.lock:
            return sorted((getattr(t, end) - getattr(t, start)).total_seconds() * 1000
                          for t in self.tickets.values() if t.acked_at and t.submitted_at and t.received_at)


@dataclass(frozen=True)
class Habits:
    """How often the demo's people do what supervision is for, decided per ticket from a seed (reproducible):
    a grid worker lets an offer pass its deadline (`miss`), takes it and gives it back (`give_back`, 退单), a
    dispatcher cancels it (`cancel`), a 回访 call does not reach the resident (`unreached`)."""
    miss: float = 0.0
    give_back: float = 0.0
    cancel: float = 0.0
    unreached: float = 0.0
    seed: int = 3413

    def does(self, habit: str, ticket_id: str) -> bool:
        share = getattr(self, habit)
        if share <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{habit}:{ticket_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < share


class Console(_Listener, _HttpClient):
    """The people at dispatch consoles, each signed in as themself, working what `dispatch.work` brings:
    grid workers and village duty cadres accept and resolve offers, proxy clerks file 代办 items and
    department staff decide them, town and county dispatchers work their desks and reassign returned
    tickets, and whoever is given a call task makes the call.

    `token(subject, role, area, department=None)` is a sign-in (in the demo minted with the run's key,
    as the county's identity provider would issue it). Offers of unplaced map points are left to the
    county centre's people (tests place them).
    """

    def __init__(self, amqp_uri: str | list[str], dispatch_url: str, token: Callable[..., str],
                 binding: str = "area.3413.#", workers: int = 16, habits: Habits | None = None):
        super().__init__(amqp_uri, [("dispatch.work", binding), ("dispatch.work", "dept.#")])
        self.url = dispatch_url
        self.token = token
        self.habits = habits or Habits()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="console")
        self.errors: list[str] = []
        self.done: dict[str, int] = {}
        self._tokens: dict[tuple, str] = {}
        self._local = threading.local()

    def handle(self, message: dict) -> None:
        event, data = message["event"], message["data"]
        job = {"ticket_offered": self._offered, "ticket_returned": self._returned,
               "task_assigned": self._call}.get(event)
        if job and not data["work_key"].endswith(".unplaced"):
            self.pool.submit(self._safely, job, message["ticket_id"], data)

    def _safely(self, job, ticket_id: str, data: dict) -> None:
        try:
            job(ticket_id, data)
        except _Stopped:
            pass
        except Exception as exc:  # never lose a failure silently inside the thread pool
            self.errors.append(f"{ticket_id}: {exc!r}")

    def _count(self, what: str) -> None:
        self.done[what] = self.done.get(what, 0) + 1

    # --- who is signed in ---------------------------------------------------------------------

    def _person(self, assignee_id: str, work_key: str) -> str:
        """The token of whoever works an assignee's offers: the person, or someone at the desk."""
        words = work_key.split(".")
        if assignee_id.startswith("dept-"):
            department, _, county = assignee_id[len("dept-"):].rpartition("-")
            return self._signed_in(f"staff-{department}-{county}", "department_staff", county, department)
        if assignee_id.startswith("town-"):
            return self._signed_in(f"dispatcher-{assignee_id[5:]}", "town_dispatcher", assignee_id[5:])
        if assignee_id.startswith("centre-"):
            return self._signed_in(f"dispatcher-{assignee_id[7:]}", "county_dispatcher", assignee_id[7:])
        if assignee_id.startswith(("V-", "P-")):  # a village's duty cadre, its proxy clerk
            return self._signed_in(assignee_id, "village_cadre", assignee_id[2:14])
        return self._signed_in(assignee_id, "grid_worker", words[-1])

    def _signed_in(self, subject: str, role: str, area: str, department: str | None = None) -> str:
        key = (subject, role, area, department)
        if key not in self._tokens:
            self._tokens[key] = self.token(subject, role, area, department)
        return self._tokens[key]

    # --- the work -------------------------------------------------------------------------------

    def _offered(self, ticket_id: str, data: dict) -> None:
        assignee, key = data["assignee_id"], data["work_key"]
        token = self._person(assignee, key)
        if assignee.startswith("W-") and data["ticket_version"] <= 2:  # a grid worker's first offer
            if self.habits.does("cancel", ticket_id):
                county = key.split(".")[2]
                return self._step("cancel", ticket_id, self._signed_in(f"dispatcher-{county}", "county_dispatcher",
                                                                       county), {"reason": "居民已自行解决（重复诉求）"})
            if self.habits.does("miss", ticket_id):
                return self._count("missed")  # the deadline passes: dispatch escalates to the village
            if self.habits.does("give_back", ticket_id):
                if self._accept(ticket_id, token):
                    self._step("return", ticket_id, token, {"reason": "不属于本网格，请改派"})
                return
        if not self._accept(ticket_id, token):
            return
        if assignee.startswith("P-"):  # 代办: filed with the department, which decides, then resolved
            self._step("file", ticket_id, token, {"note": "材料已收齐，代为报送"})
            department, county = self._case(ticket_id, token)
            staff = self._person(f"dept-{department}-{county}", f"dept.{department}.{county}")
            self._step("decide", ticket_id, staff, {"approved": True, "decision": "符合条件，准予办理"})
        self._step("resolve", ticket_id, token, {"note": "已上门办结"})

    def _returned(self, ticket_id: str, data: dict) -> None:
        """A ticket given back waits at the town's desk: its dispatcher gives it to the village's first grid."""
        token = self._person(data["assignee_id"], data["work_key"])
        village = self._village(ticket_id, token)
        grid = f"{village}-G01" if village else None
        if grid:
            self._step("reassign", ticket_id, token, {"grid_code": grid, "reason": "改派本村一网格"})

    def _call(self, ticket_id: str, data: dict) -> None:
        token = self._person(data["task_assignee_id"], data["work_key"])
        if data["kind"] == "callback":
            outcome, note = "need_confirmed", "已回拨，确认需求"
        elif data["kind"] == "reach":  # no message reached the resident: a person phones them
            outcome, note = "reached", "已电话告知"
        elif self.habits.does("unreached", ticket_id):
            outcome, note = "unreachable", "三次电话未接通"
        else:
            outcome, note = "satisfied", "电话回访：满意"
        status, text = self._call_api("POST", f"/tasks/{data['task_id']}/done", token,
                                      {"outcome": outcome, "note": note})
        if status == 200:
            self._count(f"{data['kind']} calls")
        elif status == 403:  # the task moved up the ladder before we got to it (as an offer can): not ours now
            self._count(f"{data['kind']} calls taken up the ladder first")
        elif status != 409:
            self.errors.append(f"task {data['task_id']} of {ticket_id}: {status} {text[:200]}")

    def _accept(self, ticket_id: str, token: str) -> bool:
        status, text = self._call_api("POST", f"/tickets/{ticket_id}/accept", token)
        if status == 409 and not self._is_accepted(ticket_id, token):
            return False  # a repeated offer of a ticket already past acceptance, or one moved on
        if status not in (200, 409):
            if status != 403:  # 403: the offer moved up the ladder before we got to it
                self.errors.append(f"accept {ticket_id}: {status} {text[:200]}")
            return False
        # 409 on accept can be our own acceptance whose answer was lost when dispatch died: go on
        return True

    def _step(self, action: str, ticket_id: str, token: str, body: dict) -> None:
        status, text = self._call_api("POST", f"/tickets/{ticket_id}/{action}", token, body)
        if status == 200:
            self._count(action)
        elif status != 409:
            self.errors.append(f"{action} {ticket_id}: {status} {text[:200]}")

    def _case(self, ticket_id: str, token: str) -> tuple[str, str]:
        status, text = self._call_api("GET", f"/tickets/{ticket_id}", token)
        case = json.loads(text) if status == 200 else {}
        return case.get("department", ""), case.get("county_code", "")

    def _village(self, ticket_id: str, token: str) -> str | None:
        status, text = self._call_api("GET", f"/tickets/{ticket_id}", token)
        return json.loads(text).get("village_code") if status == 200 else None

    def _is_accepted(self, ticket_id: str, token: str) -> bool:
        status, text = self._call_api("GET", f"/tickets/{ticket_id}", token)
        return status == 200 and json.loads(text)["state"] in ("accepted", "in_progress")

    def _call_api(self, method: str, path: str, token: str, body: dict | None = None,
                  patience: float = 120.0) -> tuple[int, str]:
        """Keep trying while dispatch is down or restarting, as a person at a console would."""
        deadline, delay = time.monotonic() + patience, 0.2
        headers = {"Authorization": f"Bearer {token}"}
        while True:
            if self._stopping.is_set():
                raise _Stopped
            try:
                r = self._session().request(method, self.url + path, json=body, headers=headers, timeout=10)
                if r.status_code < 500:
                    return r.status_code, r.text
            except requests.RequestException as exc:
                r = exc
            if time.monotonic() > deadline:
                return 599, f"gave up: {r}"
            self._stopping.wait(delay)
            delay = min(delay * 2, 2.0)

    def stop(self) -> None:
        super().stop()
        self.pool.shutdown(wait=False, cancel_futures=True)


class Residents(_HttpClient):
    """Residents answer the follow-up mail (or its reminder): most are satisfied, some are not the first
    time, and a `silent_share` of them never answer (a village cadre then calls them: 回访).

    Their mail system forwards each answer to notify as gateway `gateway` (name, secret) does:
    the survey's code, the sender's address, signed (services/common/gateways.py).
    """

    def __init__(self, notify_url: str, gateway: tuple[str, str], unsatisfied_share: float = 0.1,
                 seed: int = 3413, silent_share: float = 0.0, intake_url: str | None = None,
                 withdraw_share: float = 0.0):
        self.url, self.intake_url = notify_url, intake_url
        self.gateway, self.secret = gateway
        self.rng = random.Random(seed)
        self.share = unsatisfied_share
        # their own habits, drawn apart from the console's (another seed)
        self.silent = Habits(miss=silent_share, cancel=withdraw_share if intake_url else 0.0, seed=seed + 1)
        self.withdrawn = 0
        self.asked: dict[str, int] = {}
        self.answered: set[str] = set()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="residents")
        self.errors: list[str] = []
        self._local = threading.local()
        self._stopping = threading.Event()

    def on_mail(self, message: EmailMessage) -> None:
        if self._stopping.is_set():  # mail still coming in after the run: nobody reads it
            return
        subject = str(message["Subject"] or "")
        match, code = TICKET_NO.search(subject), SURVEY_CODE.search(subject)
        if match and "已受理" in subject and self.silent.does("cancel", match.group(0)):
            self.pool.submit(self._withdraw, match.group(0), str(message["To"]))  # solved it themselves
            return
        if not (match and code):  # only the survey and its reminder carry a code to answer with
            return
        ticket_id = match.group(0)
        if self.silent.does("miss", ticket_id):
            return
        with self.lock:
            if code.group(1) in self.answered:  # the reminder of a survey already answered
                return
            self.answered.add(code.group(1))
            self.asked[ticket_id] = self.asked.get(ticket_id, 0) + 1
            first_time = self.asked[ticket_id] == 1
            satisfied = not (first_time and self.rng.random() < self.share)
        self.pool.submit(self._reply, ticket_id, code.group(1), str(message["To"]), satisfied)

    def _withdraw(self, ticket_id: str, sender: str) -> None:
        """The resident withdraws the request; the mail system forwards it to intake, signed."""
        body = json.dumps({"ticket_no": ticket_id, "sender": sender, "reason": "已自行解决，撤回诉求"}).encode()
        try:
            r = self._post(f"{self.intake_url}/tickets/{ticket_id}/cancel", body)
        except requests.RequestException as exc:
            self.errors.append(f"withdraw {ticket_id}: {exc!r}")
            return
        if r.status_code == 202:
            self.withdrawn += 1
        elif r.status_code != 409:  # 409: already resolved, too late to withdraw
            self.errors.append(f"withdraw {ticket_id}: {r.status_code} {r.text[:200]}")

    def _reply(self, ticket_id: str, code: str, sender: str, satisfied: bool) -> None:
        body = json.dumps({"ticket_id": ticket_id, "survey_code": code, "sender": sender,
                           "answer": "1" if satisfied else "2",
                           "comment": "满意，谢谢" if satisfied else "问题还没解决"}).encode()
        try:
            r = self._post(f"{self.url}/replies", body)
        except requests.RequestException as exc:
            self.errors.append(f"reply {ticket_id}: {exc!r}")
            return
        if r.status_code not in (200, 409):  # 409: too late, the village cadre's call decides
            self.errors.append(f"reply {ticket_id}: {r.status_code} {r.text[:200]}")

    def _post(self, url: str, body: bytes) -> requests.Response:
        """POST, signed afresh each time, tried again with back-off while the service cannot be reached or answers
        5xx (it restarts, or is frozen), `HTTP_ATTEMPTS` times in all; the last answer, or error, is the caller's.
        An answer lost after the service took the request makes the next try a repeat: the service says 409
        (already answered, already withdrawn), which callers take as done."""
        delay = HTTP_FIRST_DELAY
        for attempt in range(1, HTTP_ATTEMPTS + 1):
            if self._stopping.is_set():
                raise _Stopped
            try:
                r = self._session().post(url, data=body, timeout=HTTP_TIMEOUT,
                                         headers=signed_headers(self.gateway, self.secret, body))
                if r.status_code < 500 or attempt == HTTP_ATTEMPTS:
                    return r
            except requests.RequestException:
                if attempt == HTTP_ATTEMPTS:
                    raise
                self._local.session = local_session()  # a broken keep-alive connection is not used again
            self._stopping.wait(delay)
            delay = min(delay * 2, HTTP_MAX_DELAY)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        self._stopping.set()  # calls under way give up instead of trying again
        self.pool.shutdown(wait=False, cancel_futures=True)


def signed_headers(gateway: str, secret: str, body: bytes, at: float | None = None) -> dict[str, str]:
    """What a gateway sends with a resident's answer (services/common/gateways.py)."""
    stamp = str(int(at if at is not None else time.time()))
    return {"Content-Type": "application/json", "X-Sdj-Gateway": gateway, "X-Sdj-Timestamp": stamp,
            "X-Sdj-Signature": signature(secret, stamp, body)}


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]
