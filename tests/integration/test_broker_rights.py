"""The broker's side of the trust model, with real users on a vhost set up as ./sdj secure does.

An outside publisher's login could publish ticket_closed and feedback_received, bind a queue to
intake.events (every resident's phone) and read intake.dead-letter. Each attempt here must be
refused by the broker itself, and what the broker lets through (intake may answer publishers on
the default exchange) must be refused by the consumer that checks user_id.
"""
from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError

from services.common.messaging import declare_topology
from services.dispatch import events as dispatch_events
from services.dispatch.service import DispatchService
from services.intake.client import IntakeClient
from services.intake.service import IntakeService
from services.notify import events as notify_events
from services.notify.service import NotifyService
from services.outreach.service import OutreachService
from services.volunteer.service import VolunteerService
from songdaojia import broker
from songdaojia.vhosts import delete_users, fresh_vhost, rabbitmqctl, vhost_uri
from tests.amqp_helpers import amqp_queue_messages, connect
from tests.conftest import DEFAULT_AMQP
from tests.integration.conftest import start
from tests.waiting import wait_until

SERVICES = (IntakeService, DispatchService, VolunteerService, NotifyService, OutreachService)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A vhost with its users: (vhost, {who: AMQP URI} for intake … notify, admin, publisher-hotline,
    publisher-wechat, console-lingbi (Lingbi county's work only) and monitor, the keys folder)."""
    base = os.environ.get("SDJ_TEST_AMQP") or DEFAULT_AMQP
    vhost = f"sdj-test-{uuid.uuid4().hex[:8]}"
    fresh_vhost(base, vhost)
    directory = tmp_path_factory.mktemp("secrets")
    uris = broker.secure(vhost_uri(base, vhost), vhost, directory, publishers=("hotline", "wechat"),
                         consoles={"lingbi": ("3413", "341323")})
    users = {user.removeprefix(f"{vhost}."): uri for user, uri in uris.items()}
    for cls in SERVICES:  # as `prepare` does, as the vhost's admin
        declare_topology(cls, {"AMQP_URI": users["admin"]})
    yield vhost, users, directory
    rabbitmqctl("delete_vhost", vhost)
    delete_users(vhost, directory)


def refused(uri: str, act) -> int:
    """The AMQP reply code the broker refused `act(channel)` with (0: it was allowed)."""
    connection = connect(uri)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        act(channel)
        return 0
    except ChannelClosedByBroker as exc:
        return exc.reply_code
    finally:
        if connection.is_open:
            connection.close()


def event(example: dict) -> bytes:
    return json.dumps({**example, "event_id": str(uuid.uuid4())}).encode()


def publish(exchange: str, key: str, body: bytes = b"{}", **properties):
    return lambda ch: ch.basic_publish(exchange, key, body, pika.BasicProperties(delivery_mode=2, **properties))


def test_a_publisher_cannot_close_a_ticket_or_answer_a_survey(secured):
    _, users, _ = secured
    publisher = users["publisher-hotline"]
    assert refused(publisher, publish("dispatch.events", "ticket_closed",
                                      event(dispatch_events.EXAMPLES["ticket_closed"]))) == 403
    assert refused(publisher, publish("notify.events", "feedback_received",
                                      event(notify_events.EXAMPLES["feedback_received"]))) == 403


def test_a_publisher_cannot_listen_to_residents_data_nor_read_dead_letters(secured):
    _, users, _ = secured
    publisher = users["publisher-hotline"]

    def bind_to_intake_events(ch):
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, "intake.events", "#")

    assert refused(publisher, bind_to_intake_events) == 403
    assert refused(publisher, lambda ch: ch.basic_get("intake.dead-letter")) == 403
    assert refused(publisher, lambda ch: ch.basic_get("intake.submissions")) == 403


def test_a_publisher_submits_only_on_known_channels_and_only_as_itself(secured):
    _, users, _ = secured
    publisher = users["publisher-hotline"]
    own = pika.URLParameters(publisher).credentials.username
    assert refused(publisher, publish("intake.submissions", "submit.hotline", user_id=own)) == 0
    assert refused(publisher, publish("intake.submissions", "submit.fax", user_id=own)) == 403
    assert refused(publisher, publish("intake.submissions", "submit.hotline",
                                      user_id=f"{secured[0]}.dispatch")) == 406  # PRECONDITION_FAILED


def test_outreach_submits_only_what_it_finds_going_to_the_door_and_reads_its_receipts_alone(secured):
    """outreach sends the needs found on visits to intake's front door, as `submit.grid_visit` and
    `submit.night_talk` only, as itself; its receipts queue is its own."""
    vhost, users, _ = secured
    outreach = users["outreach"]
    own = pika.URLParameters(outreach).credentials.username
    assert refused(outreach, publish("intake.submissions", "submit.grid_visit", user_id=own)) == 0
    assert refused(outreach, publish("intake.submissions", "submit.night_talk", user_id=own)) == 0
    assert refused(outreach, publish("intake.submissions", "submit.hotline", user_id=own)) == 403
    assert refused(outreach, publish("dispatch.events", "ticket_closed",
                                     event(dispatch_events.EXAMPLES["ticket_closed"]), user_id=own)) == 403
    assert refused(outreach, lambda ch: ch.basic_get("outreach.receipts")) == 0
    assert refused(users["publisher-hotline"], lambda ch: ch.basic_get("outreach.receipts")) == 403
    assert refused(outreach, lambda ch: ch.basic_get("intake.dead-letter")) == 403


def test_a_publisher_cannot_read_another_publisher_s_receipts(secured):
    _, users, _ = secured
    with IntakeClient(users["publisher-hotline"]) as hotline:
        queue = hotline.receipt_queue()
        assert refused(users["publisher-wechat"], lambda ch: ch.basic_get(queue)) in (403, 405)


def test_guest_has_no_rights_on_a_secured_vhost(secured):
    vhost, _, _ = secured
    with pytest.raises(ProbableAccessDeniedError):
        connect(vhost_uri(os.environ.get("SDJ_TEST_AMQP") or DEFAULT_AMQP, vhost)).close()


def test_a_console_binds_only_its_own_area_s_work(secured):
    _, users, _ = secured
    console = users["console-lingbi"]

    def bind(key):
        def act(ch):
            queue = ch.queue_declare("", exclusive=True).method.queue
            ch.queue_bind(queue, "dispatch.work", key)
        return act

    assert refused(console, bind("area.3413.341323.#")) == 0
    assert refused(console, bind("area.3413.341324.#")) == 403  # the next county
    assert refused(console, bind("area.#")) == 403
    assert refused(console, bind("dept.*.341323")) == 0  # the county's department desks
    assert refused(console, bind("dept.power.341323")) == 0
    assert refused(console, bind("dept.*.341324")) == 403
    assert refused(console, bind("dept.#")) == 403
    assert refused(console, bind("#")) == 403
    assert refused(console, publish("dispatch.work", "area.3413.341323.x")) == 403


def test_each_service_publishes_only_its_own_events_and_binds_only_what_it_handles(secured):
    vhost, users, _ = secured
    intake, dispatch = users["intake"], users["dispatch"]
    assert refused(intake, publish("dispatch.events", "ticket_closed", user_id=f"{vhost}.intake")) == 403
    assert refused(dispatch, publish("intake.events", "ticket_received", user_id=f"{vhost}.dispatch")) == 403

    def bind(exchange, key):
        def act(ch):
            queue = ch.queue_declare("", exclusive=True).method.queue
            ch.queue_bind(queue, exchange, key)
        return act

    # dispatch reads the notify events it handles (feedback, acknowledgements for the ledger, messages that
    # reached nobody: a person calls), not others; nobody but its owner declares a queue
    assert refused(dispatch, lambda ch: ch.queue_declare("dispatch.eavesdrop", durable=True)) == 0
    assert refused(dispatch, lambda ch: ch.queue_bind("dispatch.eavesdrop", "notify.events", "notification_failed")) \
        == 0
    assert refused(dispatch, lambda ch: ch.queue_bind("dispatch.eavesdrop", "notify.events", "reply_received")) \
        == 403
    assert refused(dispatch, lambda ch: ch.queue_bind("dispatch.eavesdrop", "notify.events", "#")) == 403
    assert refused(dispatch, lambda ch: ch.queue_declare("intake.eavesdrop", durable=True)) == 403
    assert refused(users["monitor"], publish("dispatch.events", "ticket_closed")) == 403
    assert refused(users["monitor"], bind("intake.events", "#")) == 0  # the demo's observer


def test_dead_letters_are_kept_for_a_while_and_in_a_bounded_number(secured):
    vhost, _, _ = secured
    listed = rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "--silent", "name", "policy")
    policies = dict(line.partition("\t")[::2] for line in listed.splitlines())
    assert {q: p for q, p in policies.items() if q.endswith(".dead-letter")} == {
        f"{s}.dead-letter": "songdaojia-dead-letters" for s in ("intake", "dispatch", "volunteer", "notify", "outreach")}
    definition = json.loads(json.loads(rabbitmqctl("list_policies", "-p", vhost, "--formatter", "json"))[0]["definition"])
    assert definition["message-ttl"] == 14 * 86_400_000 and definition["max-length"] == 100_000


