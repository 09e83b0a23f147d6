"""notify's courier claims what it sends: two instances on one database send each resident message once.

A courier claims a delivery (state `sending`, `claimed_by`, a lease `claimed_until`) and commits that
before it talks to the mail server; the other instance skips it. A claim whose lease ran out (its
instance died mid-send) is anyone's; a claim under a live lease is nobody else's, except the same
instance id after a restart. Counted at a real SMTP server, per ticket.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pika
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.common.clock import Clock
from services.common.database import make_engine
from services.common.lanes import PATIENCE
from services.common.migrations import upgrade
from services.intake import events as intake_events
from services.notify.channels import Receipt
from services.notify.courier import BETWEEN_ACKS, IN_PARALLEL, URGENT_RESERVE, Courier
from services.notify.models import Delivery, OutboxRow
from services.notify.service import NotifyService
from tests.amqp_helpers import connect
from tests.smtp_sink import SmtpSink
from tests.waiting import wait_until

TICKETS = 300
TICKET_IN_SUBJECT = re.compile(r"SDJ-\d{6}-[0-9A-Z]{8}")


def courier_of(started) -> Courier:
    return next(d for d in started.container.dependencies if isinstance(d, Courier))


def publish_received(uri: str, tickets: list[str]) -> None:
    """intake's ticket_received for each ticket, on one connection under confirms (what intake would send)."""
    connection = connect(uri)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for ticket in tickets:
            event = json.loads(json.dumps(intake_events.EXAMPLES["ticket_received"]))
            event.update(event_id=str(uuid.uuid4()), ticket_id=ticket, correlation_id=ticket,
                         occurred_at=datetime.now(timezone.utc).isoformat())
            event["data"]["ticket_no"] = ticket
            channel.basic_publish("intake.events", "ticket_received", json.dumps(event).encode(),
                                  pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                       message_id=event["event_id"], user_id="guest"))
    finally:
        connection.close()


def mails_per_ticket(sink: SmtpSink) -> Counter:
    return Counter(TICKET_IN_SUBJECT.search(str(m["Subject"])).group(0) for m in sink.messages)


def test_two_instances_send_each_acknowledgement_once(fresh_vhost_uri, postgres_url, start_service):
    with SmtpSink() as sink:
        email = {"host": "127.0.0.1", "port": sink.port, "sender": "s@localhost"}
        instances = [start_service(NotifyService, fresh_vhost_uri, postgres_url, CHANNEL="email", EMAIL=email)
                     for _ in range(2)]
        tickets = [f"SDJ-261208-{n:08d}" for n in range(TICKETS)]
        began = time.monotonic()
        publish_received(fresh_vhost_uri, tickets)
        engine = make_engine(postgres_url)
        try:
            def all_sent():
                with engine.connect() as conn:
                    return conn.scalar(select(func.count()).where(Delivery.state == "sent")) == TICKETS
            wait_until(all_sent, timeout=120, interval=0.2, message=lambda: f"{TICKETS} acks sent, "
                       f"{len(sink.messages)} mails so far")
            took = time.monotonic() - began
            # every mail the server took was marked sent first... or is a repeat: wait for the sink to hold them all
            wait_until(lambda: len(sink.messages) >= TICKETS, timeout=10, message="every ack at the mail server")
            with engine.connect() as conn:
                by = dict(conn.execute(select(Delivery.claimed_by, func.count()).group_by(Delivery.claimed_by)).all())
                tries = conn.scalar(select(func.sum(Delivery.attempts)))
                notified = conn.scalars(select(OutboxRow.event_id).where(
                    OutboxRow.routing_key == "resident_acknowledged")).all()
                answers = set(conn.scalars(select(Delivery.answer)).all())
        finally:
            engine.dispose()
        per_ticket = mails_per_ticket(sink)
        shares = [courier_of(i).sent for i in instances]
        print(f"\n{TICKETS} acks by two instances in {took:.1f} s; sent per instance {shares}; "
              f"claimed_by {sorted(by.values())}; tries {tries}; mails {len(sink.messages)}")
        assert set(per_ticket) == set(tickets)
        assert [t for t, n in per_ticket.items() if n != 1] == [], "a resident got their ack twice"
        assert len(sink.messages) == TICKETS
        assert len(notified) == len(set(notified)) == TICKETS  # one resident_acknowledged per delivery
        assert set(by) == {courier_of(i).instance for i in instances}, "both instances sent some"
        assert sorted(by.values()) == sorted(shares) and all(shares)
        assert tries == TICKETS  # nothing failed, nothing was taken over
        assert answers == {"250 Message accepted for delivery"}  # the server's own answer, kept


