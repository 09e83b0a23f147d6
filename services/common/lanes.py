"""Two lanes in one service process: the acknowledgement's work goes first.

A resident is told their request was received within a second, even while the loop is offered more
than it can do: what acknowledges a ticket (intake taking a submission, notify writing the
acknowledgement) is the *urgent* lane; everything else (the status mirror, follow-ups, outcomes) is
the *background* lane, and its excess waits in its queues at the broker, where nothing is lost, to
be worked off once the surge is over.

- An urgent consumer has a connection and a drain loop of its own (`UrgentQueueConsumer` in
  messaging.py): its messages never queue behind background messages already fetched.
- Background work takes at most `max_workers - URGENT_RESERVE` of the process's workers: an urgent
  message always finds a free one.
- Background work waits while an urgent message is in hand. While acknowledgements keep coming (the
  urgent lane was busy within the last `QUIET` seconds) it goes one message at a time, in the gaps
  between them: green threads yield to each other only on I/O, so an urgent message then waits for one
  background handler at most, not for every one that started before it, and the loop keeps closing
  tickets at the rate it is offered. Once the urgent lane has been quiet for `QUIET`, background work
  takes every worker it may. A background message waits `PATIENCE` seconds at most: delayed by the
  urgent lane, never starved by it.
"""
from __future__ import annotations

import time

from eventlet.event import Event as GreenEvent
from eventlet.semaphore import Semaphore
from eventlet.timeout import Timeout
from nameko.extensions import SharedExtension

URGENT_RESERVE = 4  # workers only the urgent lane may use
PATIENCE = 5.0  # seconds a background message waits for the urgent lane to be idle, at most
QUIET = 0.05  # seconds the urgent lane must have been idle before background work takes every worker


class Lanes(SharedExtension):
    """Per service container: how much urgent work is in hand, and the background lane's share of workers."""

    def setup(self) -> None:
        workers = int(self.container.max_workers)
        self.urgent = 0
        self._urgent_ended = 0.0  # time.monotonic() when the urgent lane last went idle
        self._idle = GreenEvent()
        self._idle.send(True)
        self._background = Semaphore(max(1, workers - URGENT_RESERVE))
        self.background = 0  # background messages in hand
        self._background_idle = GreenEvent()
        self._background_idle.send(True)

    def urgent_began(self) -> None:
        if self.urgent == 0:
            self._idle = GreenEvent()
        self.urgent += 1

    def urgent_ended(self) -> None:
        self.urgent -= 1
        if self.urgent == 0:
            self._urgent_ended = time.monotonic()
            if not self._idle.ready():
                self._idle.send(True)

    def quiet(self) -> bool:
        """No urgent work in hand, nor any for QUIET seconds: background work may take every worker."""
        return not self.urgent and time.monotonic() - self._urgent_ended >= QUIET

    def background_may_begin(self) -> None:
        """Blocks the background drain loop (never the urgent one) until a background worker may start."""
        self._background.acquire()
        with Timeout(PATIENCE, False):
            while not self.quiet():
                if self.urgent:
                    self._idle.wait()
                elif self.background:  # acknowledgements keep coming: one background message at a time
                    self._background_idle.wait(QUIET)  # or until quiet: then every worker
                else:
                    break
        if self.background == 0:
            self._background_idle = GreenEvent()
        self.background += 1

    def background_ended(self) -> None:
        self.background -= 1
        if self.background == 0 and not self._background_idle.ready():
            self._background_idle.send(True)
        self._background.release()

    def began(self, urgent: bool) -> None:
        self.urgent_began() if urgent else self.background_may_begin()

    def ended(self, urgent: bool) -> None:
        self.urgent_ended() if urgent else self.background_ended()
