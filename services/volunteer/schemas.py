"""What volunteer reads: tolerant event readers and HTTP forms."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate


class VolunteerRequestedIn(Schema):
    class Meta:
        unknown = EXCLUDE

    skill = fields.String(required=True)
    village_code = fields.String(required=True)
    town_code = fields.String(required=True)
    exclude = fields.List(fields.String(), load_default=list)


class AnswerForm(Schema):
    volunteer_id = fields.String(required=True, validate=validate.Length(min=1, max=20))
