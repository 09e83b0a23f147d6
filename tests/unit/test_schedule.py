"""The timer entrypoint every service's durable timers run on can be stopped in any state."""
from __future__ import annotations

import pytest
from nameko.timer import Timer as NamekoTimer

from services.common.schedule import Timer


def test_nameko_s_own_timer_fails_when_stopped_before_it_started():
    with pytest.raises(AttributeError):  # what left `nameko run` hanging on an early SIGTERM
        NamekoTimer(interval=1).stop()


def test_ours_stops_before_it_started_and_stops_twice():
    timer = Timer(interval=1)
    timer.stop()
    timer.stop()
    timer.kill()
    assert timer.should_stop.ready()
