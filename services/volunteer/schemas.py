"""What volunteer reads: tolerant event readers and HTTP forms."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields


class VolunteerRequestedIn(Schema):
    class Meta:
        unknown = EXCLUDE

    skill = fields.String(required=True)
    village_code = fields.String(required=True)
    town_code = fields.String(required=True)
    exclude = fields.List(fields.String(), load_default=list)


class OfferAnswerView(Schema):
    ticket_id = fields.String(required=True)
    volunteer_id = fields.String(required=True)
    state = fields.String(required=True)
    offered_to = fields.String(allow_none=True, metadata={"description": "on a decline: who is asked next"})


class VolunteerView(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    team_id = fields.String(required=True)
    village_code = fields.String(required=True)
    skills = fields.List(fields.String(), required=True)
    load = fields.Integer(required=True)
    max_load = fields.Integer(required=True)
    service_points = fields.Integer(required=True)
