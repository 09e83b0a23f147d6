"""The follow-up chain in running notify services, with a broker, a mail server and a scaled clock
(SLA_SCALE: 24 hours become under a second): survey, reminder, then one `survey_unanswered`, each
once even with two instances on one database (SQLite and PostgreSQL: FOR UPDATE SKIP LOCKED)."""
from __future__ import annotations

from datetime import datetime, timezone

from services.dispatch import events as dispatch_events
from services.intake import events as intake_events
from services.notify.service import NotifyService
from tests.smtp_sink import SmtpSink
from tests.amqp_helpers import Probe, publish_event
from tests.waiting import wait_until

TICKET, LATER = "SDJ-261127-7KQ2M4XA", "SDJ-261127-9PW3RT6B"
SCALED = {"SLA_SCALE": 0.00001, "REMIND_AFTER_HOURS": 24, "GIVE_UP_AFTER_HOURS": 24}  # 24 h: 0.86 s


def distinct(messages, marker: str, ticket: str = TICKET) -> set[str]:
    """Message-IDs of the mails about `ticket` whose subject has `marker` (a courier may resend: same id)."""
    return {str(m["Message-ID"]) for m in messages if ticket in str(m["Subject"]) and marker in str(m["Subject"])}


def resolve(uri: str, ticket: str) -> datetime:
    publish_event(uri, "intake", intake_events.EXAMPLES["ticket_received"], ticket)
    resolved = datetime.now(timezone.utc)
    publish_event(uri, "dispatch", dispatch_events.EXAMPLES["ticket_resolved"], ticket,
                  resolved_at=resolved.isoformat(), follow_up_hours=24)
    return resolved


def test_two_instances_ask_remind_and_give_up_once(fresh_vhost_uri, db_url, start_service):
    sink = SmtpSink().start()
    email = {"host": "127.0.0.1", "port": sink.port, "sender": "s@localhost"}
    for _ in range(2):
        start_service(NotifyService, fresh_vhost_uri, db_url, CHANNEL="email", EMAIL=email, **SCALED)
    events = Probe(fresh_vhost_uri, "notify.events")
    try:
        resolved = resolve(fresh_vhost_uri, TICKET)
        wait_until(lambda: distinct(sink.messages, "温馨提醒"), timeout=20, message="the reminder")
        unanswered = wait_until(lambda: events.events("survey_unanswered"), timeout=20, message="survey_unanswered")
        asked = datetime.fromisoformat(unanswered[0]["data"]["asked_at"])
        assert (asked - resolved).total_seconds() > 0.8  # not at once: follow_up_hours, scaled
        # a later ticket goes through all its steps: both instances ticked many times since; nothing more came
        resolve(fresh_vhost_uri, LATER)
        wait_until(lambda: {e["ticket_id"] for e in events.events("survey_unanswered")} == {TICKET, LATER},
                   timeout=20, message="the later ticket given up too")
        assert len({e["event_id"] for e in events.events("survey_unanswered") if e["ticket_id"] == TICKET}) == 1
        for ticket in (TICKET, LATER):  # the survey and its reminder, once each
            assert len(distinct(sink.messages, "请您评价", ticket)) == 2
        assert unanswered[0]["data"]["round"] == 1 and unanswered[0]["ticket_id"] == TICKET
    finally:
        events.close()
        sink.stop()
