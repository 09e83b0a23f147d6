"""The demo's and benchmark's people yield the processor to the system they use (songdaojia/loop.py
`yield_processor`): their threads run at nice 10 more than the process, the rest of the process keeps its own;
the publisher of the requests is a process of its own (songdaojia/publisher.py) and keeps normal priority."""
import os
import sys

import pytest
from eventlet.patcher import original

from songdaojia.loop import PEOPLE_NICE, yield_processor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a nice value per thread is Linux's")
threading = original("threading")  # the system's threads, as the benchmark's people have (tests run on eventlet's)


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _in_thread(job):
    out = []
    thread = threading.Thread(target=lambda: out.append(job()))
    thread.start()
    thread.join(30)
    assert out, "the thread did not finish"
    return out[0]


def test_a_thread_that_yields_runs_at_lower_priority_and_the_rest_of_the_process_does_not():
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())

    def person():
        yield_processor()
        return _nice()

    assert _in_thread(person) == min(19, base + PEOPLE_NICE)
    assert _nice() == base  # the caller's thread, e.g. the publisher's parent: unchanged
    assert _in_thread(_nice) == base  # a thread started from it: normal priority


def test_threads_started_by_a_yielding_thread_yield_once_not_twice():
    """The console's workers are started by its listener, which has yielded already: they inherit its nice
    value, and their own yield_processor leaves it there (not 20 below the process)."""
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())

    def listener():
        yield_processor()

        def worker():  # a pool's thread: its initializer yields too
            yield_processor()
            return _nice()
        return _in_thread(worker)

    assert _in_thread(listener) == min(19, base + PEOPLE_NICE)


def test_no_niceness_leaves_a_thread_as_it_was():
    """Outside a demo or benchmark run (the fault tests) the people do not yield: `nice=0`."""
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())

    def person():
        yield_processor(0)
        return _nice()

    assert _in_thread(person) == base
