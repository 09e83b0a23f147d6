"""The people around the system in a demo or benchmark run, and the one who keeps score.

- `Observer` listens to every service's events and tracks each ticket.
- `Console` is the grid workers' dispatch console: it consumes offers from the
  work exchange and accepts and resolves them over dispatch's HTTP API, each
  worker with their own token.
- `Residents` read their mail and answer the follow-up survey; their mail system
  forwards each answer to notify as a gateway does: signed, with the survey's code.
"""
from __future__ import annotations

import json
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Callable

import pika
import requests

from services.common.gateways import signature

OBSERVED = {  # what the report needs, and no more: the observer shares the machine it measures
    "intake.events": ("ticket_received", "ticket_merged"),
    "dispatch.events": ("ticket_routed", "ticket_accepted", "ticket_resolved", "ticket_closed",
                        "ticket_reopened"),
    "volunteer.events": ("volunteer_offered",),
    "notify.events": ("resident_notified",),
}
TICKET_NO = re.compile(r"SDJ-\d{6}-[0-9A-Z]{8}")
SURVEY_CODE = re.compile(r"\[(?:评价码|code) ([0-9A-Z]+)\]")


@dataclass
class TicketTrack:
    submitted_at: datetime | None = None
    acked_at: datetime | None = None
    acks: int = 0
    states: list[str] = field(default_factory=list)
    reopened: int = 0
    volunteer: bool = False

    @property
    def state(self) -> str:
        return self.states[-1] if self.states else "received"


