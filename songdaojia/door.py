"""A day of visits for one town (问需), as the demo's people make it: household heads, grid workers and village
duty cadres, each signed in as themself, recording the visits outreach made for them today.

Every visit of the town gets a fate from the seed: most are made on time by whoever answers for them (a
tenth of those finds a need, which outreach sends to intake: a ticket that closes through the loop); some
are missed and made late by the grid worker once they climbed there; a few climb to the village, where the
duty cadre makes most and leaves the rest overdue. Waits are the run's scaled time (outreach's SLA_SCALE).
"""
from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import requests

from services.intake.catalogue import Catalogue

from .scenario import fill_attributes

FATES = {"on_time": 0.8, "grid_worker": 0.12, "village": 0.06, "left": 0.02}
NEEDS_SHARE = 0.1
NEED_PHRASES = ("走访时老人提出", "入户了解到", "电话问候时反映")


class DoorDay(threading.Thread):
    """The visitors of `town` (a 9-digit code), until every visit of the day has had its fate or `until`
    (a monotonic time) passes."""

    def __init__(self, outreach_url: str, town: str, token: Callable[[str, str, str], str], seed: int = 3413,
                 catalogue: Catalogue | None = None):
        super().__init__(daemon=True, name="door-day")
        self.url, self.town, self.token = outreach_url, town, token
        self.rng = random.Random(seed)
        self.categories = [c for c in (catalogue or Catalogue.load()).categories.values()]
        self.fates: dict[str, str] = {}
        self.when: dict[str, float] = {}  # visit id -> monotonic time its visitor gets to it
        self.recorded: dict[str, int] = {}
        self.needs: list[str] = []
        self.found: list[dict] = []  # the needs as outreach has them, with intake's answer (settle)
        self.talk_items = 0  # raised at the night talk
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._session = requests.Session()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)

    def settle(self, timeout: float = 60) -> list[dict]:
        """The needs found today in the town, once intake has answered for each (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while True:
            listed = self._session.get(f"{self.url}/needs", params={"area": self.town, "days": 1, "limit": 1000},
                                       headers=self._supervisor(), timeout=30)
            listed.raise_for_status()
            self.found = listed.json()["needs"]
            if all(n["status"] != "sent" for n in self.found) or time.monotonic() > deadline:
                return self.found
            time.sleep(0.3)

    def tickets_made(self) -> int:
        """Needs that became a ticket or joined one (as a request does: `merged`); rejected ones made none."""
        return sum(1 for n in self.found if n["status"] in ("received", "merged"))

    def ticket_numbers(self) -> list[str]:
        return [n["ticket_no"] for n in self.found if n["status"] == "received"]

    def _supervisor(self) -> dict:
        return {"Authorization": f"Bearer {self.token('demo-door', 'town_dispatcher', self.town)}"}

    def night_talk(self) -> None:
        """The evening before: one village of the town holds a night talk (乡村夜话), where a villager raises a
        need and the meeting an opinion; both become tickets (the opinion is answered to the village)."""
        listed = self._session.get(f"{self.url}/visits", params={"area": self.town, "limit": 1},
                                   headers=self._supervisor(), timeout=30)
        listed.raise_for_status()
        village = (listed.json()["visits"] or [{"village_code": None}])[0]["village_code"]
        if village is None:
            return
        category = next(c for c in self.categories if not fill_attributes(c) and not c.volunteer_skill)
        r = self._session.post(f"{self.url}/night-talks", timeout=30, headers={
            "Authorization": f"Bearer {self.token(f'C-{village}-1', 'village_cadre', village)}"}, json={
            "village_code": village, "held_on": datetime.now(timezone.utc).date().isoformat(), "host": "村支书",
            "attendance": self.rng.randint(20, 60), "village_phone": "0557-6000000",
            "village_email": f"committee-{village}@village.example.cn", "raised": [
                {"kind": "need", "category": category.code, "description": f"夜话中村民反映：{category.name_zh}",
                 "resident": {"name": "村民", "phone": "13900000000",
                              "email": f"villager-{village}@village.example.cn"}},
                {"kind": "opinion", "category": category.code, "description": "群众意见：希望村里增设老年助餐点"}]})
        if r.status_code != 201:
            self.errors.append(f"night talk: {r.status_code} {r.text[:200]}")
            return
        self.talk_items = len(r.json()["needs"])

    def run(self) -> None:
        supervisor = self._supervisor()
        try:
            self.night_talk()
            while not self._halt.is_set():
                listed = self._session.get(f"{self.url}/visits", params={"area": self.town, "limit": 500},
                                           headers=supervisor, timeout=30)
                listed.raise_for_status()
                open_ = listed.json()["visits"]
                for visit in open_:
                    self._consider(visit)
                if self.fates and all(self.fates.get(v["id"]) == "left" for v in open_):
                    return  # every visit had its fate: what is left stays overdue at the village
                self._halt.wait(0.3)
        except Exception as exc:  # reported with the run's errors; the loop goes on
            self.errors.append(f"door day stopped: {exc!r}")

    def _consider(self, visit: dict) -> None:
        vid = visit["id"]
        if vid not in self.fates:
            self.fates[vid] = self.rng.choices(list(FATES), list(FATES.values()))[0]
            window = _seconds_left(visit["due_at"])
            self.when[vid] = time.monotonic() + window * self.rng.uniform(0.1, 0.7)
        fate, level = self.fates[vid], visit["level"]
        if fate == "on_time" and time.monotonic() >= self.when[vid]:
            self._record(visit, contact_made=True, need=self.rng.random() < NEEDS_SHARE)
        elif fate == "grid_worker" and level == "grid_worker":
            self._record(visit, contact_made=True, need=False)
        elif fate == "village" and level == "village":
            self._record(visit, contact_made=self.rng.random() < 0.5, need=False)

    def _record(self, visit: dict, contact_made: bool, need: bool) -> None:
        body = {"contact_made": contact_made, "needs": []}
        if need:
            category = self.rng.choice(self.categories)
            body["needs"] = [{"category": category.code, "attributes": fill_attributes(category),
                              "description": f"{self.rng.choice(NEED_PHRASES)}：{category.name_zh}"}]
        r = self._session.post(f"{self.url}/visits/{visit['id']}/record", json=body, timeout=30,
                               headers={"Authorization": f"Bearer {self._as_responsible(visit)}"})
        if r.status_code == 409:  # recorded already (a retry after a lost answer)
            return
        if r.status_code != 200:
            self.errors.append(f"visit {visit['id']}: {r.status_code} {r.text[:200]}")
            self.fates[visit["id"]] = "left"
            return
        self.recorded[visit["level"]] = self.recorded.get(visit["level"], 0) + 1
        self.needs += r.json()["needs"]

    def _as_responsible(self, visit: dict) -> str:
        who, village = visit["responsible_id"], visit["village_code"]
        if visit["level"] == "household_head":
            return self.token(who, "household_head", village)
        if visit["level"] == "grid_worker":
            return self.token(who, "grid_worker", visit["grid_code"])
        return self.token(f"C-{village}-1", "village_cadre", village)


def _seconds_left(due_at: str | None) -> float:
    if not due_at:
        return 0.0
    return max((datetime.fromisoformat(due_at) - datetime.now(timezone.utc)).total_seconds(), 0.0)
