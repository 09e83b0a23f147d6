"""The resident-facing templates render in every locale and fail loudly."""
from __future__ import annotations

import re

import pytest

from services.notify.templates import DEFAULT_LOCALE, STAFF_TEMPLATES, TEMPLATES, render, resolve_locale

TICKET = "SDJ-20240501-0007"
FIELDS = {"ticket_no": TICKET, "category": "路灯不亮", "survey_code": "K7Q2MXPA23"}
NAMES = ("ack", "merged", "survey", "survey_reminder", "closed", "reopened", "cancelled", "escalated",
         "staff_escalated")
# how residents' mail systems (and songdaojia/loop.py) recognise a survey they can answer
ANSWERABLE = re.compile(r"请您评价|how did we do")
CODE = re.compile(r"\[(?:评价码|code) ([0-9A-Z]+)\]")


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
@pytest.mark.parametrize("name", NAMES)
def test_each_template_renders_with_the_ticket_number(name: str, locale: str) -> None:
    subject, body = render(name, locale, **FIELDS)

    assert TICKET in subject
    assert TICKET in body
    assert "{" not in subject + body, "an unfilled placeholder leaked into the text"


def test_every_template_has_both_locales() -> None:
    assert {name: sorted(versions) for name, versions in TEMPLATES.items()} == {
        name: ["en", "zh-CN"] for name in NAMES
    }
    assert STAFF_TEMPLATES <= set(TEMPLATES)


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_the_reminder_is_answerable_as_the_survey_with_the_same_code(locale: str) -> None:
    survey, _ = render("survey", locale, ticket_no=TICKET, survey_code="K7Q2MXPA23")
    subject, body = render("survey_reminder", locale, ticket_no=TICKET, survey_code="K7Q2MXPA23")

    assert ANSWERABLE.search(survey) and ANSWERABLE.search(subject)
    assert CODE.search(subject).group(1) == CODE.search(survey).group(1) == "K7Q2MXPA23"
    assert TICKET in subject and "K7Q2MXPA23" in body and subject != survey


@pytest.mark.parametrize(("how", "zh", "en"), [
    ("resident", "感谢您的评价", "Thank you for your answer"),
    ("follow_up_call", "回访员已电话回访", "follow-up call"),
    ("unreached", "未能联系上您", "could not"),
    (None, "感谢您的反馈", "Thank you for your feedback"),
])
def test_the_closing_message_depends_on_how_the_ticket_was_closed(how: str | None, zh: str, en: str) -> None:
    _, chinese = render("closed", "zh-CN", ticket_no=TICKET, how=how)
    _, english = render("closed", "en", ticket_no=TICKET, how=how)

    assert zh in chinese and en in english
    assert ("12345" in chinese and "12345" in english) == (how == "unreached")  # how to reopen it


def test_a_cancellation_confirms_the_resident_s_withdrawal_or_gives_the_dispatcher_s_reason() -> None:
    _, withdrawn = render("cancelled", "zh-CN", ticket_no=TICKET, by="resident")
    _, cancelled = render("cancelled", "zh-CN", ticket_no=TICKET, by="dispatcher", cancel_reason="重复诉求")
    _, english = render("cancelled", "en", ticket_no=TICKET, by="dispatcher", cancel_reason="a duplicate")

    assert "根据您的申请" in withdrawn and "原因" not in withdrawn
    assert "原因：重复诉求" in cancelled and "根据您的申请" not in cancelled
    assert "The reason: a duplicate." in english


def test_staff_hear_why_what_to_do_and_by_when() -> None:
    subject, body = render("staff_escalated", "zh-CN", ticket_no=TICKET, level_name="town", what="resolve",
                           mode="supervise", staff_name="王镇长", assignee_name="李桂兰", due_local="2026-11-27 10:00")
    english, _ = render("staff_escalated", "en", ticket_no=TICKET, level_name="county")

    assert TICKET in subject and "镇（街道）" in subject and "county centre" in english
    assert body.startswith("王镇长，您好！")
    assert "超时未办结" in body and "督促" in body and "李桂兰" in body and "2026-11-27 10:00" in body


def test_ack_subject_is_the_chinese_default() -> None:
    subject, body = render("ack", ticket_no=TICKET, category="噪音扰民")

    assert DEFAULT_LOCALE == "zh-CN"
    assert subject == f"【送到家】您的诉求已受理 工单号 {TICKET}"
    assert "噪音扰民" in body


def test_ack_mentions_the_contact_deadline_only_when_given() -> None:
    _, with_deadline = render("ack", "zh-CN", accept_within=30, **FIELDS)
    _, without_deadline = render("ack", "zh-CN", **FIELDS)

    assert "30 分钟内" in with_deadline
    assert "分钟" not in without_deadline


def test_survey_asks_for_1_or_2_and_names_the_resolver_when_given() -> None:
    subject, body = render("survey", "en", ticket_no=TICKET, resolved_by="volunteer Wang", survey_code="K7Q2MXPA23")
    _, anonymous = render("survey", "zh-CN", ticket_no=TICKET, survey_code="K7Q2MXPA23")

    assert "K7Q2MXPA23" in subject and "K7Q2MXPA23" in body and "K7Q2MXPA23" in anonymous  # the answer's proof
    assert "1 = satisfied" in body and "2 = not satisfied" in body
    assert "volunteer Wang" in body
    assert "1 = 满意" in anonymous and "2 = 不满意" in anonymous
    assert "本次由" not in anonymous


def test_resident_name_personalises_the_greeting() -> None:
    _, named = render("closed", "zh-CN", ticket_no=TICKET, resident_name="李阿姨")
    _, unnamed = render("closed", "zh-CN", ticket_no=TICKET)

    assert named.startswith("李阿姨，您好！")
    assert unnamed.startswith("您好！")


@pytest.mark.parametrize(
    ("asked", "expected"), [("zh_CN", "zh-CN"), ("zh", "zh-CN"), ("EN-us", "en"), (None, "zh-CN")]
)
def test_locale_spellings_resolve_to_a_supported_locale(asked: str | None, expected: str) -> None:
    assert resolve_locale(asked) == expected


def test_missing_field_is_named() -> None:
    with pytest.raises(KeyError, match="ticket_no"):
        render("closed", "zh-CN", category="路灯不亮")


def test_none_counts_as_missing() -> None:
    with pytest.raises(KeyError, match="category"):
        render("ack", "en", ticket_no=TICKET, category=None)


def test_unknown_template_is_named() -> None:
    with pytest.raises(KeyError, match="no_such_template"):
        render("no_such_template", "zh-CN", **FIELDS)


def test_unknown_locale_is_named() -> None:
    with pytest.raises(KeyError, match="fr-FR"):
        render("ack", "fr-FR", **FIELDS)
