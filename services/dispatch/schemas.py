"""What dispatch reads: tolerant event readers and the HTTP forms of the console API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.common.envelope import Tolerant

from .lifecycle import ALLOWED


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


# --- the console API: who acts is the token's subject, never a field here ---

class PlaceForm(Schema):
    village_code = fields.String(required=True, validate=validate.Regexp(
        r"^3413\d{8}$", error="must be a 12-digit Suzhou (3413…) village code"))


class ResolveForm(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class QueueQuery(Schema):
    state = fields.String(load_default="offered", validate=validate.OneOf(sorted(ALLOWED)))


class CaseView(Schema):
    """A case as staff see it (answers only: documents what the API returns)."""
    ticket_id = fields.String(required=True)
    state = fields.String(required=True)
    version = fields.Integer(required=True)
    category_code = fields.String(required=True)
    department = fields.String(required=True)
    priority = fields.Integer(required=True)
    county_code = fields.String(required=True)
    village_code = fields.String(required=True, allow_none=True)
    grid_code = fields.String(required=True, allow_none=True)
    assignee_id = fields.String(required=True, allow_none=True)
    assignee_name = fields.String(required=True, allow_none=True)
    volunteer_id = fields.String(required=True, allow_none=True)
    reopen_count = fields.Integer(required=True)
    accept_due_at = fields.String(required=True, allow_none=True)
    resolve_due_at = fields.String(required=True, allow_none=True)


class HistoryView(Schema):
    at = fields.String(required=True)
    event = fields.String(required=True)
    state = fields.String(required=True)
    actor = fields.String(required=True, allow_none=True)
    note = fields.String(required=True)


class TicketView(CaseView):
    history = fields.List(fields.Nested(HistoryView), required=True)


class LedgerView(Schema):
    area = fields.String(required=True)
    total = fields.Integer(required=True)
    by_state = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    by_county = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    by_category = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    reopened = fields.Integer(required=True)
    unplaced = fields.Integer(required=True)