def _delivery(message_id: str, state: str, claimed_by: str | None = None, lease: timedelta | None = None,
              attempts: int = 0, address: str = "wang@example.cn", template: str = "ack") -> Delivery:
    now = datetime.now(timezone.utc)
    ticket = f"SDJ-261208-{message_id[-8:].upper()}"
    return Delivery(message_id=message_id, ticket_id=ticket, template=template, channel="email",
                    address=address, subject=f"【送到家】已受理 工单号 {ticket}", body="正文",
                    state=state, attempts=attempts, next_attempt_at=now, created_at=now,
                    claimed_by=claimed_by, claimed_until=None if lease is None else now + lease,
                    urgent=template in ("ack", "merged"))


def _rows(engine) -> dict[str, Delivery]:
    with Session(engine) as s:
        return {d.message_id: d for d in s.scalars(select(Delivery))}


def test_a_lapsed_claim_is_taken_over_a_live_one_is_not(fresh_vhost_uri, db_url, start_service):
    """`orphan`: its instance died mid-send, the lease is over. `held`: another instance is sending it now.
    `restarted`: claimed by this very instance id before it was restarted. Then `later`, claimed by id after all
    of them: once it is sent, the courier has claimed with `held` in view and left it."""
    upgrade("notify", db_url)
    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        s.add_all([_delivery("dead-00000001", "sending", "notify-dead", timedelta(seconds=-1), attempts=1),
                   _delivery("held-00000002", "sending", "notify-2", timedelta(minutes=10), attempts=1),
                   _delivery("mine-00000003", "sending", "notify-1", timedelta(minutes=10), attempts=1)])
    with SmtpSink() as sink:
        email = {"host": "127.0.0.1", "port": sink.port, "sender": "s@localhost"}
        started = start_service(NotifyService, fresh_vhost_uri, db_url, CHANNEL="email", EMAIL=email,
                                INSTANCE_ID="notify-1")
        with Session(engine) as s, s.begin():
            s.add(_delivery("late-00000004", "pending"))
        try:
            wait_until(lambda: _rows(engine)["late-00000004"].state == "sent", timeout=20, message="the later one sent")
            rows = _rows(engine)
            got = Counter(str(m["Message-ID"]) for m in sink.messages)
            assert got == Counter({"<dead-00000001@songdaojia>": 1, "<mine-00000003@songdaojia>": 1,
                                   "<late-00000004@songdaojia>": 1})
            for key in ("dead-00000001", "mine-00000003"):  # taken over: one try more, by this instance
                assert (rows[key].state, rows[key].claimed_by, rows[key].attempts) == ("sent", "notify-1", 2)
            held = rows["held-00000002"]
            assert (held.state, held.claimed_by, held.attempts) == ("sending", "notify-2", 1)

            # the lapsed claim comes back late with its outcome, and one that was never this courier's: both refused
            courier = courier_of(started)
            for key in ("dead-00000001", "held-00000002"):
                claim = SimpleNamespace(id=rows[key].id, attempts=1, message_id=key, template="ack",
                                        ticket_id=rows[key].ticket_id, channel="email")
                courier._sent(claim, Receipt("smtp:late", "250 late"))
            rows = _rows(engine)
            assert rows["dead-00000001"].answer == "250 Message accepted for delivery"
            assert rows["held-00000002"].state == "sending"
            with engine.connect() as conn:
                notified = conn.scalar(select(func.count()).where(OutboxRow.routing_key == "resident_acknowledged"))
            assert notified == 3
        finally:
            engine.dispose()


