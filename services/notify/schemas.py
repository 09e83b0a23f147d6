"""What notify reads: tolerant event readers and the resident-reply form."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.common.envelope import Tolerant


class ResidentIn(Tolerant):
    name = fields.String(load_default=None, allow_none=True)
    phone = fields.String(load_default=None, allow_none=True)
    email = fields.String(load_default=None, allow_none=True)
    locale = fields.String(load_default="zh-CN")


class CategoryIn(Tolerant):
    name_zh = fields.String(load_default="")
    name_en = fields.String(load_default="")
    accept_minutes = fields.Integer(load_default=None)


class TicketReceivedIn(Tolerant):
    resident = fields.Nested(ResidentIn, required=True)
    category = fields.Nested(CategoryIn, required=True)
    village_code = fields.String(load_default=None, allow_none=True)
    county_code = fields.String(load_default=None, allow_none=True)


class TicketMergedIn(Tolerant):
    ticket_no = fields.String(required=True)
    resident = fields.Nested(ResidentIn, required=True)
    category = fields.Nested(CategoryIn, required=True)


class LifecycleIn(Tolerant):
    """What every dispatch lifecycle event carries and notify reads: which version of the ticket it is."""
    ticket_version = fields.Integer(load_default=None, allow_none=True)
    assignee_id = fields.String(load_default=None, allow_none=True)
    assignee_name = fields.String(load_default=None, allow_none=True)


class TicketResolvedIn(LifecycleIn):
    follow_up_hours = fields.Float(load_default=24)  # the survey goes out this long after resolution
    resolved_at = fields.AwareDateTime(load_default=None, allow_none=True)


class TicketOutcomeIn(LifecycleIn):
    """ticket_closed and ticket_reopened (closed carries how and satisfied, nullable: no answer)."""
    how = fields.String(load_default=None, allow_none=True)  # resident, follow_up_call, unreached
    satisfied = fields.Boolean(load_default=None, allow_none=True)


class TicketCancelledIn(LifecycleIn):
    by = fields.String(load_default=None, allow_none=True)  # resident, dispatcher
    reason = fields.String(load_default="", allow_none=True)


class TicketEscalatedIn(LifecycleIn):
    what = fields.String(load_default=None, allow_none=True)  # accept, resolve, decision, task, reopened
    mode = fields.String(load_default=None, allow_none=True)  # reassign, supervise
    level = fields.Integer(required=True)
    level_name = fields.String(load_default=None, allow_none=True)  # grid, village, town, county
    supervisor_id = fields.String(load_default=None, allow_none=True)
    supervisor_name = fields.String(load_default=None, allow_none=True)
    due_at = fields.AwareDateTime(load_default=None, allow_none=True)


class Reply(Schema):
    """A resident's answer to the follow-up, as a gateway (SMS, WeChat, mail) forwards it."""
    ticket_id = fields.String(required=True, validate=validate.Length(min=1, max=32))
    survey_code = fields.String(required=True, validate=validate.Length(min=1, max=16),
                                metadata={"description": "the code sent with the survey"})
    sender = fields.String(required=True, validate=validate.Length(min=1, max=254),
                           metadata={"description": "who sent the answer, as the gateway saw it: phone or email"})
    answer = fields.String(required=True, validate=validate.OneOf(["1", "2"]),
                           metadata={"description": "1 satisfied, 2 not satisfied"})
    comment = fields.String(load_default="", validate=validate.Length(max=1000))


class ReplyView(Schema):
    ticket_id = fields.String(required=True)
    round = fields.Integer(required=True)
    satisfied = fields.Boolean(required=True)


class DeliveryView(Schema):
    template = fields.String(required=True)
    channel = fields.String(required=True)
    state = fields.String(required=True)
    attempts = fields.Integer(required=True)
    sent_at = fields.String(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    reference = fields.String(required=True, allow_none=True)
    answer = fields.String(required=True, allow_none=True)  # the peer's, when it took the message
