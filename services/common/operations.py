"""What ops ask every service: is it alive, is it ready for work, and what has it been doing.

Mixed into each service class (`class DispatchService(Operations)`):
- `GET /health/live`: the process answers (200).
- `GET /health/ready`: 200 when its database answers, its broker accepts a connection and its outbox
  is not behind by more than `READY_OUTBOX_LAG_SECONDS` (config, default 30); else 503 with what failed.
- `GET /metrics`: Prometheus text: messages consumed per queue and how they were settled (handled,
  retried, dead-lettered), handler latency histograms, outbox lag and unsent rows, database
  transactions by what began them, and what the
  service adds through `gauges(session)` (dispatch: tickets by state, deadlines missed).
They carry no personal data and need no token: expose them to the monitoring network only.
"""
from __future__ import annotations

import time

from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select, text

from .clock import as_utc
from .envelope import utcnow
from .http import api, http, json_response

REGISTRY = CollectorRegistry()  # one per process: a service and the plumbing it runs
MESSAGES = Counter("sdj_messages", "Messages a consumer settled, by queue and outcome",
                   ["service", "queue", "outcome"], registry=REGISTRY)
HANDLER_SECONDS = Histogram("sdj_handler_seconds", "Time from a message's arrival to its settlement",
                            ["service", "queue"], registry=REGISTRY,
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
OUTBOX_LAG = Gauge("sdj_outbox_lag_seconds", "Age of the oldest event not yet published", ["service"],
                   registry=REGISTRY)
OUTBOX_UNSENT = Gauge("sdj_outbox_unsent", "Events written and not yet published", ["service"], registry=REGISTRY)
TRANSACTIONS = Counter("sdj_db_transactions", "Database transactions begun, by service and by what began them "
                       "(an entrypoint, or a part working in the background: outbox relay, courier)",
                       ["service", "by"], registry=REGISTRY)
SERVICE_GAUGE = Gauge("sdj_state", "What a service counts in its own database (see its gauges())",
                      ["service", "name", "label"], registry=REGISTRY)


def settled(service: str, queue: str, outcome: str, started: float | None = None) -> None:
    """Called by the reliable consumer for every message it settles."""
    MESSAGES.labels(service, queue, outcome).inc()
    if started is not None:
        HANDLER_SECONDS.labels(service, queue).observe(time.monotonic() - started)


def transaction_begun(service: str, by: str) -> None:
    """Called for every transaction begun on a service's database (database.count_transactions)."""
    TRANSACTIONS.labels(service, by).inc()


class Operations:
    """Health and metrics endpoints for a service class with `db`, `outbox` and `config`."""

    @http("GET", "/health/live")
    @api("Alive: the process answers", answers={200: {"type": "object"}}, auth=None)
    def health_live(self, request):
        return json_response({"service": self.name, "status": "live"})

    @http("GET", "/health/ready")
    @api("Ready for work: database, broker and outbox checked (503 says which failed)",
         answers={200: {"type": "object"}, 503: {"type": "object"}}, auth=None)
    def health_ready(self, request):
        checks, ready = {}, True
        try:
            with self.db.transaction() as s:
                s.execute(text("SELECT 1"))
                lag, unsent = self._outbox_lag(s)
            checks["database"] = "ok"
            limit = float(self.config.get("READY_OUTBOX_LAG_SECONDS", 30))
            checks["outbox"] = {"lag_seconds": round(lag, 3), "unsent": unsent, "limit_seconds": limit}
            ready = lag <= limit
        except Exception as exc:  # the answer is the report
            checks["database"], ready = f"unreachable: {type(exc).__name__}", False
        try:
            with Connection(self.config["AMQP_URI"], connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"], ready = f"unreachable: {type(exc).__name__}", False
        return json_response({"service": self.name, "ready": ready, "checks": checks}, status=200 if ready else 503)

    @http("GET", "/metrics")
    def metrics(self, request):
        with self.db.transaction() as s:
            lag, unsent = self._outbox_lag(s)
            OUTBOX_LAG.labels(self.name).set(lag)
            OUTBOX_UNSENT.labels(self.name).set(unsent)
            for name, values in (self.gauges(s) if hasattr(self, "gauges") else {}).items():
                for label, value in values.items():
                    SERVICE_GAUGE.labels(self.name, name, label).set(value)
        return 200, {"Content-Type": CONTENT_TYPE_LATEST}, generate_latest(REGISTRY).decode("utf-8")

    def _outbox_lag(self, s) -> tuple[float, int]:
        outbox = getattr(type(self), "outbox", None)  # the class attribute is the Outbox provider
        if outbox is None:  # a service that publishes nothing (the console)
            return 0.0, 0
        table = outbox.row_cls.__table__
        oldest, unsent = s.execute(select(func.min(table.c.created_at), func.count())
                                   .where(table.c.sent_at.is_(None))).one()
        if oldest is None:
            return 0.0, 0
        return max(0.0, (utcnow() - as_utc(oldest)).total_seconds()), unsent