class FakeLanes:
    """The process's urgent lane as the courier sees it: `urgent` acknowledgements being written, and whether
    more came a moment ago (`recent`: they keep coming)."""
    urgent = 0
    recent = False

    def quiet(self) -> bool:
        return not self.urgent and not self.recent


def bare_courier(db_url: str, instance: str) -> Courier:
    """A courier's claiming part, without a service around it."""
    courier = Courier()
    courier.engine, courier.lease, courier.instance, courier.in_flight = make_engine(db_url), timedelta(minutes=2), \
        instance, {}
    courier.promised = courier.claiming = 0
    courier._released = True  # as once start() has given back its earlier claims
    courier.lanes = FakeLanes()  # nothing else in hand
    courier._background_turn = courier._follow_ups_turn = time.monotonic()
    return courier


def test_a_claim_takes_at_most_what_it_asks_for_and_two_take_different_rows(db_url):
    """As `id IN (SELECT … LIMIT 20 FOR UPDATE SKIP LOCKED)` PostgreSQL claimed the whole backlog in one go."""
    upgrade("notify", db_url)
    couriers = [bare_courier(db_url, name) for name in ("notify-1", "notify-2")]
    with Session(couriers[0].engine) as s, s.begin():
        s.add_all([_delivery(f"m-{n:08d}", "pending") for n in range(60)])
    try:
        first, second = couriers[0].claim(20), couriers[1].claim(20)
        couriers[0].in_flight.update((d.id, d.urgent) for d in first)
        third = couriers[0].claim(30)
        assert [len(first), len(second), len(third)] == [20, 20, 20]
        assert len({d.id for d in first + second + third}) == 60
        assert couriers[1].claim(5) == []  # nothing due is left: every row is claimed under a live lease
        assert {d.attempts for d in first + second + third} == {1}
    finally:
        for courier in couriers:
            courier.engine.dispose()


def test_acknowledgements_are_claimed_first_and_always_find_a_slot(db_url):
    """A surge: 40 outcomes and surveys wait, then three acknowledgements are written. The acknowledgements
    are claimed first, and the rest only once they are sent; with every slot the rest may use taken, an
    acknowledgement still finds one."""
    upgrade("notify", db_url)
    courier = bare_courier(db_url, "notify-1")
    with Session(courier.engine) as s, s.begin():
        s.add_all([_delivery(f"closed-{n:08d}", "pending", template="closed") for n in range(40)])
        s.add_all([_delivery(f"ack-{n:08d}", "pending") for n in range(3)])
    try:
        first = courier.claim_in_turn(IN_PARALLEL)
        assert [d.template for d in first] == ["ack"] * 3 + ["closed"] * (IN_PARALLEL - URGENT_RESERVE - 3)
        courier.in_flight.update((d.id, d.urgent) for d in first)
        assert courier.claim_in_turn(IN_PARALLEL - len(courier.in_flight)) == []  # acks in flight: the rest waits
        courier.lanes.urgent = 1  # an acknowledgement being written: the same
        for d in first[:3]:
            del courier.in_flight[d.id]  # the acks went out
        assert courier.claim_in_turn(IN_PARALLEL - len(courier.in_flight)) == []
        courier.lanes.urgent = 0
        more = courier.claim_in_turn(IN_PARALLEL - len(courier.in_flight))
        assert [d.template for d in more] == ["closed"] * 3  # up to the reserve, not into it
        courier.in_flight.update((d.id, d.urgent) for d in more)
        with Session(courier.engine) as s, s.begin():
            s.add(_delivery("ack-late-0000001", "pending"))
        then = courier.claim_in_turn(IN_PARALLEL - len(courier.in_flight))
        assert [d.message_id for d in then] == ["ack-late-0000001"]  # outcomes wait; the acknowledgement does not
        courier.in_flight = {d.id: d.urgent for d in then}  # an acknowledgement in flight, for ever after
        assert courier.claim_in_turn(IN_PARALLEL - len(courier.in_flight)) == []
        courier._background_turn -= PATIENCE  # and the rest waited that long: delayed, never starved
        assert {d.template for d in courier.claim_in_turn(IN_PARALLEL - len(courier.in_flight))} == {"closed"}
    finally:
        courier.engine.dispose()


