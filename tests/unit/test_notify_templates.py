"""The resident-facing templates render in every locale and fail loudly."""
from __future__ import annotations

import pytest

from services.notify.templates import DEFAULT_LOCALE, TEMPLATES, render, resolve_locale

TICKET = "SDJ-20240501-0007"
FIELDS = {"ticket_no": TICKET, "category": "路灯不亮", "survey_code": "K7Q2MXPA23"}


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
@pytest.mark.parametrize("name", ["ack", "merged", "survey", "closed", "reopened"])
def test_each_template_renders_with_the_ticket_number(name: str, locale: str) -> None:
    subject, body = render(name, locale, **FIELDS)

    assert TICKET in subject
    assert TICKET in body
    assert "{" not in subject + body, "an unfilled placeholder leaked into the text"


def test_every_template_has_both_locales() -> None:
    assert {name: sorted(versions) for name, versions in TEMPLATES.items()} == {
        name: ["en", "zh-CN"] for name in ("ack", "merged", "survey", "closed", "reopened")
    }


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
