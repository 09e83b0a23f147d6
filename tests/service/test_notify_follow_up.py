"""notify's handlers without a broker: the 回访 that cannot be skipped, and telling people.

A resolved ticket's survey goes out follow_up_hours later, then a reminder, then `survey_unanswered`
(a village cadre calls): each step once, whatever ticks, restarts or second instances. A ticket that
moves on (closed, reopened, cancelled) stops its survey. Escalations reach the resident once per
level and the newly responsible person by email.
"""
from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from services.common.clock import ManualClock
from services.common.envelope import example_envelope, open_envelope
from services.common.http import HttpError
from services.intake import events as intake_events
from services.notify.channels import EmailChannel, SmsChannel
from services.notify.models import Contact, Delivery, ReplyAttempt, Survey
from services.notify.service import NotifyService
from songdaojia.loop import SURVEY_CODE, TICKET_NO
from tests.service_layer import Worker

TICKET = "SDJ-261127-7KQ2M4XA"
T0 = datetime(2026, 11, 27, 1, 30, tzinfo=timezone.utc)  # when the ticket was resolved
RESIDENT_MAIL = "wang@example.cn"  # intake's example resident, 王秀英
WORKER = {"assignee_id": "W-341323104214-G10-1", "assignee_name": "李桂兰"}


class Courier:
    """What notify's handlers use of the courier: its channels (preferred first), a nudge after commit, and
    whether an acknowledgement is in hand (`urgent`: the follow-up timer then waits a tick)."""

    def __init__(self, *channels):
        channels = channels or (EmailChannel("127.0.0.1", 2525, "songdaojia@localhost"),)
        self.channels = {channel.kind: channel for channel in channels}
        self.woken = 0
        self.urgent = False

    def follow_ups_may_run(self) -> bool:
        return not self.urgent

    def claimed_at_once(self) -> None:
        return None  # every delivery written pending, as when the real courier has no slot free

    def wake(self) -> None:
        self.woken += 1


def envelope(event: str, data: dict, occurred_at: datetime = T0, ticket: str = TICKET) -> dict:
    """As the consumer hands it to a handler: checked and decoded, with a new event id."""
    wire = example_envelope(event, data, str(uuid.uuid4()), occurred_at.isoformat(), ticket_id=ticket)
    return open_envelope(json.dumps(wire, ensure_ascii=False).encode())


def lifecycle(state: str, version: int, **data) -> dict:
    return {"state": state, "ticket_version": version, **WORKER, **data}


def received() -> dict:
    wire = copy.deepcopy(intake_events.EXAMPLES["ticket_received"])
    return envelope("ticket_received", wire["data"], datetime.fromisoformat(wire["occurred_at"]))


def resolved(version: int = 4, hours: int = 24, at: datetime = T0) -> dict:
    return envelope("ticket_resolved", lifecycle("resolved", version, note="已代购米面油送到家",
                                                 resolved_at=at.isoformat(), follow_up_hours=hours), at)


def closed(version: int, how: str | None, satisfied: bool | None = None) -> dict:
    return envelope("ticket_closed", lifecycle("closed", version, satisfied=satisfied, comment="", how=how))


def escalated(level: int, mode: str, what: str = "accept", **data) -> dict:
    fields = {"what": what, "mode": mode, "level": level, "level_name": {1: "village", 2: "town", 3: "county"}[level],
              "supervisor_id": "C-341323104214-1", "supervisor_name": "王村长", "due_at": "2026-11-27T02:00:00+00:00",
              "work_key": "area.3413.341323.341323104.341323104214", **data}
    return envelope("ticket_escalated", lifecycle("escalated", 5, **{**WORKER, **fields}))


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def notify(tmp_path, clock):
    w = Worker(NotifyService, tmp_path, clock=clock, courier=Courier(),
               config={"REMIND_AFTER_HOURS": 24, "GIVE_UP_AFTER_HOURS": 24})
    w.call("acknowledge", received())
    return w


def deliveries(w: Worker) -> list[Delivery]:
    with w.db.transaction() as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.id)))


def templates(w: Worker) -> list[str]:
    return [d.template for d in deliveries(w)]


def surveys(w: Worker) -> list[Survey]:
    with w.db.transaction() as s:
        return list(s.scalars(select(Survey).order_by(Survey.round)))


