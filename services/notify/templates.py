"""Resident-facing message templates (zh-CN by default, en as an alternative).

Everything below is a plain `str.format` string so wording can be edited
without touching code. A body may contain *fragment* placeholders (see
FRAGMENTS): each fragment is filled in when all the fields it mentions were
given, and falls back to its alternative text otherwise. That is how optional
details such as "who resolved it" appear only when known.

A body may also contain *choice* placeholders (see CHOICES): the value of one
field picks the text, e.g. how a ticket was closed picks what the closing
message says.

Fields used by the templates:
    ticket_no       工单号, e.g. "SDJ-20240501-0007"        (all templates)
    category        category name, already in the resident's language (ack; staff_escalated, optional)
    accept_within   minutes until first contact              (ack, optional)
    resolved_by     who handled the ticket                   (survey, optional)
    survey_code     the code an answer must carry            (survey, survey_reminder)
    resident_name   how to address the resident              (all resident templates, optional)
    how             resident, follow_up_call, unreached      (closed, optional)
    by              resident, dispatcher                     (cancelled, optional)
    cancel_reason   why a dispatcher cancelled               (cancelled, optional)
    level_name      who supervises now: grid, village, town, county, in words (TERMS)
                                                             (escalated, staff_escalated; optional)
    what            accept, resolve, decision, task, reopened (staff_escalated, optional)
    mode            reassign, supervise                      (staff_escalated, optional)
    staff_name      the staff member written to              (staff_escalated, optional)
    assignee_name   who handles the ticket                   (staff_escalated, optional)
    due_local       the new deadline, Beijing time           (staff_escalated, optional)

Staff templates (STAFF_TEMPLATES) are written to staff, not to the resident.
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
    # the same round, the same code: an answer to the reminder counts as an answer to the survey.
    # The subject keeps the survey's markers (请您评价 / how did we do, [评价码 …] / [code …]).
    "survey_reminder": {
        "zh-CN": {
            "subject": "【送到家】温馨提醒：工单 {ticket_no} 已办结，请您评价 [评价码 {survey_code}]",
            "body": (
                "{greeting}\n\n"
                "您的工单 {ticket_no} 已办结，我们还没有收到您的评价。\n\n"
                "请直接回复数字，对本次服务进行评价：\n"
                "  1 = 满意\n"
                "  2 = 不满意\n\n"
                "评价码：{survey_code}（仅用于本次评价，请勿告诉他人）\n\n"
                "如仍未收到您的回复，村里的回访员将电话联系您。谢谢！\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Reminder: ticket {ticket_no} resolved - how did we do? [code {survey_code}]",
            "body": (
                "{greeting}\n\n"
                "Your ticket {ticket_no} has been resolved, and we have not heard from you yet.\n\n"
                "Please reply with a single digit to rate our service:\n"
                "  1 = satisfied\n"
                "  2 = not satisfied\n\n"
                "Your answer code: {survey_code} (for this answer only; do not share it)\n\n"
                "If we do not hear from you, someone from your village will call you. Thank you!\n\n"
                + _SIGNATURE["en"]
            ),
        },
    },
    "closed": {
        "zh-CN": {
            "subject": "【送到家】工单 {ticket_no} 已关闭",
            "body": (
                "{greeting}\n\n"
                "您的工单 {ticket_no} 已关闭。{closed_note}\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Ticket {ticket_no} closed",
            "body": (
                "{greeting}\n\n"
                "Your ticket {ticket_no} is now closed. {closed_note}\n\n"
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
    "cancelled": {
        "zh-CN": {
            "subject": "【送到家】工单 {ticket_no} 已撤销",
            "body": (
                "{greeting}\n\n"
                "{cancelled_note}\n\n"
                "如有需要，欢迎随时拨打 12345 热线或重新提交诉求。\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Ticket {ticket_no} cancelled",
            "body": (
                "{greeting}\n\n"
                "{cancelled_note}\n\n"
                "Should you need us, call the 12345 hotline or send a new request at any time.\n\n"
                + _SIGNATURE["en"]
            ),
        },
    },
    "escalated": {
        "zh-CN": {
            "subject": "【送到家】您的诉求已督办 工单 {ticket_no}",
            "body": (
                "{greeting}\n\n"
                "您的工单 {ticket_no} 已列入督办{level_note}，"
                "我们将加快办理，并尽快与您联系。给您带来的不便，敬请谅解。\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Your request is being chased up - ticket {ticket_no}",
            "body": (
                "{greeting}\n\n"
                "Your ticket {ticket_no} is now being chased up{level_note}. "
                "We will speed up its handling and be in touch soon. We apologise "
                "for the delay.\n\n"
                + _SIGNATURE["en"]
            ),
        },
    },
    "staff_escalated": {
        "zh-CN": {
            "subject": "【送到家】督办通知：工单 {ticket_no}{level_suffix}",
            "body": (
                "{staff_greeting}\n\n"
                "工单 {ticket_no}{category_note}{escalation_reason}，已升级督办{level_note}。\n"
                "{staff_task}{assignee_note}{due_note}\n\n"
                "请登录工作台查看并处理。\n\n"
                + _SIGNATURE["zh-CN"]
            ),
        },
        "en": {
            "subject": "[Songdaojia] Escalated: ticket {ticket_no}{level_suffix}",
            "body": (
                "{staff_greeting}\n\n"
                "Ticket {ticket_no}{category_note} {escalation_reason} and has been escalated{level_note}.\n"
                "{staff_task}{assignee_note}{due_note}\n\n"
                "Please open your work queue to handle it.\n\n"
                + _SIGNATURE["en"]
            ),
        },
    },
}

STAFF_TEMPLATES = frozenset({"staff_escalated"})  # to staff: no resident_notified for these
REPORTER_TEMPLATES = frozenset({"merged"})  # to whoever reported a repeat: not the ticket's own resident


def recipient_of(template: str) -> str:
    """Who a template is written to: `resident` (the ticket's own), `reporter` (of a repeat report), `staff`."""
    if template in STAFF_TEMPLATES:
        return "staff"
    return "reporter" if template in REPORTER_TEMPLATES else "resident"

# locale -> fragment name -> (text when its fields are given, fallback text)
FRAGMENTS: dict[str, dict[str, tuple[str, str]]] = {
    "zh-CN": {
        "greeting": ("{resident_name}，您好！", "您好！"),
        "accept_within_note": ("工作人员将在 {accept_within} 分钟内与您联系。", ""),
        "resolved_by_note": ("本次由{resolved_by}为您处理。", ""),
        "level_note": ("（督办层级：{level_name}）", ""),
        "level_suffix": ("（{level_name}）", ""),
        "category_note": ("（{category}）", ""),
        "staff_greeting": ("{staff_name}，您好！", "您好！"),
        "assignee_note": ("当前承办人：{assignee_name}。", ""),
        "due_note": ("请于 {due_local}（北京时间）前办结。", ""),
        "cancel_reason_note": ("原因：{cancel_reason}。", ""),
    },
    "en": {
        "greeting": ("Dear {resident_name},", "Hello,"),
        "accept_within_note": (" Someone will contact you within {accept_within} minutes.", ""),
        "resolved_by_note": (" It was handled by {resolved_by}.", ""),
        "level_note": (" ({level_name})", ""),
        "level_suffix": (" ({level_name})", ""),
        "category_note": (" ({category})", ""),
        "staff_greeting": ("Dear {staff_name},", "Hello,"),
        "assignee_note": (" It is handled by {assignee_name}.", ""),
        "due_note": (" It is due by {due_local} (Beijing time).", ""),
        "cancel_reason_note": (" The reason: {cancel_reason}.", ""),
    },
}

# locale -> field -> {a code other services send: how it reads}; other values are shown as they are
TERMS: dict[str, dict[str, dict[str, str]]] = {
    "zh-CN": {"level_name": {"grid": "网格", "village": "村两委", "town": "镇（街道）", "county": "县级指挥中心"}},
    "en": {"level_name": {"grid": "grid", "village": "village committee", "town": "town", "county": "county centre"}},
}

# locale -> choice name -> (the field that chooses, {its value: text}, text for any other value or none).
# A text may use fields and fragments.
CHOICES: dict[str, dict[str, tuple[str, dict[str, str], str]]] = {
    "zh-CN": {
        "closed_note": ("how", {
            "resident": "感谢您的评价与配合。如问题再次出现，欢迎随时与我们联系。",
            "follow_up_call": "回访员已电话回访，感谢您抽空接听与配合。如问题再次出现，欢迎随时与我们联系。",
            "unreached": "回访期间我们多次联系均未能联系上您，因此先行关闭。如问题尚未解决，"
                         "请拨打 12345 热线并告知工单号 {ticket_no}，我们将重新为您办理。",
        }, "感谢您的反馈与配合。如问题再次出现，欢迎随时与我们联系。"),
        "cancelled_note": ("by", {
            "resident": "根据您的申请，工单 {ticket_no} 已撤销，我们不再安排处理。",
            "dispatcher": "工单 {ticket_no} 已由工作人员撤销。{cancel_reason_note}",
        }, "工单 {ticket_no} 已撤销。{cancel_reason_note}"),
        "escalation_reason": ("what", {
            "accept": "超时未接单",
            "resolve": "超时未办结",
            "decision": "部门超时未答复",
            "task": "任务超时未完成",
            "reopened": "多次重新受理",
        }, "已超时"),
        "staff_task": ("mode", {
            "reassign": "该工单已改派给您，请尽快接单办理。",
            "supervise": "请您督促承办人尽快办理。",
        }, "请您跟进办理。"),
    },
    "en": {
        "closed_note": ("how", {
            "resident": "Thank you for your answer and your cooperation. If the problem comes back, "
                        "please contact us at any time.",
            "follow_up_call": "Thank you for taking our follow-up call. If the problem comes back, "
                              "please contact us at any time.",
            "unreached": "We tried several times to reach you for the follow-up and could not, so we "
                         "closed it. If the problem is not solved, call the 12345 hotline and quote ticket "
                         "{ticket_no}: we will reopen it.",
        }, "Thank you for your feedback and cooperation. If the problem comes back, please contact us "
           "at any time."),
        "cancelled_note": ("by", {
            "resident": "As you asked, ticket {ticket_no} has been withdrawn; nobody will be sent.",
            "dispatcher": "Ticket {ticket_no} has been cancelled by our staff.{cancel_reason_note}",
        }, "Ticket {ticket_no} has been cancelled.{cancel_reason_note}"),
        "escalation_reason": ("what", {
            "accept": "was not accepted in time",
            "resolve": "was not resolved in time",
            "decision": "had no decision from the department in time",
            "task": "has a task not done in time",
            "reopened": "was reopened too often",
        }, "is overdue"),
        "staff_task": ("mode", {
            "reassign": "It has been reassigned to you: please accept and handle it soon.",
            "supervise": "Please see that it is handled soon.",
        }, "Please follow it up."),
    },
}


def render(name: str, locale: str | None = DEFAULT_LOCALE, **fields: Any) -> tuple[str, str]:
    """Return (subject, body) of template `name` in `locale`, filled with `fields`.

    Raises KeyError for an unknown template or locale, or a missing field.
    Extra fields are ignored so callers can pass an event payload as is.
    """
    locale = resolve_locale(locale)
    template = _template(name, locale)
    terms = TERMS.get(locale, {})
    given = {key: terms.get(key, {}).get(value, value) if isinstance(value, str) else value
             for key, value in fields.items() if value is not None and value != ""}
    fragments = _fill_fragments(locale, given)
    fragments.update(_fill_choices(locale, {**given, **fragments}))
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


def _fill_choices(locale: str, values: dict[str, Any]) -> dict[str, str]:
    filled = {}
    for choice, (field, texts, otherwise) in CHOICES[locale].items():
        text = texts.get(str(values.get(field)), otherwise)
        needed = _field_names(text)
        filled[choice] = text.format(**values) if needed <= values.keys() else ""
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