def test_while_acknowledgements_keep_coming_the_rest_goes_a_few_at_a_time_in_the_gaps(db_url):
    """30 requests a second: an acknowledgement is written every few tens of milliseconds. Between them, outcomes
    and surveys go BETWEEN_ACKS at a time (they used to wait until the requests stopped), and none while an
    acknowledgement is being written or sent."""
    upgrade("notify", db_url)
    courier = bare_courier(db_url, "notify-1")
    courier.lanes.recent = True  # acknowledgements keep coming
    with Session(courier.engine) as s, s.begin():
        s.add_all([_delivery(f"closed-{n:08d}", "pending", template="closed") for n in range(10)])
    try:
        first = courier.claim_in_turn(IN_PARALLEL)
        assert [d.template for d in first] == ["closed"] * BETWEEN_ACKS
        courier.in_flight.update((d.id, d.urgent) for d in first)
        assert courier.claim_in_turn(IN_PARALLEL - len(courier.in_flight)) == []  # the gap's share is in flight
        del courier.in_flight[first[0].id]  # one went out
        courier.lanes.urgent = 1  # and an acknowledgement is being written
        assert courier.claim_in_turn(IN_PARALLEL - len(courier.in_flight)) == []
        courier.lanes.urgent = 0
        assert len(courier.claim_in_turn(IN_PARALLEL - len(courier.in_flight))) == 1  # the next gap
    finally:
        courier.engine.dispose()


def test_the_follow_up_timer_waits_while_an_acknowledgement_is_in_hand_patience_seconds_at_most(db_url):
    courier = bare_courier(db_url, "notify-1")
    try:
        assert courier.follow_ups_may_run()  # nothing in hand
        courier.lanes.urgent = 1  # an acknowledgement being written, and for ever after
        assert not courier.follow_ups_may_run()
        courier._follow_ups_turn -= PATIENCE  # the surveys have waited that long
        assert courier.follow_ups_may_run() and not courier.follow_ups_may_run()  # one turn, then wait again
    finally:
        courier.engine.dispose()


def test_a_refusal_fails_the_delivery_and_a_temporary_failure_waits_its_back_off(fresh_vhost_uri, db_url,
                                                                                start_service):
    upgrade("notify", db_url)
    engine = make_engine(db_url)
    with SmtpSink() as sink:
        sink.refuse_recipient("gone@example.cn", "550 5.1.1 No such mailbox")
        sink.refuse_recipient("busy@example.cn", "450 4.2.1 Mailbox busy")
        email = {"host": "127.0.0.1", "port": sink.port, "sender": "s@localhost"}
        start_service(NotifyService, fresh_vhost_uri, db_url, CHANNEL="email", EMAIL=email)
        began = datetime.now(timezone.utc)
        with Session(engine) as s, s.begin():
            s.add_all([_delivery("gone-00000001", "pending", address="gone@example.cn"),
                       _delivery("busy-00000002", "pending", address="busy@example.cn")])
        try:
            wait_until(lambda: _rows(engine)["gone-00000001"].state == "failed" and
                       _rows(engine)["busy-00000002"].error, timeout=20, message="both tried")
            gone, busy = _rows(engine)["gone-00000001"], _rows(engine)["busy-00000002"]
            assert (gone.attempts, gone.claimed_until) == (1, None) and "550" in gone.error
            assert (busy.state, busy.attempts, busy.claimed_until) == ("pending", 1, None) and "450" in busy.error
            next_try = busy.next_attempt_at if busy.next_attempt_at.tzinfo else \
                busy.next_attempt_at.replace(tzinfo=timezone.utc)
            assert next_try - began >= timedelta(seconds=1.6)  # 2 ** attempts, less at most 20 % (jitter)
            with engine.connect() as conn:
                failed = conn.execute(select(OutboxRow.body).where(OutboxRow.routing_key == "notification_failed")).all()
            [failure] = [json.loads(row.body)["data"] for row in failed]  # no address kept for another channel
            assert (failure["attempts"], failure["channels_tried"], failure["message_id"]) == \
                (1, ["email"], "gone-00000001")
            assert sink.messages == []
        finally:
            engine.dispose()