def tick(w: Worker) -> int:
    return w.call("chase_follow_ups")


def answer(w: Worker, code: str, satisfied: bool = True) -> dict:
    form = {"ticket_id": TICKET, "survey_code": code, "sender": RESIDENT_MAIL, "answer": "1" if satisfied else "2",
            "comment": ""}
    return w.service("reply")._record_answer(form, w.clock.now(), ReplyAttempt(at=w.clock.now()))


def utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)  # SQLite gives back naive UTC


# --- the follow-up, step by step --------------------------------------------------------------------


def test_nothing_is_sent_at_resolution_the_survey_goes_out_follow_up_hours_later(notify, clock):
    notify.call("ask_for_follow_up", [resolved(hours=24)])
    assert templates(notify) == ["ack"]
    (survey,) = surveys(notify)
    assert utc(survey.due_at) == T0 + timedelta(hours=24) and survey.asked_at is None

    clock.advance(hours=23, minutes=59)
    assert tick(notify) == 0 and templates(notify) == ["ack"]
    clock.advance(minutes=1)
    assert tick(notify) == 1
    assert templates(notify) == ["ack", "survey"]
    mail = deliveries(notify)[-1]
    assert (mail.address, mail.message_id) == (RESIDENT_MAIL, f"survey-{TICKET}-1.survey")
    assert SURVEY_CODE.search(mail.subject).group(1) == surveys(notify)[0].code and "李桂兰" in mail.body
    assert utc(surveys(notify)[0].asked_at) == clock.now()
    assert tick(notify) == 0 and templates(notify) == ["ack", "survey"]  # a second tick changes nothing


def test_a_due_survey_waits_while_an_acknowledgement_is_in_hand(notify, clock):
    """A surge: the resident waiting to hear their request was received goes first; the survey, a tick later."""
    notify.call("ask_for_follow_up", [resolved(hours=24)])
    clock.advance(hours=24)
    notify.deps["courier"].urgent = True
    assert tick(notify) == 0 and templates(notify) == ["ack"]
    notify.deps["courier"].urgent = False
    assert tick(notify) == 1 and templates(notify) == ["ack", "survey"]


def test_unanswered_a_reminder_then_one_survey_unanswered_and_nothing_after(notify, clock):
    notify.call("ask_for_follow_up", [resolved(hours=24)])
    asked = clock.advance(hours=24)
    tick(notify)
    clock.advance(hours=23)
    assert tick(notify) == 0 and templates(notify) == ["ack", "survey"]

    reminded = clock.advance(hours=1)
    assert tick(notify) == 1 and templates(notify) == ["ack", "survey", "survey_reminder"]
    survey_mail, reminder = deliveries(notify)[1:]
    assert reminder.message_id == f"survey-{TICKET}-1.reminder"
    # the resident (and songdaojia/loop.py's residents) can answer it as the survey: same markers, same code
    assert SURVEY_CODE.search(reminder.subject).group(1) == SURVEY_CODE.search(survey_mail.subject).group(1)
    assert TICKET_NO.search(reminder.subject).group(0) == TICKET and "请您评价" in reminder.subject
    assert notify.sent("survey_unanswered") == []

    clock.advance(hours=23, minutes=59)
    assert tick(notify) == 0 and notify.sent("survey_unanswered") == []
    clock.advance(minutes=1)
    assert tick(notify) == 1
    (routing_key, event), = notify.sent("survey_unanswered")
    assert routing_key == "survey_unanswered" and event["ticket_id"] == TICKET
    assert event["data"] == {"round": 1, "asked_at": asked.isoformat(), "reminded_at": reminded.isoformat()}

    for _ in range(3):  # later ticks, days later: nothing more, ever
        clock.advance(days=2)
        assert tick(notify) == 0
    assert len(notify.sent("survey_unanswered")) == 1 and len(deliveries(notify)) == 3


def test_each_step_fires_once_across_a_restart_and_a_second_instance(notify, clock, tmp_path):
    notify.call("ask_for_follow_up", [resolved(hours=1)])
    clock.advance(hours=1)
    assert tick(notify) == 1
    restarted = Worker(NotifyService, tmp_path, clock=clock, courier=Courier(), config=notify.config)
    other = Worker(NotifyService, tmp_path, clock=clock, courier=Courier(), config=notify.config)
    assert tick(restarted) == 0 and tick(other) == 0  # asked already: not again
    clock.advance(hours=24)
    assert tick(restarted) == 1 and tick(other) == 0 and tick(notify) == 0
    clock.advance(hours=24)
    assert tick(other) == 1 and tick(restarted) == 0
    assert templates(notify) == ["ack", "survey", "survey_reminder"]
    assert len(notify.sent("survey_unanswered")) == 1


