"""Residents' contact data is kept only as long as configured (RETENTION_DAYS), on SQLite and PostgreSQL;
database files are the owner's only."""
from __future__ import annotations

import stat
from datetime import datetime, timedelta, timezone

from nameko.testing.services import entrypoint_hook
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.dispatch import events as dispatch_events
from services.dispatch.models import Case, HistoryEntry
from services.dispatch.service import DispatchService
from services.intake import events as intake_events
from services.intake.client import IntakeClient
from services.intake.models import GatewayCall, Resident, Ticket
from services.intake.service import IntakeService
from services.notify.models import Contact, Delivery
from services.notify.service import NotifyService
from tests.smtp_sink import SmtpSink
from tests.amqp_helpers import Probe, publish_event
from tests.waiting import wait_until

NOW = datetime.now(timezone.utc)
LONG_AGO, LATELY = NOW - timedelta(days=181), NOW - timedelta(days=179)


def request(phone: str, description: str, category: str = "652") -> dict:
    return {"channel": "hotline", "category": category, "village_code": "341323104214", "address": "杨东村三组12号",
            "description": description, "submitted_at": NOW.isoformat(),
            "resident": {"name": "王秀英", "phone": phone, "email": f"{phone}@village.example.cn"}}


def test_intake_forgets_contacts_of_tickets_closed_longer_ago_than_retention(fresh_vhost_uri, db_url, start_service):
    service = start_service(IntakeService, fresh_vhost_uri, db_url)
    events = Probe(fresh_vhost_uri, "intake.events")
    with IntakeClient(fresh_vhost_uri) as client:
        client.submit("hotline", request("13800000001", "水管爆了"))            # closed long ago
        client.submit("hotline", request("13800000002", "想咨询社保", "101"))    # closed lately
        client.submit("hotline", request("13800000003", "其他事情", "999"))      # still open
        wait_until(lambda: len(events.events("ticket_received")) == 3, message="three tickets")
        client.submit("hotline", request("13800000001", "水管还在漏"))          # a repeat of the first
        wait_until(lambda: events.events("ticket_merged"), message="the repeat merged")
    by_phone = {e["data"]["resident"]["phone"]: e["ticket_id"] for e in events.events("ticket_received")}
    old, recent, open_ = (by_phone[f"1380000000{n}"] for n in (1, 2, 3))  # workers may commit in any order
    events.close()
    for ticket, when in ((old, LONG_AGO), (recent, LATELY)):
        publish_event(fresh_vhost_uri, "dispatch", dispatch_events.EXAMPLES["ticket_closed"], ticket,
                      occurred_at=when, ticket_version=9)
    engine = make_engine(db_url)
    wait_until(lambda: _closed(engine) == 2, message="both closed")

    with entrypoint_hook(service.container, "forget_old_contacts") as forget:
        assert forget() == 2  # the old ticket and the repeat merged into it
    with Session(engine) as s:
        tickets = {t.id: t for t in s.scalars(select(Ticket))}
        repeat = next(t for t in tickets.values() if t.merged_into == old)
        for erased in (tickets[old], repeat):
            assert (erased.contact_name, erased.contact_phone, erased.contact_email, erased.address) == (
                None, None, None, "")
        for kept in (tickets[recent], tickets[open_]):
            assert kept.contact_phone and kept.contact_name == "王秀英" and kept.address == "杨东村三组12号"
        phones = {r.phone for r in s.scalars(select(Resident))}
        assert phones == {None, "13800000002", "13800000003"}  # the first resident is an empty shell now
    with entrypoint_hook(service.container, "forget_old_contacts") as forget:
        assert forget() == 0  # nothing twice
    engine.dispose()


def _closed(engine) -> int:
    with Session(engine) as s:
        return len(s.scalars(select(Ticket).where(Ticket.status == "closed")).all())


def test_intake_forgets_contacts_of_tickets_cancelled_long_ago_as_of_closed_ones(fresh_vhost_uri, db_url,
                                                                                 start_service):
    service = start_service(IntakeService, fresh_vhost_uri, db_url)
    events = Probe(fresh_vhost_uri, "intake.events")
    with IntakeClient(fresh_vhost_uri) as client:
        client.submit("hotline", request("13800000001", "水管爆了"))          # withdrawn long ago
        client.submit("hotline", request("13800000002", "想咨询社保", "101"))  # withdrawn lately
        wait_until(lambda: len(events.events("ticket_received")) == 2, message="two tickets")
    by_phone = {e["data"]["resident"]["phone"]: e["ticket_id"] for e in events.events("ticket_received")}
    old, recent = by_phone["13800000001"], by_phone["13800000002"]  # workers may commit in any order
    events.close()
    closed = dispatch_events.EXAMPLES["ticket_closed"]
    cancelled = dispatch_events.EXAMPLES.get("ticket_cancelled") or {**closed, "event": "ticket_cancelled"}
    for ticket, when in ((old, LONG_AGO), (recent, LATELY)):
        publish_event(fresh_vhost_uri, "dispatch", cancelled, ticket, occurred_at=when, ticket_version=9,
                      state="cancelled")
    engine = make_engine(db_url)
    with Session(engine) as s:
        now = datetime.now(timezone.utc)  # not the module's NOW: a long suite imports it half an hour earlier
        s.add(GatewayCall(signature="a" * 64, gateway="sms", at=now - timedelta(hours=1)))  # long past replaying
        s.add(GatewayCall(signature="b" * 64, gateway="sms", at=now))
        s.commit()
    wait_until(lambda: _cancelled(engine) == 2, message="both cancelled")

    with entrypoint_hook(service.container, "forget_old_contacts") as forget:
        assert forget() == 1
    with Session(engine) as s:
        tickets = {t.id: t for t in s.scalars(select(Ticket))}
        assert (tickets[old].contact_phone, tickets[old].address) == (None, "")
        assert tickets[recent].contact_phone == "13800000002"
        assert set(s.scalars(select(GatewayCall.signature))) == {"b" * 64}
    engine.dispose()


