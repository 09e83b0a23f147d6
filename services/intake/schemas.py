"""What intake reads: submissions from outside systems, and dispatch's status events."""
from __future__ import annotations

import re

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates

from services.common.contacts import MAX_EMAIL, email_problem, normalise_phone, phone_problem
from .tickets import CHANNELS

VILLAGE_CODE = re.compile(r"^3413\d{8}$")


def _no_problem(check):
    def validator(value):
        problem = value is not None and check(value)
        if problem:
            raise ValidationError(problem)
    return validator


class Contact(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=50))
    phone = fields.String(load_default=None, allow_none=True, validate=_no_problem(phone_problem))
    email = fields.String(load_default=None, allow_none=True,
                          validate=[validate.Length(max=MAX_EMAIL), _no_problem(email_problem)])
    locale = fields.String(load_default="zh-CN", validate=validate.OneOf(["zh-CN", "en"]))
    vulnerable = fields.Boolean(load_default=False)

    @post_load
    def one_form_per_number(self, data, **_):
        return {**data, "phone": normalise_phone(data["phone"])}


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
    attributes = fields.Dict(keys=fields.String(validate=validate.Length(max=50)), values=fields.Raw(),
                             load_default=dict)

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
    assignee_id = fields.String(load_default=None, allow_none=True)
    assignee_name = fields.String(load_default=None, allow_none=True)
    # on ticket_routed: the path to the grid, the village 4th (only city and county at a county centre)
    area_path = fields.List(fields.String(), load_default=None)
    resolve_due_at = fields.AwareDateTime(load_default=None)  # on ticket_accepted: Open311's expected time


class Withdrawal(Schema):
    """A resident withdrawing their request (撤单), as a gateway (SMS, WeChat, mail) forwards it. The body
    names the ticket as the path does: the signature covers the body only, so a signed call is for one ticket."""
    ticket_no = fields.String(required=True, validate=validate.Length(min=1, max=40),
                              metadata={"description": "the ticket withdrawn: the one the path names"})
    sender = fields.String(required=True, validate=validate.Length(min=1, max=254),
                           metadata={"description": "who asked, as the gateway saw it: phone or email"})
    reason = fields.String(load_default="", validate=validate.Length(max=500),
                           metadata={"description": "why, in the resident's words (optional)"})


class ContactQuery(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))


class ContactReadsQuery(Schema):
    ticket_no = fields.String(validate=validate.Length(max=32))
    staff_id = fields.String(validate=validate.Length(max=50))
    granted = fields.Boolean()
    since = fields.AwareDateTime()
    until = fields.AwareDateTime()
    limit = fields.Integer(load_default=200, validate=validate.Range(1, 1000))


# --- answers (documented in /openapi.json) ---

class StaffTicketView(Schema):
    ticket_no = fields.String(required=True)
    status = fields.String(required=True)
    status_note = fields.String(required=True, metadata={"description": "the status in residents' words "
                                                                        "(Open311's status_notes)"})
    merged_into = fields.String(required=True, allow_none=True)
    category = fields.String(required=True)
    channel = fields.String(required=True)
    village_code = fields.String(required=True, allow_none=True)
    village_name = fields.String(required=True, allow_none=True, metadata={
        "description": "county, town and village (灵璧县杨疃镇杨东村委会); None: not placed in a village yet"})
    county_code = fields.String(required=True)
    grid_code = fields.String(required=True, allow_none=True)
    address = fields.String(required=True, metadata={"description": "as given ('' once erased by retention)"})
    description = fields.String(required=True, metadata={"description": "the request in the resident's words"})
    attributes = fields.Dict(keys=fields.String(), values=fields.Raw(), required=True, metadata={
        "description": "the category's attributes as the request gave them (checked), by attribute code"})
    submitted_at = fields.String(required=True)
    received_at = fields.String(required=True)
    assignee_name = fields.String(required=True, allow_none=True)
    resident_phone = fields.String(required=True, allow_none=True)
    resident_name = fields.String(required=True, allow_none=True)


class WithdrawalView(Schema):
    ticket_no = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "cancellation requested"})


class ContactView(Schema):
    ticket_no = fields.String(required=True)
    name = fields.String(required=True, allow_none=True)
    phone = fields.String(required=True, allow_none=True)
    email = fields.String(required=True, allow_none=True)


class ContactReadView(Schema):
    ticket_no = fields.String(required=True)
    staff_id = fields.String(required=True)
    role = fields.String(required=True)
    reason = fields.String(required=True)
    read_at = fields.String(required=True)
    granted = fields.Boolean(required=True)
    refusal = fields.String(required=True, allow_none=True)
    area_code = fields.String(required=True)