def test_after_a_jump_of_the_clock_the_survey_goes_out_once_and_the_reminder_waits_from_then(notify, clock):
    notify.call("ask_for_follow_up", [resolved(hours=24)])
    clock.advance(days=30)  # the service was down for a month
    assert [tick(notify) for _ in range(3)] == [1, 0, 0]
    assert templates(notify) == ["ack", "survey"]  # not the reminder and the giving up at once
    clock.advance(hours=24)
    assert [tick(notify) for _ in range(3)] == [1, 0, 0]
    clock.advance(days=30)
    assert [tick(notify) for _ in range(3)] == [1, 0, 0]
    assert templates(notify) == ["ack", "survey", "survey_reminder"]
    assert len(notify.sent("survey_unanswered")) == 1


def test_an_answer_after_the_reminder_counts_and_stops_the_chain(notify, clock):
    notify.call("ask_for_follow_up", [resolved(hours=24)])
    clock.advance(hours=24)
    tick(notify)
    clock.advance(hours=24)
    tick(notify)
    code = surveys(notify)[0].code
    assert answer(notify, code, satisfied=False) == {"ticket_id": TICKET, "round": 1, "satisfied": False}
    assert [e["data"] for _, e in notify.sent("feedback_received")] == [
        {"satisfied": False, "comment": "", "round": 1}]
    clock.advance(days=5)
    assert tick(notify) == 0 and notify.sent("survey_unanswered") == []


def test_an_answer_after_giving_up_is_refused_the_call_decides(notify, clock):
    notify.call("ask_for_follow_up", [resolved(hours=24)])
    for _ in range(3):
        clock.advance(hours=24)
        tick(notify)
    assert len(notify.sent("survey_unanswered")) == 1
    with pytest.raises(HttpError) as refused:
        answer(notify, surveys(notify)[0].code)
    assert refused.value.status == 409 and "call" in str(refused.value)
    assert notify.sent("feedback_received") == [] and surveys(notify)[0].answered_at is None


def test_an_answer_before_the_survey_went_out_is_refused(notify, clock):
    notify.call("ask_for_follow_up", [resolved(hours=24)])
    with pytest.raises(HttpError) as refused:
        answer(notify, surveys(notify)[0].code)
    assert refused.value.status == 409


# --- a ticket that moves on stops its survey ---------------------------------------------------------


@pytest.mark.parametrize("asked_first", [False, True], ids=["before the survey", "after the survey"])
def test_ticket_closed_stops_the_chain(notify, clock, asked_first):
    notify.call("ask_for_follow_up", [resolved(hours=24)])
    if asked_first:
        clock.advance(hours=24)
        tick(notify)
    notify.call("tell_outcome", [closed(6, how="follow_up_call", satisfied=True)])
    for _ in range(4):
        clock.advance(hours=30)
        assert tick(notify) == 0
    assert templates(notify) == ["ack"] + (["survey"] if asked_first else []) + ["closed"]
    assert notify.sent("survey_unanswered") == [] and surveys(notify)[0].closed_at is not None
    with pytest.raises(HttpError) as refused:
        answer(notify, surveys(notify)[0].code)
    assert refused.value.status == 409


def test_ticket_reopened_stops_the_round_and_the_next_resolution_asks_again(notify, clock):
    notify.call("ask_for_follow_up", [resolved(version=4, hours=24)])
    clock.advance(hours=24)
    tick(notify)
    notify.call("tell_outcome", [envelope("ticket_reopened", lifecycle("reopened", 6, comment="", reopen_count=1))])
    notify.call("ask_for_follow_up", [resolved(version=8, hours=24, at=clock.now())])
    clock.advance(hours=24)
    assert tick(notify) == 1
    assert templates(notify) == ["ack", "survey", "reopened", "survey"]
    first, second = surveys(notify)
    assert first.closed_at is not None and second.asked_at is not None and first.code != second.code
    assert SURVEY_CODE.search(deliveries(notify)[-1].subject).group(1) == second.code


