"""The console's pages, timed: `./sdj bench --console` runs the loop, then starts the web console beside the
services it just loaded and asks each page of each kind of person many times (sign-in, queue, its live rows,
a ticket, the supervisor's page, the ledger's CSV), one request at a time as one person clicks. Prints each
page's p50 and p95 time (request sent to answer read, over loopback) and its weight, and the script's and
style sheet's. A browser adds its own work on top: the browser tests measure that (var/artefacts/console.jsonl).
"""
from __future__ import annotations

import requests

from .loop import percentile
from .signins import DEMO_ADDRESS, DEMO_VILLAGE, SignIn, grid_worker_on_duty, sign_in_over_http
from .stack import ServiceProcess, Stack

ROUNDS = 30


class ConsolePages:
    """A `watch` for run_loop: its stop() (the loop has closed, the services still run) times the pages."""

    def __init__(self, stack: Stack, rounds: int = ROUNDS):
        self.stack, self.rounds = stack, rounds

    def __call__(self, procs) -> "ConsolePages":
        return self

    def stop(self) -> dict:
        console = ServiceProcess("console", self.stack).start()
        try:
            console.wait_ready()
            return {"console pages": self._time(console.url)}
        finally:
            console.stop()

    def _signed_in(self, url: str, person: SignIn) -> requests.Session:
        return sign_in_over_http(url, self.stack.secrets.token(person.subject, person.role, person.area))[0]

    def _time(self, url: str) -> dict:
        from datetime import datetime, timezone
        worker = self._signed_in(url, grid_worker_on_duty(DEMO_VILLAGE, DEMO_ADDRESS, datetime.now(timezone.utc)))
        supervisor = self._signed_in(url, SignIn("supervisor", "S-3413-1", "3413"))
        closed = requests.get(f"{self.stack.http('dispatch')}/queues/3413", params={"state": "closed"}, timeout=10,
                              headers={"Authorization": "Bearer " + self.stack.secrets.token(
                                  "S-3413-1", "supervisor", "3413")}).json()
        pages = {"sign-in form": (requests.Session(), "/signin"), "queue (grid worker)": (worker, "/queue"),
                 "queue rows (live)": (worker, "/queue/rows"), "queue (city supervisor)": (supervisor, "/queue"),
                 "supervisor's page": (supervisor, "/supervise"), "ledger CSV": (supervisor, "/supervise/ledger.csv"),
                 "console.js": (worker, "/static/console.js"), "console.css": (worker, "/static/console.css")}
        if closed:
            pages["ticket page"] = (supervisor, f"/tickets/{closed[0]['ticket_id']}")
        figures = {}
        for name, (http, path) in pages.items():
            times, size = [], 0
            for _ in range(self.rounds):
                answer = http.get(url + path, timeout=10)
                answer.raise_for_status()
                times.append(answer.elapsed.total_seconds() * 1000)
                size = len(answer.content)
            times.sort()
            figures[name] = {"p50 ms": round(percentile(times, 50), 1), "p95 ms": round(percentile(times, 95), 1),
                             "bytes": size}
        return figures
