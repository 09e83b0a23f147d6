"""What notify reads: tolerant event readers and the resident-reply form."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

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


class TicketMergedIn(Tolerant):
    ticket_no = fields.String(required=True)
    resident = fields.Nested(ResidentIn, required=True)
    category = fields.Nested(CategoryIn, required=True)


class TicketResolvedIn(Tolerant):
    assignee_name = fields.String(load_default=None, allow_none=True)


class Reply(Schema):
    """A resident's answer to the follow-up, as the SMS gateway or WeChat back end forwards it."""
    ticket_id = fields.String(required=True, validate=validate.Length(min=1, max=32))
    answer = fields.String(load_default=None, validate=validate.OneOf(["1", "2"]))
    satisfied = fields.Boolean(load_default=None)
    comment = fields.String(load_default="", validate=validate.Length(max=1000))

    @validates_schema
    def one_answer(self, data, **_):
        if data.get("answer") is None and data.get("satisfied") is None:
            raise ValidationError("give answer ('1' satisfied, '2' not) or satisfied (true/false)",
                                  "answer")
