"""The urgent lane goes first: background work waits while acknowledgements are in hand, and never takes
the workers kept for them."""
from __future__ import annotations

from types import SimpleNamespace

import eventlet
import pytest

from services.common import lanes as lanes_module
from services.common.lanes import URGENT_RESERVE, Lanes


def lanes_for(max_workers: int = 10) -> Lanes:
    lanes = Lanes()
    lanes.container = SimpleNamespace(max_workers=max_workers)
    lanes.setup()
    return lanes


def test_background_waits_while_urgent_work_is_in_hand():
    lanes = lanes_for()
    order = []
    lanes.began(urgent=True)
    waiting = eventlet.spawn(lambda: (lanes.began(urgent=False), order.append("background began")))
    eventlet.sleep(0.05)
    assert order == []  # an acknowledgement is being written: the status mirror waits
    order.append("urgent ended")
    lanes.ended(urgent=True)
    waiting.wait()
    assert order == ["urgent ended", "background began"]


def test_between_acknowledgements_background_goes_one_message_at_a_time(monkeypatch):
    """In a surge acknowledgements come a few milliseconds apart: background work goes on in the gaps, one
    message at a time, so an acknowledgement waits for one background handler at most."""
    monkeypatch.setattr(lanes_module, "QUIET", 60.0)  # acknowledgements keep coming for the whole test
    lanes = lanes_for()
    lanes.began(urgent=True), lanes.ended(urgent=True)
    assert not lanes.quiet()
    with eventlet.Timeout(2):  # it takes the gap (it used to wait for QUIET)
        lanes.began(urgent=False)
    second = eventlet.spawn(lanes.began, False)
    eventlet.sleep(0)
    lanes.began(urgent=True), lanes.ended(urgent=True)
    eventlet.sleep(0.01)
    assert not second.dead  # the first is still in hand
    lanes.ended(urgent=False)
    with eventlet.Timeout(2):
        second.wait()
    assert lanes.background == 1 and not lanes.quiet()


def test_once_the_urgent_lane_is_quiet_background_takes_every_worker_it_may():
    lanes = lanes_for(max_workers=10)
    lanes.began(urgent=True), lanes.ended(urgent=True)
    lanes.began(urgent=False)  # in the gap
    others = [eventlet.spawn(lanes.began, False) for _ in range(10 - URGENT_RESERVE - 1)]
    with eventlet.Timeout(2):
        for other in others:
            other.wait()  # with the first still in hand
    assert lanes.quiet() and lanes.background == 10 - URGENT_RESERVE


def test_background_begins_at_once_when_the_urgent_lane_is_idle():
    lanes = lanes_for()
    lanes.began(urgent=True), lanes.ended(urgent=True)
    with eventlet.Timeout(1):
        lanes.began(urgent=False)


def test_background_never_takes_the_workers_kept_for_the_urgent_lane():
    lanes = lanes_for(max_workers=10)
    for _ in range(10 - URGENT_RESERVE):
        lanes.began(urgent=False)
    blocked = eventlet.spawn(lanes.began, False)
    eventlet.sleep(0.05)
    assert not blocked.dead  # the next background message waits for a background worker to finish
    with eventlet.Timeout(1):
        for _ in range(URGENT_RESERVE):
            lanes.began(urgent=True)  # acknowledgements still start
    lanes.ended(urgent=False)
    for _ in range(URGENT_RESERVE):
        lanes.ended(urgent=True)
    blocked.wait()


def test_background_is_delayed_by_a_busy_urgent_lane_never_starved(monkeypatch):
    monkeypatch.setattr(lanes_module, "PATIENCE", 0.1)
    lanes = lanes_for()
    lanes.began(urgent=True)  # and it never ends
    with eventlet.Timeout(2):
        lanes.began(urgent=False)


@pytest.mark.parametrize("workers", [1, 2, URGENT_RESERVE])
def test_a_small_pool_still_runs_background_work(workers):
    lanes = lanes_for(max_workers=workers)
    with eventlet.Timeout(1):
        lanes.began(urgent=False)
