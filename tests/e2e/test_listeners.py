"""The demo's listeners (songdaojia/loop.py) outlive their broker connection: closed by the broker, they
connect again with back-off, find their queue where they left it (with what arrived meanwhile), and count
an event once however often it arrives. With the vhost's real broker logins (a monitor's rights)."""
from __future__ import annotations

import pika
import pytest

from services.dispatch.events import EXAMPLES as DISPATCH
from services.intake.events import EXAMPLES as INTAKE
from songdaojia.vhosts import delete_users
from songdaojia.loop import REPORTED, Observer, amqp_uris
from songdaojia.stack import Stack
from songdaojia.vhosts import rabbitmqctl
from tests.amqp_helpers import publish_event
from tests.waiting import wait_until

TICKET = "SDJ-261127-LSTN0001"


@pytest.fixture
def secured(fresh_vhost_uri, tmp_path):
    stack = Stack(amqp_uri=fresh_vhost_uri, var_dir=tmp_path / "var")
    stack.secure()
    connection = pika.BlockingConnection(pika.URLParameters(stack.uri("admin")))
    channel = connection.channel()
    for service in ("intake", "dispatch", "volunteer", "notify"):  # what the services declare
        channel.exchange_declare(f"{service}.events", "topic", durable=True)
    connection.close()
    yield stack
    delete_users(stack.vhost, stack.secrets.directory)


def publish(stack, source, example, **kwargs):
    return publish_event(stack.uri(source), source, example, TICKET, user_id=f"{stack.vhost}.{source}", **kwargs)


def queues(stack) -> dict[str, list[str]]:
    lines = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", stack.vhost,
                        "name", "durable", "exclusive", "arguments")
    return {line.split("\t")[0]: line.split("\t")[1:] for line in lines.splitlines() if line.strip()}


def test_uris_are_a_list_or_separated_by_semicolons():
    assert amqp_uris("amqp://a/ ; amqp://b/;") == ["amqp://a/", "amqp://b/"]
    assert amqp_uris(["amqp://a/", "amqp://b/"]) == ["amqp://a/", "amqp://b/"]
    with pytest.raises(ValueError):
        amqp_uris(" ; ")


def test_the_observer_outlives_its_connection_and_counts_each_event_once(secured):
    stack = secured
    # the first URI does not answer (a node that is down): it goes on to the next
    dead = stack.uri("monitor").replace(f":{pika.URLParameters(stack.uri('monitor')).port}/", ":1/")
    observer = Observer(f"{dead};{stack.uri('monitor')}")
    observer.start()
    try:
        name, (durable, exclusive, arguments) = next(iter(queues(stack).items()))
        assert name == observer.queue and durable == "true" and "x-expires" in arguments
        # given several brokers (a cluster) it names its queue and makes it a quorum queue: it outlives a node
        assert name.startswith("monitor.") and "quorum" in arguments
        publish(stack, "intake", INTAKE["ticket_received"])
        wait_until(lambda: observer.counts.get("ticket_received") == 1, message="ticket_received seen")

        rabbitmqctl("close_all_connections", "--vhost", stack.vhost, "listener test")
        routed = publish(stack, "dispatch", DISPATCH["ticket_routed"])  # while it is away: waits in its queue
        publish(stack, "dispatch", DISPATCH["ticket_routed"], event_id=routed["event_id"])  # a relay's re-send
        wait_until(lambda: observer.reconnects >= 1, timeout=20, message="the observer connected again")
        wait_until(lambda: observer.repeats == 1, timeout=10, message="the re-send dropped as a repeat")
        assert observer.counts == {"ticket_received": 1, "ticket_routed": 1}
        assert observer.snapshot()[TICKET].state == "routed" and observer.queues_lost == 0
        assert observer.connection_errors, "it saw the connection go"

        # an event of an older version of the ticket, arriving late, does not move it back
        publish(stack, "dispatch", DISPATCH["ticket_closed"])
        wait_until(lambda: observer.count_in("closed") == 1, message="closed")
        publish(stack, "dispatch", DISPATCH["ticket_accepted"])
        wait_until(lambda: observer.counts.get("ticket_accepted") == 1, message="the late one seen")
        assert observer.count_in("closed") == 1
    finally:
        observer.stop()
    assert not observer.is_alive()
    assert queues(stack) == {}, "stop() deletes its queue"


def test_the_reports_observer_follows_less_and_refuses_to_count_what_it_does_not_follow(secured):
    """A demo or benchmark run's observer (loop.REPORTED) does not bind routed, accepted and resolved (the report
    reads them from dispatch's ledger): the broker delivers it fewer messages, and asking it how many tickets
    were routed is an error, not a silent 0."""
    stack = secured
    observer = Observer(stack.uri("monitor"), REPORTED)
    observer.start()
    try:
        publish(stack, "dispatch", DISPATCH["ticket_routed"])
        publish(stack, "dispatch", DISPATCH["ticket_closed"])
        wait_until(lambda: observer.count_in("closed") == 1, message="closed")
        assert observer.counts == {"ticket_closed": 1}, "routed was not delivered to it"
        with pytest.raises(ValueError, match="does not follow ticket_routed"):
            observer.count_reached("routed")
        with pytest.raises(ValueError, match="does not follow ticket_accepted"):
            observer.count_in("accepted")
    finally:
        observer.stop()
