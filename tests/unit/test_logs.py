"""Log lines are JSON and say which ticket they concern; every service's LOGGING config uses them."""
from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from services.common.config import config_path, load_config
from services.common.logs import CONTEXT, JsonFormatter, LogContext, context_of


def test_a_line_is_json_with_the_ticket_and_correlation_of_the_worker():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service="dispatch"))
    log = logging.getLogger("test.logs")
    log.addHandler(handler)
    token = CONTEXT.set(context_of(({"ticket_id": "SDJ-261127-7KQ2M4XA", "correlation_id": "c-1"},), {}))
    try:
        log.warning("dead-lettered %s", "one")
    finally:
        CONTEXT.reset(token)
        log.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert (line["service"], line["level"], line["message"]) == ("dispatch", "WARNING", "dead-lettered one")
    assert (line["ticket_id"], line["correlation_id"]) == ("SDJ-261127-7KQ2M4XA", "c-1")


@pytest.mark.parametrize("args, kwargs, context", [
    (({"ticket_id": "T1", "correlation_id": "C1", "data": {}},), {}, {"ticket_id": "T1", "correlation_id": "C1"}),
    (("not an envelope",), {"ticket_id": "T2"}, {"ticket_id": "T2"}),
    ((), {"ticket_no": "T3"}, {"ticket_id": "T3"}),
    (({"body": 1}, "message-id", None), {}, {}),
])
def test_what_a_worker_is_about_comes_from_its_arguments(args, kwargs, context):
    assert context_of(args, kwargs) == context


def test_the_context_is_set_for_a_worker_and_cleared_after():
    class Worker:
        args, kwargs = ({"ticket_id": "T9"},), {}
    provider = LogContext()
    provider.worker_setup(Worker())
    assert CONTEXT.get() == {"ticket_id": "T9"}
    provider.worker_teardown(Worker())
    assert CONTEXT.get() == {}


@pytest.mark.parametrize("service", ["intake", "dispatch", "volunteer", "notify"])
def test_every_service_logs_json(service):
    config = load_config(config_path(service))["LOGGING"]
    assert config["handlers"]["console"]["formatter"] == "json"
    formatter = logging.config.DictConfigurator(config).configure_formatter(dict(config["formatters"]["json"]))
    assert isinstance(formatter, JsonFormatter) and formatter.service == service
