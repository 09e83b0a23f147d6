"""The benchmark's runtime floor (songdaojia/bench_floor.py) against the real broker: the empty handler takes every
message it is fed, both costs are read, and its process is gone afterwards. Its figures are the benchmark's to
print, never a test's to time."""
from __future__ import annotations

import subprocess
import time

import pika

from songdaojia.bench import _floor_figures
from songdaojia.bench_floor import QUEUE, runtime_floor


def test_the_empty_handler_works_off_what_it_is_fed_and_is_stopped(fresh_vhost_uri):
    floor = runtime_floor(fresh_vhost_uri, b'{"ticket": "SDJ-1"}', count=300, rate=1000.0)

    assert floor["consumer µs"] > 0 and floor["broker µs"] > 0
    connection = pika.BlockingConnection(pika.URLParameters(fresh_vhost_uri))
    try:
        channel, deadline = connection.channel(), time.monotonic() + 10
        while (left := channel.queue_declare(QUEUE, passive=True).method).consumer_count and \
                time.monotonic() < deadline:  # the broker sees the consumer's connection close a moment later
            time.sleep(0.05)
    finally:
        connection.close()
    assert (left.message_count, left.consumer_count) == (0, 0)
    running = subprocess.run(["pgrep", "-f", "songdaojia.bench_floor:EmptyHandler"], capture_output=True)
    assert running.stdout == b""


def test_the_floor_times_the_messages_a_ticket_delivers():
    figures = _floor_figures({"consumer µs": 300, "broker µs": 200}, {"received": 16, "routed": 23, "delivered": 23})
    assert figures == {"floor µs/message": "300 consumer + 200 broker", "floor × delivered, ms": 11.5}
    assert _floor_figures({"consumer µs": 300, "broker µs": 200}, None) == {
        "floor µs/message": "300 consumer + 200 broker"}
