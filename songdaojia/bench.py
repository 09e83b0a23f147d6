"""The benchmark: the full loop at a chosen rate, next to the broker's own ceiling on this machine.

Prints tickets/s through the whole loop, acknowledgement latency p50/p95/p99,
the raw broker ceiling (pika publish + consume of messages of the same size,
persistent, to a durable queue) and our throughput as a ratio of it, and the
volunteer match decision time with 100,000 volunteers.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import uuid

import pika

from . import scenario
from .demo import BENCH_SLA_SCALES, run_loop
from .loop import Habits
from .stack import Stack
from .vhosts import throwaway_vhost


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
    from services.dispatch.areas import AreaMap
    from services.volunteer.bench_matching import measure
    villages = [(v.code, v.parent_code) for v in AreaMap.load().villages()]
    return measure(n_volunteers=100_000, n_requests=20_000, villages=villages)


def run_bench(stack: Stack, tickets: int, rate: float, volunteers: int = 100_000, out=sys.stdout) -> dict:
    stack.run_name = "bench"
    body = json.dumps(scenario.requests(1)[0][1], ensure_ascii=False).encode()
    print(f"broker ceiling: pika publish + consume of {tickets * 10:,} messages of {len(body)} bytes …",
          file=out, flush=True)
    with throwaway_vhost(stack.amqp_uri, prefix="songdaojia-ceiling") as scratch:
        ceiling = broker_ceiling(scratch, body, tickets * 10)
    match = matching_figures()
    report = run_loop(stack, tickets, rate, timeout=max(300.0, tickets / 5), volunteers=volunteers, out=out,
                      habits=Habits(), silent=0.0, withdraw=0.0, sla_scales=BENCH_SLA_SCALES)
    figures = {
        "tickets": tickets, "offered rate /s": rate,
        "closed loop tickets/s": round(report["closed per second"], 1),
        "ack p50 ms": round(report["ack p50 ms"], 1), "ack p95 ms": round(report["ack p95 ms"], 1),
        "ack p99 ms": round(report["ack p99 ms"], 1),
        "broker ceiling msg/s": round(ceiling),
        "tickets/s ÷ broker msg/s": f"{report['closed per second'] / ceiling:.2%}",
        "match p50 ms": match["p50_ms"], "match p99 ms": match["p99_ms"],
        "service RSS MiB": report["service RSS MiB"],
        "CPU ms per ticket": report["CPU ms per ticket"],
    }
    print("\nbenchmark", file=out)
    for key, value in figures.items():
        print(f"  {key:<26} {value}", file=out)
    return figures