def test_a_reopening_handled_after_the_next_resolution_does_not_stop_the_new_round(notify, clock):
    """ticket_reopened and ticket_resolved arrive on different queues: their order is not guaranteed."""
    notify.call("ask_for_follow_up", [resolved(version=4, hours=24)])
    clock.advance(hours=24)
    tick(notify)
    notify.call("ask_for_follow_up", [resolved(version=8, hours=24, at=clock.now())])
    notify.call("tell_outcome", [envelope("ticket_reopened", lifecycle("reopened", 6, comment="", reopen_count=1))])
    clock.advance(hours=24)
    assert tick(notify) == 1
    first, second = surveys(notify)
    assert first.closed_at is not None and (second.closed_at, utc(second.asked_at)) == (None, clock.now())


def test_a_resolution_handled_after_the_ticket_closed_is_never_asked_about(notify, clock):
    notify.call("tell_outcome", [closed(6, how="unreached")])
    notify.call("ask_for_follow_up", [resolved(version=4, hours=0)])
    clock.advance(hours=100)
    assert tick(notify) == 0 and templates(notify) == ["ack", "closed"]


def test_one_relay_round_of_outcomes_is_told_in_the_order_sent_and_a_repeat_in_it_changes_nothing(notify, clock):
    """dispatch's lifecycle digest brings a round's events in one call: reopened, then closed, each told once."""
    reopened = envelope("ticket_reopened", lifecycle("reopened", 6, comment="", reopen_count=1))
    notify.call("tell_outcome", [reopened, closed(9, how="resident", satisfied=True), reopened])
    assert templates(notify) == ["ack", "reopened", "closed"]
    with notify.db.transaction() as s:
        assert s.get(Contact, TICKET).closed_at is not None  # the closing, sent last, is what stands


def test_one_relay_round_of_resolutions_opens_one_survey_round_each(notify, clock):
    notify.call("ask_for_follow_up", [resolved(version=4, hours=24), resolved(version=8, hours=24)])
    first, second = surveys(notify)
    assert (first.round, second.round) == (1, 2)
    assert first.closed_at is not None and second.closed_at is None  # the earlier round went stale


@pytest.mark.parametrize(("how", "satisfied", "zh", "en"), [
    ("resident", True, "感谢您的评价", "Thank you for your answer"),
    ("follow_up_call", None, "回访员已电话回访", "Thank you for taking our follow-up call"),
    ("unreached", None, "12345 热线", "call the 12345 hotline"),
])
def test_the_closing_message_says_how_it_was_closed(tmp_path, clock, how, satisfied, zh, en):
    for locale, expected in (("zh-CN", zh), ("en", en)):
        w = Worker(NotifyService, tmp_path / locale, clock=clock, courier=Courier())
        ack = received()
        ack["data"]["resident"]["locale"] = locale
        w.call("acknowledge", ack)
        w.call("tell_outcome", [closed(6, how=how, satisfied=satisfied)])
        message = deliveries(w)[-1]
        assert message.template == "closed" and expected in message.body and TICKET in message.subject


# --- cancellation -------------------------------------------------------------------------------------


def test_cancelled_by_the_resident_confirms_the_withdrawal_and_stops_the_survey(notify, clock):
    notify.call("ask_for_follow_up", [resolved(hours=24)])
    notify.call("tell_cancelled", envelope("ticket_cancelled", lifecycle("cancelled", 7, by="resident",
                                                                          reason="邻居已帮忙买好了")))
    clock.advance(days=3)
    assert tick(notify) == 0
    assert templates(notify) == ["ack", "cancelled"]
    told = deliveries(notify)[-1]
    assert told.address == RESIDENT_MAIL and "已撤销" in told.subject and "根据您的申请" in told.body
    assert "邻居" not in told.body


def test_cancelled_by_a_dispatcher_says_why(notify):
    notify.call("tell_cancelled", envelope("ticket_cancelled", lifecycle("cancelled", 3, by="dispatcher",
                                                                          reason="重复诉求，已并入其他工单")))
    told = deliveries(notify)[-1]
    assert told.template == "cancelled" and "重复诉求，已并入其他工单" in told.body and "工作人员" in told.body


