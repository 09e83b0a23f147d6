"""The urgent lane goes first: background work waits while acknowledgements are in hand, and never takes
the workers kept for them."""
from __future__ import annotations

from types import SimpleNamespace

import eventlet
import pytest

from nameko.containers import ServiceContainer
from nameko.web.handlers import HttpRequestHandler

from services.common import lanes as lanes_module
from services.common.lanes import URGENT_RESERVE, Elsewhere, Lanes, lanes_worked, works
from services.intake.service import IntakeService
from services.notify.service import NotifyService


def _http_methods(service_cls) -> set[str]:
    container = ServiceContainer(service_cls, {"AMQP_URI": "amqp://nobody@unused/"})
    return {e.method_name for e in container.entrypoints if isinstance(e, HttpRequestHandler)}


HTTP_OF = {"notify": _http_methods(NotifyService), "intake": _http_methods(IntakeService)}


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


# --- the lanes in two processes (config LANES) ---

def entrypoints_of(service_cls, lanes: str | None) -> dict[str, str]:
    """What each of a service's methods is bound as in an instance with config LANES = `lanes`."""
    config = {"AMQP_URI": "amqp://nobody@unused/", **({"LANES": lanes} if lanes is not None else {})}
    container = ServiceContainer(service_cls, config)
    bound: dict[str, set[str]] = {}
    for entrypoint in container.entrypoints:
        bound.setdefault(entrypoint.method_name, set()).add(
            "elsewhere" if isinstance(entrypoint, Elsewhere) else "here")
    return {name: "/".join(sorted(kinds)) for name, kinds in bound.items()}


@pytest.mark.parametrize("lanes", [None, "all", "ALL "])
def test_by_default_an_instance_works_both_lanes(lanes):
    assert set(entrypoints_of(NotifyService, lanes).values()) == {"here"}
    assert set(entrypoints_of(IntakeService, lanes).values()) == {"here"}


def test_an_urgent_instance_consumes_only_what_acknowledges_residents():
    notify = entrypoints_of(NotifyService, "urgent")
    assert {m for m, kind in notify.items() if kind == "here" and m not in HTTP_OF["notify"]} == \
        {"acknowledge", "tell_merged"}
    assert notify["chase_follow_ups"] == notify["forget_old_contacts"] == "elsewhere"  # timers are background
    intake = entrypoints_of(IntakeService, "urgent")
    assert {m for m, kind in intake.items() if kind == "here" and m not in HTTP_OF["intake"]} == \
        {"receive_submission"}
    assert intake["track_status"] == "elsewhere"  # the status mirror waits for the background instance


def test_a_background_instance_consumes_everything_but_the_acknowledgement():
    notify = entrypoints_of(NotifyService, "background")
    assert notify["acknowledge"] == notify["tell_merged"] == "elsewhere"
    assert notify["ask_for_follow_up"] == notify["chase_follow_ups"] == notify["tell_outcome"] == "here"
    intake = entrypoints_of(IntakeService, "background")
    assert intake["receive_submission"] == "elsewhere"
    assert intake["track_status"] == intake["forget_old_contacts"] == "here"


@pytest.mark.parametrize("lanes", ["urgent", "background"])
def test_every_instance_answers_http(lanes):
    """Its API, /metrics and health: whichever lane it works, an instance is reachable and watched."""
    for service_cls, name in ((NotifyService, "notify"), (IntakeService, "intake")):
        bound = entrypoints_of(service_cls, lanes)
        assert HTTP_OF[name] and all(bound[m] == "here" for m in HTTP_OF[name])


def test_every_consumer_and_timer_is_worked_by_one_of_the_two_instances_and_only_one():
    for service_cls, name in ((NotifyService, "notify"), (IntakeService, "intake")):
        urgent, background = entrypoints_of(service_cls, "urgent"), entrypoints_of(service_cls, "background")
        assert urgent.keys() == background.keys()
        assert [m for m in urgent if urgent[m] == background[m] == "elsewhere"] == []
        assert [m for m in urgent if urgent[m] == background[m] == "here" and m not in HTTP_OF[name]] == []


def test_a_lane_that_does_not_exist_is_refused_with_its_name():
    with pytest.raises(ValueError, match="LANES: 'ack' is not one of all, urgent, background"):
        lanes_worked({"LANES": "ack"})
    assert works({"LANES": "urgent"}, urgent=True) and not works({"LANES": "urgent"}, urgent=False)
    assert works({}, urgent=True) and works({}, urgent=False)
