"""The live work queue: the console follows `dispatch.work` for its area and tells each signed-in person's
open pages (Server-Sent Events) when work of *their* area arrives.

One exclusive, server-named queue per console process (every process needs every message for the people
signed in to it; nothing competes). A message only says "look again": the page then asks dispatch for the
queue with the person's own token, so what anyone sees is still decided by dispatch. Nothing is lost when
this process is down (dispatch holds the work; a page reloads its rows when its stream reconnects), so the
feed is not acknowledged one by one and has no dead-letter queue: a message it cannot read is logged and
still wakes the pages of its area, by its routing key.
"""
from __future__ import annotations

import json
import logging
import uuid

from eventlet.queue import Full, LightQueue
from kombu import Connection, Exchange, Queue, binding
from kombu.mixins import ConsumerMixin
from nameko.extensions import DependencyProvider

from services.common.staff import DEPARTMENT_STAFF, Principal

log = logging.getLogger(__name__)
WORK_EXCHANGE = "dispatch.work"
PENDING_PER_PAGE = 50  # a page that stopped reading gets no more "look again" beyond these: one is as good as fifty


def area_path(area: str) -> list[str]:
    """3413 → [3413]; 341323104214 → [3413, 341323, 341323104, 341323104214]: the codes down to an area."""
    return [area[:n] for n in (4, 6, 9, 12) if len(area) >= n]


def work_keys(area: str) -> list[str]:
    """What a console of `area` binds (its broker login may bind nothing else, songdaojia/broker.py): the
    area's subtree, and the departments' desks in it (a city all of them, a county its own)."""
    path = area_path(area)
    keys = ["area." + ".".join(path) + ".#"]
    if len(area) == 4:
        keys.append("dept.#")
    elif len(area) == 6:
        keys.append(f"dept.*.{area}")
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

    def open(self, who: Principal) -> tuple[str, LightQueue]:
        page_id, inbox = uuid.uuid4().hex, LightQueue(PENDING_PER_PAGE)
        self.pages[page_id] = (who, inbox)
        return page_id, inbox

    def close(self, page_id: str) -> None:
        self.pages.pop(page_id, None)

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
    def __init__(self, uri: str, keys: list[str], hub: Hub):
        self.connection, self.keys, self.hub = Connection(uri), keys, hub

    def get_consumers(self, Consumer, channel):
        exchange = Exchange(WORK_EXCHANGE, type="topic", durable=True, no_declare=True)  # dispatch declares it
        queue = Queue("", bindings=[binding(exchange, routing_key=key) for key in self.keys], exclusive=True,
                      auto_delete=True)  # a new server-named queue on every connection
        return [Consumer(queues=[queue], on_message=self.on_message, no_ack=True)]

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
        self.follower = _Follower(config["AMQP_URI"], work_keys(str(config.get("AREA", "3413"))), self.hub)

    def start(self) -> None:
        self.thread = self.container.spawn_managed_thread(self.follower.run)

    def stop(self) -> None:
        self.follower.should_stop = True
        self.thread.wait()

    def kill(self) -> None:
        self.follower.should_stop = True

    def get_dependency(self, worker_ctx) -> Hub:
        return self.hub
