"""What dispatch reads: tolerant event readers and the HTTP forms of the console API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.common.envelope import Tolerant


class CategoryIn(Tolerant):
    code = fields.String(required=True)
    department = fields.String(required=True)
    accept_minutes = fields.Integer(required=True)
    resolve_hours = fields.Integer(required=True)
    follow_up_hours = fields.Integer(required=True)
    volunteer_skill = fields.String(load_default=None, allow_none=True)


class TicketReceivedIn(Tolerant):
    category = fields.Nested(CategoryIn, required=True)
    priority = fields.Integer(required=True)
    village_code = fields.String(required=True, allow_none=True)  # None: a map point, placed by the county
    county_code = fields.String(load_default=None, allow_none=True)
    address = fields.String(load_default="")
    received_at = fields.AwareDateTime(required=True)


class FeedbackIn(Tolerant):
    satisfied = fields.Boolean(required=True)
    comment = fields.String(load_default="")


class VolunteerOfferedIn(Tolerant):
    volunteer_id = fields.String(required=True)
    volunteer_name = fields.String(load_default="")
    team_id = fields.String(load_default="")


class VolunteerAnsweredIn(Tolerant):
    volunteer_id = fields.String(required=True)


class MatchFailedIn(Tolerant):
    reason = fields.String(load_default="")


class WorkerForm(Schema):
    worker_id = fields.String(required=True, validate=validate.Length(min=1, max=40))


class PlaceForm(Schema):
    staff_id = fields.String(required=True, validate=validate.Length(min=1, max=40))
    village_code = fields.String(required=True, validate=validate.Regexp(
        r"^3413\d{8}$", error="must be a 12-digit Suzhou (3413…) village code"))


class ResolveForm(WorkerForm):
    note = fields.String(load_default="", validate=validate.Length(max=2000))
