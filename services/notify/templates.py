"""Resident-facing message templates (zh-CN by default, en as an alternative).

Everything below is a plain `str.format` string so wording can be edited
without touching code. A body may contain *fragment* placeholders (see
FRAGMENTS): each fragment is filled in when all the fields it mentions were
given, and falls back to its alternative text otherwise. That is how optional
details such as "who resolved it" appear only when known.

Fields used by the templates:
    ticket_no       工单号, e.g. "SDJ-20240501-0007"        (all templates)
    category        category name, already in the resident's language (ack)
    accept_within   minutes until first contact              (ack, optional)
    resolved_by     who handled the ticket                   (survey, optional)
    resident_name   how to address the resident              (all, optional)
"""
from __future__ import annotations

from string import Formatter
from typing import Any

DEFAULT_LOCALE = "zh-CN"

_SIGNATURE = {
    "zh-CN": "送到家社区服务平台",
    "en": "The Songdaojia community service team",
}

# template name -> locale -> {"subject": ..., "body": ...}
TEMPLATES: dict[str, dict[str, dict[str, str]]] = {
    "ack": {
        "zh-CN": {
            "subject": "【送到家】您的诉求已受理 工单号 {ticket_no}",
            "body": (
                "{greeting}\n\n"
                "您反映的“{category}”诉求我们已经收到并受理，工单号为 {ticket_no}。"
                "{accept_within_note}\n\n"
                "如需补充情况，请回复本消息并注明工单号。感谢您对社区工作的信任与支持！\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Your request has been received - ticket {ticket_no}",
            "body": (
                "{greeting}\n\n"
                "We have received your request about \"{category}\". "
                "Your ticket number is {ticket_no}.{accept_within_note}\n\n"
                "If you would like to add anything, please reply to this message "
                "and quote the ticket number. Thank you for your trust.\n\n"
                + _SIGNATURE["en"]
            ),
        },
    },
    "merged": {
        "zh-CN": {
            "subject": "【送到家】您的诉求已并入工单 {ticket_no}",
            "body": (
                "{greeting}\n\n"
                "经核实，您反映的问题与已受理的工单 {ticket_no} 属于同一事项，"
                "我们已将您的诉求并入该工单统一处理，您无需重复提交。"
                "后续进展将以该工单号通知您。\n\n"
                "感谢您的理解与支持！\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Your request was merged into ticket {ticket_no}",
            "body": (
                "{greeting}\n\n"
                "The issue you reported is already being handled under ticket "
                "{ticket_no}, so we have merged your request into it. There is no "
                "need to report it again; we will keep you updated under that "
                "ticket number.\n\n"
                "Thank you for your understanding.\n\n"
                + _SIGNATURE["en"]
            ),
        },
    },
    "survey": {
        "zh-CN": {
            "subject": "【送到家】工单 {ticket_no} 已办结，请您评价 [评价码 {survey_code}]",
            "body": (
                "{greeting}\n\n"
                "您的工单 {ticket_no} 已办结。{resolved_by_note}\n\n"
                "请直接回复数字，对本次服务进行评价：\n"
                "  1 = 满意\n"
                "  2 = 不满意\n\n"
                "评价码：{survey_code}（仅用于本次评价，请勿告诉他人）\n\n"
                "您的评价将帮助我们改进工作，谢谢！\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Ticket {ticket_no} resolved - how did we do? [code {survey_code}]",
            "body": (
                "{greeting}\n\n"
                "Your ticket {ticket_no} has been resolved.{resolved_by_note}\n\n"
                "Please reply with a single digit to rate our service:\n"
                "  1 = satisfied\n"
                "  2 = not satisfied\n\n"
                "Your answer code: {survey_code} (for this answer only; do not share it)\n\n"
                "Your feedback helps us improve. Thank you!\n\n"
                + _SIGNATURE["en"]
            ),
        },
    },
    "closed": {
        "zh-CN": {
            "subject": "【送到家】工单 {ticket_no} 已关闭",
            "body": (
                "{greeting}\n\n"
                "您的工单 {ticket_no} 已关闭，感谢您的反馈与配合。"
                "如问题再次出现，欢迎随时与我们联系。\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Ticket {ticket_no} closed",
            "body": (
                "{greeting}\n\n"
                "Your ticket {ticket_no} is now closed. Thank you for your feedback "
                "and cooperation. If the problem comes back, please contact us at "
                "any time.\n\n"
                + _SIGNATURE["en"]
            ),
        },
    },
    "reopened": {
        "zh-CN": {
            "subject": "【送到家】工单 {ticket_no} 已重新受理",
            "body": (
                "{greeting}\n\n"
                "根据您的反馈，我们已重新开启工单 {ticket_no}，"
                "将安排工作人员再次处理，并尽快与您联系。"
                "给您带来的不便，敬请谅解。\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Ticket {ticket_no} reopened",
            "body": (
                "{greeting}\n\n"
                "Following your feedback we have reopened ticket {ticket_no} and "
                "will handle it again; someone will be in touch soon. We apologise "
                "for the inconvenience.\n\n"
                + _SIGNATURE["en"]
            ),
        },
    },
}

# locale -> fragment name -> (text when its fields are given, fallback text)
FRAGMENTS: dict[str, dict[str, tuple[str, str]]] = {
    "zh-CN": {
        "greeting": ("{resident_name}，您好！", "您好！"),
        "accept_within_note": ("工作人员将在 {accept_within} 分钟内与您联系。", ""),
        "resolved_by_note": ("本次由{resolved_by}为您处理。", ""),
    },
    "en": {
        "greeting": ("Dear {resident_name},", "Hello,"),
        "accept_within_note": (" Someone will contact you within {accept_within} minutes.", ""),
        "resolved_by_note": (" It was handled by {resolved_by}.", ""),
    },
}


def render(name: str, locale: str | None = DEFAULT_LOCALE, **fields: Any) -> tuple[str, str]:
    """Return (subject, body) of template `name` in `locale`, filled with `fields`.

    Raises KeyError for an unknown template or locale, or a missing field.
    Extra fields are ignored so callers can pass an event payload as is.
    """
    locale = resolve_locale(locale)
    template = _template(name, locale)
    given = {key: value for key, value in fields.items() if value is not None and value != ""}
    fragments = _fill_fragments(locale, given)
    _require_fields(name, locale, template, given, fragments)
    values = {**given, **fragments}
    return template["subject"].format(**values), template["body"].format(**values)


def resolve_locale(locale: str | None) -> str:
    """Map "zh_CN", "zh", "en-US", None ... onto a supported locale."""
    if not locale:
        return DEFAULT_LOCALE
    wanted = locale.replace("_", "-").lower()
    for known in FRAGMENTS:
        if known.lower() == wanted:
            return known
    # A bare language ("zh") or a regional variant ("en-GB") falls back to
    # the supported locale of the same language.
    language = wanted.split("-")[0]
    for known in FRAGMENTS:
        if known.lower().split("-")[0] == language:
            return known
    raise KeyError(f"unknown locale {locale!r}; supported: {', '.join(FRAGMENTS)}")


def _template(name: str, locale: str) -> dict[str, str]:
    if name not in TEMPLATES:
        raise KeyError(f"unknown template {name!r}; known templates: {', '.join(TEMPLATES)}")
    try:
        return TEMPLATES[name][locale]
    except KeyError:
        raise KeyError(f"template {name!r} has no {locale!r} version") from None


def _fill_fragments(locale: str, given: dict[str, Any]) -> dict[str, str]:
    filled = {}
    for fragment, (with_fields, fallback) in FRAGMENTS[locale].items():
        needed = _field_names(with_fields)
        filled[fragment] = with_fields.format(**given) if needed <= given.keys() else fallback
    return filled


def _require_fields(
    name: str, locale: str, template: dict[str, str], given: dict[str, Any], fragments: dict[str, str]
) -> None:
    needed = _field_names(template["subject"]) | _field_names(template["body"])
    missing = sorted(needed - given.keys() - fragments.keys())
    if missing:
        names = ", ".join(repr(field) for field in missing)
        raise KeyError(f"template {name!r} ({locale}) is missing field {names}")


def _field_names(format_string: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(format_string) if field}
