"""The live work queue: the console follows `dispatch.work` for the areas of the people whose queue pages are
open, and tells each page (Server-Sent Events) when work of *their* area arrives.

One exclusive, server-named queue per console process (every process needs every message for the people
signed in to it; nothing competes). It is bound to the keys of the areas of the pages open now (`keys_for`,
never beyond the console's own AREA, which is all its broker login may bind), and unbound when the last page
of an area closes: a city's console with three villages signed in carries three villages' work, not the
city's. A page opened is told "look again" once its keys are bound, so nothing published in between is
missed. A message only says "look again": the page then asks dispatch for the queue with the person's own
token, so what anyone sees is still decided by dispatch. Nothing is lost when
this process is down (dispatch holds the work; a page reloads its rows when its stream reconnects), so the
feed is not acknowledged one by one and has no dead-letter queue: a message it cannot read is logged and
still wakes the pages of its area, by its routing key.
"""
from __future__ import annotations

import json
import logging
import uuid

from eventlet.queue import Full, LightQueue
from kombu import Connection, Exchange, Queue
from kombu.mixins import ConsumerMixin
from nameko.extensions import DependencyProvider

from services.common.staff import DEPARTMENT_STAFF, Principal

log = logging.getLogger(__name__)
WORK_EXCHANGE = "dispatch.work"
SETTLE_SECONDS = 0.2  # how soon a page opened is followed (its keys bound), or a closed one's unbound
PENDING_PER_PAGE = 50  # a page that stopped reading gets no more "look again" beyond these: one is as good as fifty


def area_path(area: str) -> list[str]:
    """3413 → [3413]; 341323104214 → [3413, 341323, 341323104, 341323104214]: the codes down to an area."""
    return [area[:n] for n in (4, 6, 9, 12) if len(area) >= n]


def work_keys(area: str) -> list[str]:
    """The most a console of `area` binds (its broker login may bind nothing else, songdaojia/broker.py): the
    area's subtree, and the departments' desks in it (a city all of them, a county its own)."""
    path = area_path(area)
    keys = ["area." + ".".join(path) + ".#"]
    if len(area) == 4:
        keys.append("dept.#")
    elif len(area) == 6:
        keys.append(f"dept.*.{area}")
    return keys


def keys_for(who: Principal, console_area: str) -> set[str]:
    """What to bind for one person's page: their area's subtree of work keys and, where their area is a city
    or county, the departments' desks there (department staff: their own department's desk only), never
    beyond what the console of `console_area` may bind (work_keys). Someone whose area holds the console's
    gets all the console follows; someone outside it, nothing."""
    area = who.area
    if area == console_area or ("-" not in area and console_area.startswith(area)):
        area = console_area  # their area holds the console's
    elif not area.startswith(console_area):
        return set()
    if who.role == DEPARTMENT_STAFF:
        county = area[:6] if len(area) >= 6 else "*"
        return {f"dept.{who.department}.{county}"} if who.department and len(console_area) <= 6 else set()
    village, _, grid = area.partition("-")
    keys = {"area." + ".".join(area_path(village) + ([area] if grid else [])) + ".#"}
    if len(area) == 4:
        keys.add("dept.#")
    elif len(area) == 6:
        keys.add(f"dept.*.{area}")
    return keys


def visible(who: Principal, routing_key: str) -> bool:
    """Whether work published under `routing_key` is in `who`'s queue: an area key
    (`area.<city>.<county>.<town>.<village>.<grid>`, a town's `….desk`, a village's `….proxy`, a county's
    `….unplaced`) names the codes it lies in, and a person sees it when their own area is one of them;
    a department's desk (`dept.<department>.<county>`) is seen by that department's staff of the county and
    by the staff whose area holds the county."""
    parts = routing_key.split(".")
    if parts[0] == "area" and who.role != DEPARTMENT_STAFF:
        return who.area in parts[1:]
    if parts[0] == "dept" and len(parts) == 3:
        department, county = parts[1], parts[2]
        if who.role == DEPARTMENT_STAFF:
            return who.department == department and who.covers(county)
        return who.covers(county)
    return False


