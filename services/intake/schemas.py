"""What intake reads: submissions from outside systems, and dispatch's status events."""
from __future__ import annotations

import re

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

CHANNELS = ("hotline", "wechat", "miniprogram", "counter", "grid_visit", "night_talk")
VILLAGE_CODE = re.compile(r"^3413\d{8}$")
PHONE = re.compile(r"^\+?[\d\- ]{7,20}$")


class Contact(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(load_default=None, validate=validate.Length(max=50))
    phone = fields.String(load_default=None, validate=validate.Regexp(PHONE, error="not a phone number"))
    email = fields.Email(load_default=None)
    locale = fields.String(load_default="zh-CN", validate=validate.OneOf(["zh-CN", "en"]))
    vulnerable = fields.Boolean(load_default=False)


class Submission(Schema):
    """A request as an outside system (hotline, WeChat, counter, grid app) publishes it."""
    class Meta:
        unknown = EXCLUDE

    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    category = fields.String(required=True, validate=validate.Length(min=1, max=10))
    village_code = fields.String(required=True, validate=validate.Regexp(
        VILLAGE_CODE, error="must be a 12-digit Suzhou (3413…) village code"))
    address = fields.String(load_default="", validate=validate.Length(max=200))
    description = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    submitted_at = fields.AwareDateTime(required=True)
    resident = fields.Nested(Contact, required=True)
    attributes = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict)

    @validates("resident")
    def has_a_way_to_reach(self, value, **_):
        if not (value.get("phone") or value.get("email")):
            raise ValidationError("needs a phone or an email to acknowledge the resident")


class TicketStatusChange(Schema):
    """Tolerant reader of dispatch's lifecycle events, for status look-ups."""
    class Meta:
        unknown = EXCLUDE

    state = fields.String(required=True)
    ticket_version = fields.Integer(required=True)
    assignee_name = fields.String(load_default=None, allow_none=True)
    # on ticket_routed: the path to the grid, the village 4th (only city and county at a county centre)
    area_path = fields.List(fields.String(), load_default=None)
    resolve_due_at = fields.AwareDateTime(load_default=None)  # on ticket_accepted: Open311's expected time
