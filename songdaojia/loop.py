"""The people around the system in a demo or benchmark run, and the one who keeps score.

- `Observer` listens to every service's events and tracks each ticket.
- `Console` is the people at dispatch consoles: it consumes the work exchange and
  accepts, resolves, returns, reassigns, files, decides and makes call tasks over
  dispatch's HTTP API, each person with their own token, with the `Habits` of a demo.
- `Residents` read their mail and answer the follow-up survey; their mail system
  forwards each answer to notify as a gateway does: signed, with the survey's code.
"""
from __future__ import annotations

import hashlib
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
                        "ticket_reopened", "ticket_cancelled", "ticket_overdue", "ticket_escalated",
                        "ticket_returned", "task_assigned"),
    "volunteer.events": ("volunteer_offered", "offer_expired"),
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
    callback_task_at: datetime | None = None  # when the hotline callback task was made (10-second promise)

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
            elif name == "task_assigned":
                if data.get("kind") == "callback" and track.callback_task_at is None:
                    track.callback_task_at = datetime.fromisoformat(ev["occurred_at"])
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

    def callback_latencies_ms(self) -> list[float]:
        """From the hotline request's submission to its callback task, per ticket, sorted."""
        with self.lock:
            return sorted((t.callback_task_at - t.submitted_at).total_seconds() * 1000
                          for t in self.tickets.values() if t.callback_task_at and t.submitted_at)

    def ack_latencies_ms(self) -> list[float]:
        with self.lock:
            return sorted((t.acked_at - t.submitted_at).total_seconds() * 1000
                          for t in self.tickets.values() if t.acked_at and t.submitted_at)


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

    def __init__(self, amqp_uri: str, dispatch_url: str, token: Callable[..., str],
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
        elif self.habits.does("unreached", ticket_id):
            outcome, note = "unreachable", "三次电话未接通"
        else:
            outcome, note = "satisfied", "电话回访：满意"
        status, text = self._call_api("POST", f"/tasks/{data['task_id']}/done", token,
                                      {"outcome": outcome, "note": note})
        if status == 200:
            self._count(f"{data['kind']} calls")
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

    def on_mail(self, message: EmailMessage) -> None:
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
            r = self._session().post(f"{self.intake_url}/tickets/{ticket_id}/cancel", data=body, timeout=10,
                                     headers=signed_headers(self.gateway, self.secret, body))
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
            r = self._session().post(f"{self.url}/replies", data=body, timeout=10,
                                     headers=signed_headers(self.gateway, self.secret, body))
        except requests.RequestException as exc:
            self.errors.append(f"reply {ticket_id}: {exc!r}")
            return
        if r.status_code not in (200, 409):  # 409: too late, the village cadre's call decides
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
