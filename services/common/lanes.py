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
- A background message starts only once the urgent lane has been idle for `QUIET` seconds (or after
  waiting `PATIENCE` seconds: background work is delayed by the urgent lane, never starved by it). In a
  surge acknowledgements come closer together than that, and the process's time is theirs. Green
  threads yield to each other only on I/O, so an urgent worker otherwise waits for every background
  handler that started before it.
"""
from __future__ import annotations

import time

import eventlet
from eventlet.event import Event as GreenEvent
from eventlet.semaphore import Semaphore
from eventlet.timeout import Timeout
from nameko.extensions import SharedExtension

URGENT_RESERVE = 4  # workers only the urgent lane may use
PATIENCE = 5.0  # seconds a background message waits for the urgent lane to be idle, at most
QUIET = 0.05  # seconds the urgent lane must have been idle before background work starts


class Lanes(SharedExtension):
    """Per service container: how much urgent work is in hand, and the background lane's share of workers."""

    def setup(self) -> None:
        workers = int(self.container.max_workers)
        self.urgent = 0
        self._urgent_ended = 0.0  # time.monotonic() when the urgent lane last went idle
        self._idle = GreenEvent()
        self._idle.send(True)
        self._background = Semaphore(max(1, workers - URGENT_RESERVE))

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
        """No urgent work in hand, nor any for QUIET seconds: background work may start."""
        return not self.urgent and time.monotonic() - self._urgent_ended >= QUIET

    def background_may_begin(self) -> None:
        """Blocks the background drain loop (never the urgent one) until a background worker may start."""
        self._background.acquire()
        with Timeout(PATIENCE, False):
            while not self.quiet():
                if self.urgent:
                    self._idle.wait()
                else:
                    eventlet.sleep(QUIET - (time.monotonic() - self._urgent_ended))

    def background_ended(self) -> None:
        self._background.release()

    def began(self, urgent: bool) -> None:
        self.urgent_began() if urgent else self.background_may_begin()

    def ended(self, urgent: bool) -> None:
        self.urgent_ended() if urgent else self.background_ended()
