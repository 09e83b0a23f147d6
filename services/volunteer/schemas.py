"""What volunteer reads: tolerant event readers and HTTP forms."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from services.common.contacts import normalise_phone, phone_problem

from .matching import SKILLS
from .people import KINDS, minutes


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


# --- the register of people (people.py) --------------------------------------------------------

VILLAGE_CODE = r"^3413\d{8}$"
HH_MM = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"


def _phone_ok(value):
    if value is not None and (problem := phone_problem(value)):
        raise ValidationError(problem)


class WindowIn(Schema):
    days = fields.List(fields.Integer(strict=True, validate=validate.Range(1, 7)), required=True,
                       validate=validate.Length(min=1, max=7), metadata={"description": "1 Monday … 7 Sunday"})
    from_ = fields.String(required=True, data_key="from", validate=validate.Regexp(HH_MM, error="HH:MM"))
    to = fields.String(required=True, validate=validate.Regexp(HH_MM, error="HH:MM"))

    @validates_schema
    def from_before_to(self, data, **_):
        if "from_" in data and "to" in data and minutes(data["from_"]) >= minutes(data["to"]):
            raise ValidationError("a window ends after it begins (China time; 24:00 for midnight)", "to")

    @post_load
    def as_stored(self, data, **_):
        return {"days": data["days"], "from": data["from_"], "to": data["to"]}


class PersonIn(Schema):
    """A volunteer of a team, or a neighbour offering help (亲帮亲/邻帮邻). An unknown field is an error."""
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    phone = fields.String(load_default=None, allow_none=True, validate=_phone_ok)
    kind = fields.String(load_default="volunteer", validate=validate.OneOf(KINDS))
    village_code = fields.String(required=True, validate=validate.Regexp(
        VILLAGE_CODE, error="must be a 12-digit Suzhou (3413…) village code"))
    skills = fields.List(fields.String(validate=validate.OneOf(SKILLS)), required=True,
                         validate=validate.Length(min=1, max=len(SKILLS)))
    max_load = fields.Integer(load_default=2, strict=True, validate=validate.Range(1, 10))
    team_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=20))
    party_member = fields.Boolean(load_default=False)
    offers = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500),
                           metadata={"description": "a neighbour's help offered, in their words"})
    availability = fields.List(fields.Nested(WindowIn), load_default=list, validate=validate.Length(max=14))

    @post_load
    def one_form_per_number(self, data, **_):
        return {**data, "phone": normalise_phone(data["phone"])} if data.get("phone") else data


class PersonEdit(PersonIn):
    """Any of the fields; a volunteer moves village by being registered in the new one."""
    class Meta:
        exclude = ("village_code", "kind")

    name = fields.String(validate=validate.Length(min=1, max=50))
    skills = fields.List(fields.String(validate=validate.OneOf(SKILLS)), validate=validate.Length(min=1, max=10))
    max_load = fields.Integer(strict=True, validate=validate.Range(1, 10))
    team_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=20))
    party_member = fields.Boolean()
    offers = fields.String(allow_none=True, validate=validate.Length(max=500))
    availability = fields.List(fields.Nested(WindowIn), validate=validate.Length(max=14))
    phone = fields.String(allow_none=True, validate=_phone_ok)


class TeamIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    village_code = fields.String(required=True, validate=validate.Regexp(
        VILLAGE_CODE, error="must be a 12-digit Suzhou (3413…) village code"))
    leader_id = fields.String(required=True, validate=validate.Length(min=1, max=20))
    members = fields.List(fields.String(validate=validate.Length(min=1, max=20)), load_default=list,
                          validate=validate.Length(max=500), metadata={"description": "volunteers joining it"})


class TeamEdit(Schema):
    name = fields.String(validate=validate.Length(min=1, max=50))
    leader_id = fields.String(validate=validate.Length(min=1, max=20),
                              metadata={"description": "one of the team's active members"})