def _cancelled(engine) -> int:
    with Session(engine) as s:
        return len(s.scalars(select(Ticket).where(Ticket.status == "cancelled", Ticket.closed_at.is_not(None))).all())


def test_notify_forgets_what_it_sent_about_tickets_closed_long_ago(fresh_vhost_uri, db_url, start_service):
    sink = SmtpSink().start()
    service = start_service(NotifyService, fresh_vhost_uri, db_url, CHANNEL="email",
                            EMAIL={"host": "127.0.0.1", "port": sink.port, "sender": "s@localhost"})
    received = intake_events.EXAMPLES["ticket_received"]
    for ticket, when in (("SDJ-OLD", LONG_AGO), ("SDJ-RECENT", LATELY)):
        publish_event(fresh_vhost_uri, "intake", received, ticket)
        wait_until(lambda: sink.count_with(ticket), message=f"the acknowledgement of {ticket}")
        publish_event(fresh_vhost_uri, "dispatch", dispatch_events.EXAMPLES["ticket_closed"], ticket, occurred_at=when)
    engine = make_engine(db_url)
    wait_until(lambda: _closed_contacts(engine) == 2 and _deliveries(engine) == 4, message="both closed and told")
    with entrypoint_hook(service.container, "forget_old_contacts") as forget:
        assert forget() == 1
    with Session(engine) as s:
        old, recent = s.get(Contact, "SDJ-OLD"), s.get(Contact, "SDJ-RECENT")
        assert (old.name, old.phone, old.email) == (None, None, None) and recent.phone == "13812341234"
        for d in s.scalars(select(Delivery)):
            if d.ticket_id == "SDJ-OLD":
                assert (d.address, d.body, d.subject) == ("", "(erased: retention)", "(erased: retention)")
            else:
                assert d.address == "wang@example.cn" and "王秀英" in d.body
            assert d.state == "sent"  # the log of what was sent, and when, stays
    engine.dispose()
    sink.stop()


def _closed_contacts(engine) -> int:
    with Session(engine) as s:
        return len(s.scalars(select(Contact).where(Contact.closed_at.is_not(None))).all())


def _deliveries(engine) -> int:
    with Session(engine) as s:
        return len(s.scalars(select(Delivery).where(Delivery.state == "sent")).all())


def test_dispatch_forgets_addresses_and_residents_words_of_cases_closed_long_ago(fresh_vhost_uri, db_url,
                                                                                start_service):
    service = start_service(DispatchService, fresh_vhost_uri, db_url)
    publish_event(fresh_vhost_uri, "intake", intake_events.EXAMPLES["ticket_received"], "SDJ-OLD")
    engine = make_engine(db_url)
    wait_until(lambda: _case(engine, "SDJ-OLD"), message="the case")
    with Session(engine) as s, s.begin():  # as if handled and closed half a year ago, with a comment
        case = s.get(Case, "SDJ-OLD")
        case.state, case.updated_at = "closed", LONG_AGO
        s.add(HistoryEntry(ticket_id="SDJ-OLD", at=LONG_AGO, event="ticket_closed", state="closed",
                           actor="resident", note="王秀英说油没送到"))
    with entrypoint_hook(service.container, "forget_old_contacts") as forget:
        assert forget() == 1
    with Session(engine) as s:
        assert s.get(Case, "SDJ-OLD").address == ""
        notes = {h.actor: h.note for h in s.scalars(select(HistoryEntry).where(HistoryEntry.ticket_id == "SDJ-OLD"))}
        assert notes["resident"] == "" and notes["dispatch"] == ""
    engine.dispose()


def _case(engine, ticket_id):
    with Session(engine) as s:
        return s.get(Case, ticket_id)


def test_a_new_sqlite_database_and_its_folder_are_the_owner_s_only(tmp_path):
    path = tmp_path / "new-folder" / "intake.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
    engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for wal in path.parent.glob("intake.db-*"):
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