class _HttpClient:
    _local: threading.local

    def _session(self) -> requests.Session:
        """One keep-alive session per thread (a Session is not shared across threads)."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session


class _Listener(threading.Thread):
    """A pika consumer on its own connection and thread."""

    def __init__(self, amqp_uri: str, bindings: list[tuple[str, str]], queue: str = ""):
        super().__init__(daemon=True)
        self.params = pika.URLParameters(amqp_uri)
        self.conn = pika.BlockingConnection(self.params)
        self.channel = self.conn.channel()
        for exchange, _ in bindings:  # only looked up: its owner declares it
            self.channel.exchange_declare(exchange, "topic", durable=True, passive=True)
        self.queue = self.channel.queue_declare(queue, exclusive=True, auto_delete=True).method.queue
        for exchange, key in bindings:
            self.channel.queue_bind(self.queue, exchange, key)
        self.channel.basic_qos(prefetch_count=500)
        self.channel.basic_consume(self.queue, self._on_message)

    def run(self) -> None:
        try:
            self.channel.start_consuming()
        except Exception:  # connection closed on stop
            pass

    def _on_message(self, ch, method, props, body) -> None:
        try:
            self.handle(json.loads(body))
        finally:
            ch.basic_ack(method.delivery_tag)

    def handle(self, message: dict) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        try:
            self.conn.add_callback_threadsafe(self.channel.stop_consuming)
        except Exception:
            pass
        self.join(5)
        try:
            self.conn.close()
        except Exception:
            pass


class Observer(_Listener):
    def __init__(self, amqp_uri: str):
        super().__init__(amqp_uri, [(exchange, key) for exchange, keys in OBSERVED.items() for key in keys])
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
            elif name == "resident_notified" and data.get("template") == "ack":
                track.acks += 1
                track.acked_at = track.acked_at or datetime.fromisoformat(data["delivered_at"])
            elif name == "volunteer_offered":
                track.volunteer = True
            elif name.startswith("ticket_") and "state" in data:
                track.states.append(data["state"])
                if name == "ticket_reopened":
                    track.reopened += 1

    def snapshot(self) -> dict[str, TicketTrack]:
        with self.lock:
            return dict(self.tickets)

    def count_in(self, state: str) -> int:
        with self.lock:
            return sum(1 for t in self.tickets.values() if t.state == state)

    def ack_latencies_ms(self) -> list[float]:
        with self.lock:
            return sorted((t.acked_at - t.submitted_at).total_seconds() * 1000
                          for t in self.tickets.values() if t.acked_at and t.submitted_at)


class Console(_Listener, _HttpClient):
    """Grid workers on duty: accept each offer, then resolve it, each signed in as themself.

    `token(subject, area)` is the worker's sign-in (a token for their grid; in the demo minted
    with the run's key, as the county's identity provider would issue it).
    """

    def __init__(self, amqp_uri: str, dispatch_url: str, token: Callable[[str, str], str],
                 binding: str = "area.3413.#", workers: int = 16):
        super().__init__(amqp_uri, [("dispatch.work", binding)])
        self.url = dispatch_url
        self.token = token
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="console")
        self.errors: list[str] = []
        self._tokens: dict[str, str] = {}
        self._local = threading.local()

    def handle(self, offer: dict) -> None:
        data = offer["data"]
        if data.get("grid_code"):  # not a map point waiting at a county's dispatch centre
            self.pool.submit(self._work, offer["ticket_id"], data["assignee_id"], data["grid_code"])

    def _work(self, ticket_id: str, worker_id: str, grid_code: str) -> None:
        try:
            self._accept_and_resolve(ticket_id, self._signed_in(worker_id, grid_code))
        except Exception as exc:  # never lose a failure silently inside the thread pool
            self.errors.append(f"{ticket_id}: {exc!r}")

    def _signed_in(self, worker_id: str, grid_code: str) -> str:
        if worker_id not in self._tokens:
            self._tokens[worker_id] = self.token(worker_id, grid_code)
        return self._tokens[worker_id]

    def _accept_and_resolve(self, ticket_id: str, token: str) -> None:
        status, text = self._call("POST", f"/tickets/{ticket_id}/accept", token)
        if status == 409 and not self._is_accepted(ticket_id, token):
            return  # a repeated offer of a ticket already past acceptance
        if status not in (200, 409):
            self.errors.append(f"accept {ticket_id}: {status} {text[:200]}")
            return
        # 409 on accept can be our own acceptance whose answer was lost when dispatch died: go on
        status, text = self._call("POST", f"/tickets/{ticket_id}/resolve", token, {"note": "已上门办结"})
        if status not in (200, 409):
            self.errors.append(f"resolve {ticket_id}: {status} {text[:200]}")

    def _is_accepted(self, ticket_id: str, token: str) -> bool:
        status, text = self._call("GET", f"/tickets/{ticket_id}", token)
        return status == 200 and json.loads(text)["state"] in ("accepted", "in_progress")

    def _call(self, method: str, path: str, token: str, body: dict | None = None,
              patience: float = 120.0) -> tuple[int, str]:
        """Keep trying while dispatch is down or restarting, as a person at a console would."""
        deadline, delay = time.monotonic() + patience, 0.2
        headers = {"Authorization": f"Bearer {token}"}
        while True:
            try:
                r = self._session().request(method, self.url + path, json=body, headers=headers, timeout=10)
                if r.status_code < 500:
                    return r.status_code, r.text
            except requests.RequestException as exc:
                r = exc
            if time.monotonic() > deadline:
                return 599, f"gave up: {r}"
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def stop(self) -> None:
        super().stop()
        self.pool.shutdown(wait=False, cancel_futures=True)


class Residents(_HttpClient):
    """Residents answer the follow-up mail: most are satisfied, some are not the first time.

    Their mail system forwards each answer to notify as gateway `gateway` (name, secret) does:
    the survey's code, the sender's address, signed (services/common/gateways.py).
    """

    def __init__(self, notify_url: str, gateway: tuple[str, str], unsatisfied_share: float = 0.1,
                 seed: int = 3413):
        self.url = notify_url
        self.gateway, self.secret = gateway
        self.rng = random.Random(seed)
        self.share = unsatisfied_share
        self.asked: dict[str, int] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="residents")
        self.errors: list[str] = []
        self._local = threading.local()

    def on_mail(self, message: EmailMessage) -> None:
        subject = str(message["Subject"] or "")
        if "请您评价" not in subject and "how did we do" not in subject:
            return
        match, code = TICKET_NO.search(subject), SURVEY_CODE.search(subject)
        if not (match and code):
            return
        ticket_id = match.group(0)
        with self.lock:
            self.asked[ticket_id] = self.asked.get(ticket_id, 0) + 1
            first_time = self.asked[ticket_id] == 1
            satisfied = not (first_time and self.rng.random() < self.share)
        self.pool.submit(self._reply, ticket_id, code.group(1), str(message["To"]), satisfied)

    def _reply(self, ticket_id: str, code: str, sender: str, satisfied: bool) -> None:
        body = json.dumps({"ticket_id": ticket_id, "survey_code": code, "sender": sender,
                           "answer": "1" if satisfied else "2",
                           "comment": "满意，谢谢" if satisfied else "问题还没解决"}).encode()
        try:
            r = self._session().post(f"{self.url}/replies", data=body, timeout=10,
                                     headers=signed_headers(self.gateway, self.secret, body))
        except requests.RequestException as exc:
            self.errors.append(f"reply {ticket_id}: {exc!r}")
            return
        if r.status_code != 200:
            self.errors.append(f"reply {ticket_id}: {r.status_code} {r.text[:200]}")

    def stop(self) -> None:
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