class Hub:
    """The pages open in this process, each with the person it is for and what it has not read yet."""

    def __init__(self):
        self.pages: dict[str, tuple[Principal, LightQueue]] = {}
        self.unbound: set[str] = set()  # pages opened whose keys the follower has not bound yet

    def open(self, who: Principal) -> tuple[str, LightQueue]:
        page_id, inbox = uuid.uuid4().hex, LightQueue(PENDING_PER_PAGE)
        self.pages[page_id] = (who, inbox)
        self.unbound.add(page_id)
        return page_id, inbox

    def people(self) -> list[Principal]:
        return [who for who, _ in list(self.pages.values())]

    def bound(self) -> None:
        """The follower bound every open page's keys: the pages opened since look again once (whatever was
        published before their keys were bound is in dispatch's queue all the same)."""
        for page_id in list(self.unbound):
            self.unbound.discard(page_id)
            page = self.pages.get(page_id)
            if page is not None:
                try:
                    page[1].put_nowait({"ticket_id": "", "event": "following", "key": ""})
                except Full:
                    pass

    def close(self, page_id: str) -> None:
        self.pages.pop(page_id, None)
        self.unbound.discard(page_id)

    def publish(self, routing_key: str, news: dict) -> int:
        told = 0
        for who, inbox in list(self.pages.values()):
            if visible(who, routing_key):
                try:
                    inbox.put_nowait(news)
                except Full:
                    pass
                told += 1
        return told


def news_of(body, routing_key: str) -> dict:
    """What a page is told: the ticket and the event, from the envelope (whatever it could read of it)."""
    envelope = body
    if isinstance(body, (bytes, str)):
        try:
            envelope = json.loads(body)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, a 5000-digit number, nesting too deep
            envelope = None
    if not isinstance(envelope, dict):
        log.warning("dispatch.work %s: a message that is not an event envelope", routing_key[:100])
        envelope = {}
    return {"ticket_id": str(envelope.get("ticket_id") or "")[:40], "event": str(envelope.get("event") or "")[:40],
            "key": routing_key[:200]}


class _Follower(ConsumerMixin):
    EXCHANGE = Exchange(WORK_EXCHANGE, type="topic", durable=True, no_declare=True)  # dispatch declares it

    def __init__(self, uri: str, area: str, hub: Hub):
        self.connection, self.area, self.hub = Connection(uri), area, hub
        self.consumer, self.bound_keys = None, set()

    def get_consumers(self, Consumer, channel):
        queue = Queue("", exclusive=True, auto_delete=True)  # a new server-named queue, unbound, on every connection
        self.consumer, self.bound_keys = Consumer(queues=[queue], on_message=self.on_message, no_ack=True), set()
        return [self.consumer]

    def on_iteration(self):
        """Between waits for messages (at most SETTLE_SECONDS apart): bind what the open pages need, unbind
        what none needs any more."""
        wanted = set().union(*(keys_for(who, self.area) for who in self.hub.people()))
        queue = self.consumer.queues[0]
        for key in sorted(wanted - self.bound_keys):
            queue.bind_to(self.EXCHANGE, routing_key=key)
            self.bound_keys.add(key)
        for key in sorted(self.bound_keys - wanted):
            queue.unbind_from(self.EXCHANGE, routing_key=key)
            self.bound_keys.discard(key)
        if self.hub.unbound:
            self.hub.bound()

    def on_message(self, message):  # raw: whatever its content type, it is read here, never refused by kombu
        key = message.delivery_info.get("routing_key", "")
        self.hub.publish(key, news_of(message.body, key))

    def on_connection_error(self, exc, interval):
        log.warning("dispatch.work: broker connection lost (%s); again in %ss", exc, interval)


class WorkFeed(DependencyProvider):
    """Injects the Hub; follows dispatch.work for the console's AREA in a thread of the container's own."""

    def setup(self) -> None:
        config = self.container.config
        self.hub = Hub()
        self.follower = _Follower(config["AMQP_URI"], str(config.get("AREA", "3413")), self.hub)

    def start(self) -> None:
        self.thread = self.container.spawn_managed_thread(lambda: self.follower.run(safety_interval=SETTLE_SECONDS))

    def stop(self) -> None:
        self.follower.should_stop = True
        self.thread.wait()

    def kill(self) -> None:
        self.follower.should_stop = True

    def get_dependency(self, worker_ctx) -> Hub:
        return self.hub
