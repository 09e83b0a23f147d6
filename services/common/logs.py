"""Log lines as JSON, one per line, each saying which ticket and which correlation it concerns.

`JsonFormatter` is named in every service's `LOGGING` config; `LogContext` (a dependency on every
service class) puts the `ticket_id` and `correlation_id` of the event or request a worker handles into
a context variable for the worker's green thread, and the formatter adds them to each line:

    {"at": "2026-12-01T17:50:00.123+00:00", "level": "WARNING", "service": "dispatch",
     "logger": "services.common.messaging", "message": "dead-lettered …", "ticket_id": "SDJ-…",
     "correlation_id": "SDJ-…"}

Residents' data never goes in: log messages name tickets and staff, not phones or names.
"""
from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import datetime, timezone

from nameko.extensions import DependencyProvider

CONTEXT: ContextVar[dict] = ContextVar("sdj_log_context", default={})


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "", **kwargs):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {"at": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "service": self.service, "logger": record.name,
                "message": record.getMessage(), **CONTEXT.get()}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def context_of(args: tuple, kwargs: dict) -> dict:
    """What a worker handles, from its arguments: an event envelope, or an HTTP call about a ticket."""
    envelope = args[0] if args and isinstance(args[0], dict) else {}
    context = {key: str(envelope[key])[:64] for key in ("ticket_id", "correlation_id") if envelope.get(key)}
    for key in ("ticket_id", "ticket_no"):
        if kwargs.get(key):
            context["ticket_id"] = str(kwargs[key])[:64]
    return context


class LogContext(DependencyProvider):
    """Sets the log context for each worker (see the module's docstring)."""

    def worker_setup(self, worker_ctx) -> None:
        CONTEXT.set(context_of(worker_ctx.args or (), worker_ctx.kwargs or {}))

    def worker_teardown(self, worker_ctx) -> None:
        CONTEXT.set({})

    def get_dependency(self, worker_ctx):
        return None
