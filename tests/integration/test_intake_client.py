"""The client outside systems publish with survives a lost connection: it connects again and sends the same
message (same id) until the broker confirms it, to the next broker URL when one is gone."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from services.intake.client import EXCHANGE, IntakeClient
from songdaojia.vhosts import rabbitmqctl
from tests.waiting import wait_until

REQUEST = {"channel": "hotline", "category": "801"}


@pytest.fixture
def submissions(fresh_vhost_uri):
    """intake's exchange with a queue catching every submission (intake itself is not needed here)."""
    connection = pika.BlockingConnection(pika.URLParameters(fresh_vhost_uri))
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, "topic", durable=True)
    queue = channel.queue_declare("caught", durable=True).method.queue
    channel.queue_bind(queue, EXCHANGE, "submit.#")
    connection.close()

    def caught() -> list[str]:
        conn = pika.BlockingConnection(pika.URLParameters(fresh_vhost_uri))
        ch, ids = conn.channel(), []
        while (message := ch.basic_get(queue, auto_ack=True))[0] is not None:
            ids.append(message[1].message_id)
        conn.close()
        return ids
    return fresh_vhost_uri, caught


def test_a_connection_closed_by_the_broker_is_opened_again_and_the_message_sent(submissions):
    uri, caught = submissions
    vhost = unquote(urlsplit(uri).path[1:])
    with IntakeClient(uri, patience=30) as client:
        first = client.submit("hotline", REQUEST)
        rabbitmqctl("close_all_connections", "-p", vhost, "test: the broker closes every connection")
        second = client.submit("hotline", REQUEST, message_id="resend-me-1")
        assert client.reconnects >= 1
    ids = wait_until(lambda: (got := caught()) and got, message="the submissions")
    assert sorted(ids) == sorted([first, second]) and second == "resend-me-1"


def test_the_next_broker_url_is_tried_when_one_does_not_answer(submissions):
    uri, caught = submissions
    gone = uri.replace("127.0.0.1:5672", "127.0.0.1:1")
    with IntakeClient([gone, uri], patience=30) as client:
        message_id = client.submit("hotline", REQUEST)
    assert wait_until(lambda: caught(), message="the submission") == [message_id]


def test_a_refusal_is_not_retried(fresh_vhost_uri):
    with pytest.raises(ChannelClosedByBroker):  # no intake exchange on this vhost: refused at once
        with IntakeClient(fresh_vhost_uri, patience=30):
            pass