# --- escalation ----------------------------------------------------------------------------------------


def test_escalated_tells_the_resident_once_per_level_and_the_new_assignee_each_time(notify):
    first = escalated(1, "reassign", assignee_id="W-341323104214-G10-2", assignee_name="张伟")
    notify.call("tell_escalated", first)
    notify.call("tell_escalated", first)  # the same event again: the inbox keeps it once
    notify.call("tell_escalated", escalated(1, "reassign", what="resolve", assignee_id="W-341323104214-G10-2",
                                            assignee_name="张伟"))
    resident = [d for d in deliveries(notify) if d.template == "escalated"]
    staff = [d for d in deliveries(notify) if d.template == "staff_escalated"]
    assert len(resident) == 1 and resident[0].address == RESIDENT_MAIL and "已督办" in resident[0].subject
    assert [d.address for d in staff] == ["W-341323104214-G10-2@staff.songdaojia.local"] * 2
    assert staff[0].channel == "email" and TICKET in staff[0].subject and "村两委" in staff[0].subject
    assert "张伟" in staff[0].body and "10:00" in staff[0].body  # due 02:00 UTC is 10:00 in Beijing
    assert "超时未接单" in staff[0].body and "超时未办结" in staff[1].body

    notify.call("tell_escalated", escalated(2, "supervise"))
    assert [d.template for d in deliveries(notify)][-2:] == ["escalated", "staff_escalated"]
    supervisor = deliveries(notify)[-1]
    assert supervisor.address == "C-341323104214-1@staff.songdaojia.local" and "王村长" in supervisor.body
    assert "李桂兰" in supervisor.body  # who handles it, to be chased up


def test_staff_mail_follows_the_configured_address(tmp_path, clock):
    w = Worker(NotifyService, tmp_path, clock=clock, courier=Courier(),
               config={"STAFF_MAIL": "<subject>@gov.example.cn"})
    w.call("acknowledge", received())
    w.call("tell_escalated", escalated(3, "supervise", supervisor_id="C-341323"))
    assert deliveries(w)[-1].address == "C-341323@gov.example.cn"
    w.call("tell_escalated", escalated(3, "supervise", supervisor_id="evil@x.cn, other@y.cn"))
    assert templates(w) == ["ack", "escalated", "staff_escalated"]  # no address made of that


def test_on_sms_the_resident_hears_of_the_escalation_and_staff_are_skipped(tmp_path, clock, caplog):
    w = Worker(NotifyService, tmp_path, clock=clock, courier=Courier(SmsChannel("http://127.0.0.1:2580/sms")))
    w.call("acknowledge", received())
    w.call("tell_escalated", escalated(1, "reassign"))
    assert [(d.template, d.channel) for d in deliveries(w)] == [("ack", "sms"), ("escalated", "sms")]
    assert "staff are reached by email only" in caplog.text


def test_a_message_goes_by_the_first_channel_the_resident_has_an_address_for(tmp_path, clock):
    """CHANNELS sms,email: the resident (phone and email) gets an SMS, keeping both addresses for a fallback;
    staff are still written to by email; a resident with an email address only gets mail."""
    w = Worker(NotifyService, tmp_path, clock=clock,
               courier=Courier(SmsChannel("http://127.0.0.1:2580/sms"), EmailChannel("127.0.0.1", 2525, "s@localhost")))
    w.call("acknowledge", received())
    w.call("tell_escalated", escalated(1, "reassign"))
    ack, resident, staff = deliveries(w)
    assert [(d.template, d.channel) for d in (ack, resident, staff)] == [
        ("ack", "sms"), ("escalated", "sms"), ("staff_escalated", "email")]
    assert ack.address == "13812341234" and json.loads(ack.contact) == {"phone": "13812341234", "email": RESIDENT_MAIL}
    assert staff.contact is None  # staff: email only, nothing to fall back to

    no_phone = copy.deepcopy(intake_events.EXAMPLES["ticket_received"])
    no_phone["data"]["resident"]["phone"] = None
    w.call("acknowledge", envelope("ticket_received", no_phone["data"], ticket="SDJ-261127-NOPHONE1"))
    assert [(d.channel, d.address) for d in deliveries(w) if d.ticket_id == "SDJ-261127-NOPHONE1"] == [
        ("email", RESIDENT_MAIL)]