def test_what_the_broker_lets_through_the_consumer_refuses(secured, keys, tmp_path):
    """intake may write to the default exchange (it answers publishers there), so it could put a forged
    answer straight into dispatch's queue: dispatch looks at who sent it, and parks it with the reason."""
    vhost, users, _ = secured
    owners = {s: f"{vhost}.{s}" for s in ("intake", "dispatch", "volunteer", "notify")}
    dispatch = start(keys, DispatchService, users["dispatch"], f"sqlite:///{tmp_path / 'dispatch.db'}",
                     admin_uri=users["admin"], BROKER_USERS=owners)
    try:
        forged = {**notify_events.EXAMPLES["feedback_received"], "event_id": str(uuid.uuid4()),
                  "occurred_at": datetime.now(timezone.utc).isoformat()}
        assert refused(users["intake"], publish("", "dispatch.follow_up", json.dumps(forged).encode(),
                                                content_type="application/json", user_id=owners["intake"])) == 0
        dead = wait_until(lambda: amqp_queue_messages(users["admin"], "dispatch.dead-letter"),
                          message="the forged answer parked")
        assert dead[0].headers["x-reason"] == (f"user_id: {owners['intake']!r} may not publish on notify.events")
    finally:
        dispatch.stop()


def test_the_same_message_id_from_two_publishers_makes_two_tickets(secured, keys, tmp_path):
    vhost, users, _ = secured
    owners = {s: f"{vhost}.{s}" for s in ("intake", "dispatch", "volunteer", "notify")}
    intake = start(keys, IntakeService, users["intake"], f"sqlite:///{tmp_path / 'intake.db'}",
                   admin_uri=users["admin"], BROKER_USERS=owners)
    now = datetime.now(timezone.utc).isoformat()
    hotline_request = {"channel": "hotline", "category": "652", "village_code": "341323104214",
                       "description": "水管爆了", "submitted_at": now, "resident": {"phone": "13812345678"}}
    wechat_request = {**hotline_request, "channel": "wechat", "description": "另一户：路灯不亮",
                      "category": "633", "resident": {"phone": "13900001111"}}
    try:
        with IntakeClient(users["publisher-hotline"]) as hotline, IntakeClient(users["publisher-wechat"]) as wechat:
            hotline_receipts, wechat_receipts = hotline.receipt_queue(), wechat.receipt_queue()
            hotline.submit("hotline", hotline_request, message_id="000123", reply_to=hotline_receipts)
            wechat.submit("wechat", wechat_request, message_id="000123", reply_to=wechat_receipts)
            hotline.submit("hotline", hotline_request, message_id="000123", reply_to=hotline_receipts)  # a re-send
            first, again = [r["data"] for r in hotline.receipts(hotline_receipts, count=2)]
            other = wechat.receipts(wechat_receipts, count=1)[0]["data"]
        assert first["status"] == again["status"] == other["status"] == "received"
        assert first["ticket_no"] == again["ticket_no"] != other["ticket_no"]
    finally:
        intake.stop()


def test_setting_up_again_changes_nothing(secured, tmp_path_factory):
    """Ops run ./sdj secure after every change: what exists (passwords, keys) is kept."""
    from songdaojia.security import ensure
    vhost, users, directory = secured
    again = broker.secure(vhost_uri(os.environ.get("SDJ_TEST_AMQP") or DEFAULT_AMQP, vhost), vhost, directory,
                          publishers=("hotline", "wechat"), consoles={"lingbi": ("3413", "341323")})
    assert {user.removeprefix(f"{vhost}."): uri for user, uri in again.items()} == users
    connect(users["intake"]).close()  # the running services' logins still work
    keys = tmp_path_factory.mktemp("keys-again")
    first = ensure(keys)
    jwks, clients = first.jwks.read_text(), first.open311_key("county-portal")
    second = ensure(keys)
    assert (second.jwks.read_text(), second.open311_key("county-portal")) == (jwks, clients)
