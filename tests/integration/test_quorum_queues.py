"""Quorum queues (QUEUE_TYPE, on by default when AMQP_URI names a cluster): the same promises as classic
ones, retry through the retry queue's expiry and dead letters with their reason included."""
from __future__ import annotations

import json

import pytest

from services.common.database import make_engine
from services.common.messaging import dead_letter_queue, queue_type
from songdaojia.vhosts import rabbitmqctl
from tests.amqp_helpers import Probe, amqp_queue_messages
from tests.waiting import wait_until

from .test_plumbing import FAILURES_LEFT, Base, Echo, envelope, noted_count, publish


@pytest.fixture
def quorum_echo(fresh_vhost_uri, sqlite_url, start_service):
    db_url = sqlite_url  # the queues are under test here, not the database
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    probe = Probe(fresh_vhost_uri, "echo.events")
    service = start_service(Echo, fresh_vhost_uri, db_url, migrate=False, RETRY_DELAYS=[0.05, 0.1, 0.2],
                            max_workers=1, QUEUE_TYPE="quorum")
    yield service.container, probe, engine, fresh_vhost_uri
    probe.close()
    engine.dispose()


def queue_types(uri: str) -> dict[str, str]:
    vhost = uri.rsplit("/", 1)[1]
    listed = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "type")
    return dict(line.split("\t")[:2] for line in listed.splitlines() if "\t" in line)


def test_every_queue_of_the_service_is_a_quorum_queue(quorum_echo):
    _, _, _, uri = quorum_echo
    types = queue_types(uri)
    assert {name: types.get(name) for name in ("echo.note", "echo.note.retry", "echo.dead-letter")} == {
        "echo.note": "quorum", "echo.note.retry": "quorum", "echo.dead-letter": "quorum"}


def test_a_failed_message_comes_back_from_the_quorum_retry_queue(quorum_echo):
    _, probe, engine, uri = quorum_echo
    FAILURES_LEFT["Q-1"] = 2
    publish(uri, envelope("Q-1", "先失败两次"))
    wait_until(lambda: probe.events("thing_noted"), message="success after two retries")
    assert FAILURES_LEFT["Q-1"] == 0 and noted_count(engine) == 1
    assert amqp_queue_messages(uri, dead_letter_queue("echo")) == []


def test_a_message_that_keeps_failing_is_dead_lettered_with_its_reason(quorum_echo):
    _, probe, engine, uri = quorum_echo
    FAILURES_LEFT["Q-2"] = 99
    publish(uri, envelope("Q-2", "一直失败"))
    dead = wait_until(lambda: amqp_queue_messages(uri, dead_letter_queue("echo")),
                      message="the message in echo.dead-letter")
    FAILURES_LEFT["Q-2"] = 0
    body, _props, headers = dead[0]
    assert json.loads(body)["ticket_id"] == "Q-2"
    assert "the database is having a bad day" in headers["x-reason"] and headers["x-attempts"] == 4


@pytest.mark.parametrize("uri, configured, expected", [
    ("amqp://a@h1:5672/v", "auto", "classic"),
    ("amqp://a@h1:5672/v;amqp://a@h2:5672/v;amqp://a@h3:5672/v", "auto", "quorum"),
    ("amqp://a@h1:5672/v", "quorum", "quorum"),
    ("amqp://a@h1:5672/v;amqp://a@h2:5672/v", "classic", "classic"),
])
def test_the_queue_type_follows_the_broker_list_unless_chosen(uri, configured, expected):
    assert queue_type({"AMQP_URI": uri, "QUEUE_TYPE": configured}) == expected


def test_an_unknown_queue_type_is_refused_by_name():
    with pytest.raises(ValueError, match="QUEUE_TYPE: 'mirrored'"):
        queue_type({"AMQP_URI": "amqp://a@h/v", "QUEUE_TYPE": "mirrored"})