def test_an_acknowledgement_is_written_claimed_while_a_slot_is_free(db_url):
    """No claim round for an acknowledgement: written `sending` by this instance, one try begun, under a lease;
    with every slot taken it is written pending, for whichever courier has one first."""
    upgrade("notify", db_url)
    courier = bare_courier(db_url, "notify-1")
    courier._running, courier._released = True, False
    try:
        # starting: its earlier claims not yet given back (release_own would take back an ack claimed now)
        assert courier.claimed_at_once() is None
        courier._released = True
        claim = courier.claimed_at_once()
        assert (claim["state"], claim["claimed_by"], claim["attempts"]) == ("sending", "notify-1", 1)
        assert claim["claimed_until"] - claim["first_tried_at"] == courier.lease
        courier.in_flight.update((n, False) for n in range(IN_PARALLEL))
        assert courier.claimed_at_once() is None
        courier._running = False
        courier.in_flight.clear()
        assert courier.claimed_at_once() is None  # stopping: nothing more is taken on
    finally:
        courier.engine.dispose()


class Rollback(Exception):
    pass


def test_an_acknowledgement_holds_its_slot_until_its_transaction_ends(db_url):
    """Handlers writing acknowledgements at the same moment take no more slots than the courier has (a kill -9
    sends again at most IN_PARALLEL: what it had claimed): a slot is held from the write until the transaction
    ends; committed, the acknowledgement is sent; rolled back, the slot is free again and nothing is sent."""
    upgrade("notify", db_url)
    courier = bare_courier(db_url, "notify-1")
    courier._running, sent = True, []
    courier.pool = SimpleNamespace(spawn_n=lambda _deliver, d, _lease_ends: sent.append(d.message_id))
    service = SimpleNamespace(clock=Clock(1), courier=courier)

    def write_acks(s, count: int, prefix: str) -> None:
        for n in range(count):
            NotifyService._deliver(service, s, f"{prefix}-{n}", f"T-{n}", "ack", "email", f"r{n}@example.cn",
                                   "received", "We have your request.")
    try:
        try:
            with Session(courier.engine) as s, s.begin():
                write_acks(s, IN_PARALLEL + 1, "undone")
                assert courier.busy() == IN_PARALLEL  # the last one was written pending
                raise Rollback
        except Rollback:
            pass
        assert (courier.busy(), sent) == (0, [])
        with Session(courier.engine) as s, s.begin():
            write_acks(s, 3, "done")
        assert sent == ["done-0", "done-1", "done-2"]
        assert courier.busy() == 3 and courier.promised == 0  # in flight now, until each send is recorded
        with courier.engine.connect() as conn:
            written = dict(conn.execute(select(Delivery.message_id, Delivery.state)).all())
        assert written == {"done-0": "sending", "done-1": "sending", "done-2": "sending"}
    finally:
        courier.engine.dispose()
