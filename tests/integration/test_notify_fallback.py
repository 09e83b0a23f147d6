"""A channel that stays down: notify tries it for DELIVERY_PATIENCE_SECONDS (here a few seconds), then the
message goes on by the resident's next channel; with none left, `notification_failed` (dispatch then has a
person call: tests/service/test_dispatch_reach.py). A real SMTP server (songdaojia.peers.SmtpSink), stopped
(its port closed), and an SMS gateway (tests/http_recorder.py)."""
from __future__ import annotations

from datetime import timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.intake import events as intake_events
from services.notify.models import Delivery
from services.notify.service import NotifyService
from songdaojia.peers import free_port
from tests.smtp_sink import SmtpSink
from tests.amqp_helpers import Probe, publish_event
from tests.http_recorder import HttpRecorder
from tests.waiting import wait_until

FIRST, LATER = "SDJ-261212-FALLBK01", "SDJ-261212-FALLBK02"
PHONE, MAIL = "13812341234", "wang@example.cn"  # intake's example resident
PATIENCE = 3.0
SOON = {"DELIVERY_PATIENCE_SECONDS": PATIENCE, "DELIVERY_MAX_BACKOFF_SECONDS": 1}


def channels(smtp_port: int, sms_url: str) -> dict:
    return {"CHANNELS": "email,sms", "EMAIL": {"host": "127.0.0.1", "port": smtp_port, "sender": "s@localhost"},
            "SMS": {"url": sms_url, "timeout": 2}}


def received(uri: str, ticket: str) -> str:
    """intake's ticket_received; the id of the acknowledgement notify writes for it."""
    return publish_event(uri, "intake", intake_events.EXAMPLES["ticket_received"], ticket)["event_id"] + ".ack"


def deliveries(engine, ticket: str) -> list[Delivery]:
    with Session(engine) as s:
        return list(s.scalars(select(Delivery).where(Delivery.ticket_id == ticket).order_by(Delivery.id)))


def utc(at):
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def test_a_mail_server_down_past_patience_the_resident_gets_one_sms_and_never_the_mail(
        fresh_vhost_uri, db_url, start_service):
    smtp_port = free_port()  # nobody listens: the mail server is down
    with HttpRecorder() as gateway:
        start_service(NotifyService, fresh_vhost_uri, db_url, **channels(smtp_port, gateway.url), **SOON)
        events = Probe(fresh_vhost_uri, "notify.events")
        engine = make_engine(db_url)
        try:
            ack = received(fresh_vhost_uri, FIRST)
            [sms] = gateway.wait_for(lambda got: [r for r in got if r.header("Idempotency-Key") == f"{ack}.sms"],
                                     timeout=30, description="the acknowledgement by SMS")
            assert sms.body["to"] == PHONE and FIRST in sms.body["text"] and sms.body["message_id"] == f"{ack}.sms"
            notified = wait_until(lambda: events.events("resident_acknowledged"), timeout=10,
                                  message="resident_acknowledged")
            assert [(e["ticket_id"], e["data"]["channel"]) for e in notified] == [(FIRST, "sms")]

            mail, text = wait_until(lambda: (rows := deliveries(engine, FIRST)) and rows[-1].state == "sent" and rows,
                                    timeout=10, message="the SMS marked sent")
            assert (mail.message_id, mail.channel, mail.state, mail.address) == (ack, "email", "failed", MAIL)
            assert mail.attempts >= 2 and "cannot connect" in mail.error  # tried again, not given up at once
            assert (text.message_id, text.channel, text.fallback_of, text.address) == (f"{ack}.sms", "sms", mail.id,
                                                                                     PHONE)
            assert utc(text.created_at) >= utc(mail.first_tried_at) + timedelta(seconds=PATIENCE)  # not before
            assert (text.subject, text.body) == (mail.subject, mail.body)

            # the mail server is back: a later ticket's acknowledgement goes by email again, the first one never
            with SmtpSink(port=smtp_port) as sink:
                assert sink.port == smtp_port
                later = received(fresh_vhost_uri, LATER)
                sink.wait_for(lambda got: [m for m in got if LATER in str(m["Subject"])], timeout=30,
                              description="the later acknowledgement by email")
                assert [str(m["Message-ID"]) for m in sink.messages] == [f"<{later}@songdaojia>"]
            assert [r.header("Idempotency-Key") for r in gateway.requests] == [f"{ack}.sms"]
            assert events.events("notification_failed") == []
        finally:
            events.close()
            engine.dispose()


def test_a_refusal_for_good_goes_on_by_sms_at_once(fresh_vhost_uri, sqlite_url, start_service):
    """550 from the mail server: no waiting out the patience (six hours by default)."""
    with SmtpSink() as sink, HttpRecorder() as gateway:
        sink.refuse_recipient(MAIL, "550 5.1.1 No such mailbox")
        start_service(NotifyService, fresh_vhost_uri, sqlite_url, **channels(sink.port, gateway.url))
        engine = make_engine(sqlite_url)
        try:
            ack = received(fresh_vhost_uri, FIRST)
            gateway.wait_for(lambda got: len(got) == 1, timeout=20, description="the SMS")
            mail, text = wait_until(lambda: (rows := deliveries(engine, FIRST)) and rows[-1].state == "sent" and rows,
                                    timeout=10, message="the SMS marked sent")
            assert (mail.state, mail.attempts, text.message_id) == ("failed", 1, f"{ack}.sms") and "550" in mail.error
            assert sink.messages == []
        finally:
            engine.dispose()


def test_with_every_channel_down_the_failure_names_the_channels_tried(fresh_vhost_uri, db_url, start_service):
    nowhere = f"http://127.0.0.1:{free_port()}/sms"  # the gateway is down too
    start_service(NotifyService, fresh_vhost_uri, db_url, **channels(free_port(), nowhere),
                  DELIVERY_PATIENCE_SECONDS=1, DELIVERY_MAX_BACKOFF_SECONDS=0.5)
    events = Probe(fresh_vhost_uri, "notify.events")
    engine = make_engine(db_url)
    try:
        ack = received(fresh_vhost_uri, FIRST)
        [failed] = wait_until(lambda: events.events("notification_failed"), timeout=30, message="notification_failed")
        assert failed["ticket_id"] == FIRST
        data = failed["data"]
        assert (data["template"], data["channels_tried"], data["message_id"], data["recipient"], data["channel"]) == \
            ("ack", ["email", "sms"], ack, "resident", "sms")
        assert data["attempts"] >= 2 and "cannot reach gateway" in data["reason"]
        mail, text = deliveries(engine, FIRST)
        assert [(d.channel, d.state) for d in (mail, text)] == [("email", "failed"), ("sms", "failed")]
        assert text.fallback_of == mail.id
        assert events.events("resident_acknowledged") == [] and len(events.events("notification_failed")) == 1
    finally:
        events.close()
        engine.dispose()
