"""A seeded corpus of hostile input over HTTP and AMQP: never a 5xx, never a stuck consumer, nothing lost."""
from __future__ import annotations

import json
import random
import uuid

import pika
import pytest
import requests

from services.dispatch.service import DispatchService
from services.intake.client import IntakeClient
from services.intake.service import IntakeService
from services.notify.service import NotifyService
from services.volunteer.service import VolunteerService
from songdaojia.peers import free_port
from tests.amqp_helpers import Probe, amqp_queue_messages
from tests.integration.conftest import start
from tests.waiting import wait_until

RNG = random.Random(3413)
CONTENT_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=x",
                 "application/json", "text/xml", "text/plain; charset=gbk", "", "application/octet-stream",
                 "application/x-www-form-urlencoded; charset=latin-1"]
FIELDS = ["api_key", "service_code", "lat", "long", "address_id", "address_string", "attribute[items]",
          "attribute[items][]", "attribute[", "attribute[]]", "email", "phone", "description", "media_url",
          "first_name", "jurisdiction_id", "%ff", "a" * 300]
VALUES = ["", "songdaojia-demo-key", "801", "999", "1e309", "NaN", "-0", "341323104214", "灵璧县杨疃镇杨东村",
          "\x00", "\u2028", "' OR 1=1 --", "<script>", "x" * 5000, "13812345678",
          "staples", "%zz", "😀" * 50, "34.0", "117.5"]


def garbage_body() -> bytes:
    kind = RNG.randrange(4)
    if kind == 0:
        return bytes(RNG.randrange(256) for _ in range(RNG.randrange(0, 400)))
    if kind == 1:
        return "&".join(f"{RNG.choice(FIELDS)}={RNG.choice(VALUES)}" for _ in range(RNG.randrange(0, 12))).encode(
            "utf-8", "surrogatepass")
    if kind == 2:
        return b"--x\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\n" + bytes(RNG.randrange(256) for _ in range(50))
    return json.dumps({RNG.choice(FIELDS): RNG.choice(VALUES)}).encode()


@pytest.fixture(scope="module")
def services(amqp_uri, tmp_path_factory, keys):
    base = tmp_path_factory.mktemp("corpus")
    started, urls = [], {}
    for name, cls, extra in (("intake", IntakeService, {"OPEN311_DEMO": True}),
                             ("dispatch", DispatchService, {}),
                             ("volunteer", VolunteerService, {}),
                             ("notify", NotifyService, {"CHANNEL": "email", "EMAIL": {
                                 "host": "127.0.0.1", "port": free_port(), "sender": "s@localhost"}})):
        started.append(start(keys, cls, amqp_uri, f"sqlite:///{base / (name + '.db')}", **extra))
        urls[name] = started[-1].url
    yield urls
    for service in started:
        service.stop()


def authorization(keys) -> dict:
    """Now and then a valid token of some role, else garbage, else nothing."""
    kind = RNG.randrange(4)
    if kind == 0:
        role = RNG.choice(["grid_worker", "county_dispatcher", "supervisor", "volunteer", "admin"])
        return {"Authorization": f"Bearer {keys.token('W-341323104214-G10-1', role, RNG.choice(['3413', '341323']))}"}
    if kind == 1:
        return {"Authorization": RNG.choice(["Bearer x.y.z", "Bearer ", "Basic Zm9vOmJhcg==", "Bearer " + "A" * 5000])}
    return {}


def test_hostile_http_requests_never_get_a_5xx(services, keys):
    targets = [("POST", services["intake"] + "/open311/v2/requests.json"),
               ("POST", services["intake"] + "/open311/v2/requests.xml"),
               ("GET", services["intake"] + "/open311/v2/requests.json"),
               ("GET", services["intake"] + "/open311/v2/services/801.json"),
               ("GET", services["intake"] + "/tickets/SDJ-1/contact"),
               ("GET", services["intake"] + "/contact-reads"),
               ("POST", services["dispatch"] + "/tickets/SDJ-1/accept"),
               ("POST", services["dispatch"] + "/tickets/SDJ-1/resolve"),
               ("POST", services["dispatch"] + "/tickets/SDJ-1/start"),
               ("POST", services["dispatch"] + "/tickets/SDJ-1/place"),
               ("GET", services["dispatch"] + "/queues/341323"),
               ("GET", services["dispatch"] + "/ledger"),
               ("POST", services["volunteer"] + "/offers/SDJ-1/accept"),
               ("GET", services["volunteer"] + "/volunteers/V000001"),
               ("POST", services["notify"] + "/replies"),
               ("GET", services["notify"] + "/deliveries/SDJ-1"),
               ("PUT", services["dispatch"] + "/tickets/SDJ-1/accept"),
               ("GET", services["notify"] + "/%ff%fe/../etc/passwd")]
    failures = []
    for _ in range(400):
        method, url = RNG.choice(targets)
        params = {RNG.choice(FIELDS): RNG.choice(VALUES) for _ in range(RNG.randrange(3))}
        headers = {"Content-Type": RNG.choice(CONTENT_TYPES), **authorization(keys)}
        r = requests.request(method, url, params=params, data=garbage_body(), headers=headers, timeout=10)
        if r.status_code >= 500:
            failures.append((method, url, params, r.status_code, r.text[:200]))
        elif not r.headers.get("Content-Type", "").startswith(("application/json", "text/xml")):
            failures.append((method, url, params, r.status_code, "not JSON or XML: " + r.text[:200]))
    assert failures == []


def test_hostile_amqp_messages_are_dead_lettered_and_the_consumer_keeps_going(services, amqp_uri):
    probe = Probe(amqp_uri, "intake.events")
    amqp_queue_messages(amqp_uri, "intake.dead-letter")  # start empty: every dead letter below is ours
    sent = 0
    with IntakeClient(amqp_uri, source="corpus") as client:
        for _ in range(60):
            client.publish_raw(f"submit.{RNG.choice(['hotline', 'x', 'wechat'])}", garbage_body(), pika.BasicProperties(
                content_type=RNG.choice(["application/json", None, "text/plain"]), delivery_mode=2,
                message_id=RNG.choice([str(uuid.uuid4()), None, "x" * 200]),
                headers=RNG.choice([None, {"x-attempt": "not-a-number"}, {"x-attempt": 99}])))
            sent += 1
        good = {"channel": "hotline", "category": "999", "village_code": "341323104214", "description": "最后一条正常诉求",
                "submitted_at": "2026-11-27T09:00:00+08:00", "resident": {"phone": "13800000000"}}
        client.submit("hotline", good)
    wait_until(lambda: probe.events("ticket_received"), timeout=30, message="the good message behind the corpus")
    dead = []
    # none of the corpus is a valid submission: each one is dead-lettered, none lost
    wait_until(lambda: dead.extend(amqp_queue_messages(amqp_uri, "intake.dead-letter")) or len(dead) >= sent,
               timeout=30, message=f"{sent} dead letters")
    assert len(dead) == sent and all(m.headers.get("x-reason") for m in dead)
    probe.close()
