"""What outreach's APIs read and answer. A bad field is a 400 naming it (services/common/http.py)."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from services.common.contacts import email_problem, normalise_phone, phone_problem

from .register import CONTACT_BY, KEY_GROUPS, grid_problem, village_problem
from .schedules import EVERY, KINDS, MAX_DUE_MINUTES


def _no_problem(check):
    def validator(value):
        problem = value is not None and check(value)
        if problem:
            raise ValidationError(problem)
    return validator


def _phone(**kwargs):
    return fields.String(validate=_no_problem(phone_problem), **kwargs)


class _Strict(Schema):
    """An unknown field is an error: a misspelt field must not be dropped silently from the register."""


class HeadIn(_Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    phone = _phone(required=True)
    village_code = fields.String(required=True, validate=_no_problem(village_problem))
    party_member = fields.Boolean(load_default=False)

    @post_load
    def one_form_per_number(self, data, **_):
        return {**data, "phone": normalise_phone(data["phone"])} if "phone" in data else data


class HeadEdit(HeadIn):
    """Any of the fields; a head moves village by being registered in the new one."""
    class Meta:
        exclude = ("village_code",)

    name = fields.String(validate=validate.Length(min=1, max=50))
    phone = _phone()
    party_member = fields.Boolean()


class MemberIn(_Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    relation = fields.String(required=True, validate=validate.Length(min=1, max=20))
    born = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1900, 2100))
    key_groups = fields.List(fields.String(validate=validate.OneOf(list(KEY_GROUPS))), load_default=list)


class PlanIn(_Strict):
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    every_days = fields.Integer(required=True, strict=True, validate=validate.OneOf(EVERY))
    due_minutes = fields.Integer(required=True, strict=True, validate=validate.Range(1, MAX_DUE_MINUTES))
    starts_on = fields.Date(required=True)


class HouseholdIn(_Strict):
    village_code = fields.String(required=True, validate=_no_problem(village_problem))
    grid_code = fields.String(required=True, validate=validate.Length(max=20))
    address = fields.String(required=True, validate=validate.Length(min=1, max=200))
    phone = _phone(required=True)
    email = fields.String(load_default=None, allow_none=True, validate=_no_problem(email_problem))
    contact_by = fields.String(load_default="phone", validate=validate.OneOf(CONTACT_BY))
    key_groups = fields.List(fields.String(validate=validate.OneOf(list(KEY_GROUPS))), load_default=list)
    grid_worker_id = fields.String(required=True, validate=validate.Length(min=1, max=40))
    head_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=20))
    members = fields.List(fields.Nested(MemberIn), load_default=list, validate=validate.Length(max=30))
    plans = fields.List(fields.Nested(PlanIn), load_default=list, validate=validate.Length(max=5))

    @validates_schema
    def grid_in_village(self, data, **_):
        if "grid_code" in data:
            problem = grid_problem(data["grid_code"], data.get("village_code"))
            if problem:
                raise ValidationError(problem, "grid_code")
        if ("grid_code" in data) != ("village_code" in data):
            raise ValidationError("a household moves with its grid and its village together", "grid_code")

    @post_load
    def one_form_per_number(self, data, **_):
        return {**data, "phone": normalise_phone(data["phone"])} if "phone" in data else data


class HouseholdEdit(HouseholdIn):
    """Any of the fields but plans (added and stopped on their own); members, when given, replace the list."""
    class Meta:
        exclude = ("plans",)

    village_code = fields.String(validate=_no_problem(village_problem))
    grid_code = fields.String(validate=validate.Length(max=20))
    address = fields.String(validate=validate.Length(min=1, max=200))
    phone = _phone()
    email = fields.String(allow_none=True, validate=_no_problem(email_problem))
    contact_by = fields.String(validate=validate.OneOf(CONTACT_BY))
    key_groups = fields.List(fields.String(validate=validate.OneOf(list(KEY_GROUPS))))
    grid_worker_id = fields.String(validate=validate.Length(min=1, max=40))
    head_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=20))
    members = fields.List(fields.Nested(MemberIn), validate=validate.Length(max=30))


class NeedIn(_Strict):
    category = fields.String(required=True, validate=validate.Length(min=1, max=10),
                             metadata={"description": "a service category code of intake's catalogue"})
    description = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    attributes = fields.Dict(keys=fields.String(validate=validate.Length(max=50)), values=fields.Raw(),
                             load_default=dict, metadata={"description": "the category's attributes, as intake "
                                                          "takes them in a submission"})


class VisitRecordIn(_Strict):
    contact_made = fields.Boolean(required=True, metadata={"description": "false: nobody answered"})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    needs = fields.List(fields.Nested(NeedIn), load_default=list, validate=validate.Length(max=10))


class VisitsQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    area = fields.String(load_default=None, validate=validate.Length(max=20))
    state = fields.String(load_default="due", validate=validate.OneOf(["due", "done", "cancelled", "all"]))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500))


class IdView(Schema):
    id = fields.String(required=True)


class VisitView(Schema):
    id = fields.String()
    household_id = fields.String()
    day = fields.Date()
    kind = fields.String()
    level = fields.String()
    responsible_id = fields.String()
    state = fields.String()
    due_at = fields.DateTime(allow_none=True)
    missed = fields.Boolean()


class LedgerQuery(Schema):
    """`GET /ledger/visits?area=341323104&days=7&level=village`: every parameter optional."""
    class Meta:
        unknown = EXCLUDE

    area = fields.String(load_default=None, validate=validate.Regexp(r"^\d{4}(\d{2}(\d{3}(\d{3}(-G\d{2,3})?)?)?)?$",
                                                                    error="must be an area code inside yours"))
    level = fields.String(load_default=None, validate=validate.OneOf(["town", "village", "grid", "head"]))
    days = fields.Integer(load_default=7, validate=validate.Range(1, 92),
                          metadata={"description": "visits of the last N days, today included (China time)"})
    not_reached_days = fields.Integer(load_default=7, validate=validate.Range(1, 365),
                                      metadata={"description": "key households nobody reached in this many days"})


class ReceiptIn(Schema):
    """Tolerant reader of intake's `submission_receipt`: what became of a need sent to the front door."""
    class Meta:
        unknown = EXCLUDE

    message_id = fields.String(required=True)
    ticket_no = fields.String(load_default=None, allow_none=True)
    status = fields.String(required=True)
    reason = fields.String(load_default=None, allow_none=True)


class NeedsQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    area = fields.String(load_default=None, validate=validate.Regexp(r"^\d{4}(\d{2}(\d{3}(\d{3}(-G\d{2,3})?)?)?)?$",
                                                                    error="must be an area code inside yours"))
    days = fields.Integer(load_default=7, validate=validate.Range(1, 92))
    limit = fields.Integer(load_default=200, validate=validate.Range(1, 1000))


class ResidentIn(_Strict):
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=50))
    phone = _phone(load_default=None, allow_none=True)
    email = fields.String(load_default=None, allow_none=True, validate=_no_problem(email_problem))

    @validates_schema
    def reachable(self, data, **_):
        if not (data.get("phone") or data.get("email")):
            raise ValidationError("a phone or an email: the villager is told their request was received", "phone")

    @post_load
    def one_form_per_number(self, data, **_):
        return {**data, "phone": normalise_phone(data.get("phone"))}


class RaisedIn(NeedIn):
    """What was raised at a night talk: a villager's need (`resident` given) or a group's opinion (none)."""
    kind = fields.String(required=True, validate=validate.OneOf(["need", "opinion"]))
    resident = fields.Nested(ResidentIn, load_default=None, allow_none=True)

    @validates_schema
    def resident_for_a_need_only(self, data, **_):
        if data.get("kind") == "need" and not data.get("resident"):
            raise ValidationError("a need is a villager's: name how to reach them", "resident")
        if data.get("kind") == "opinion" and data.get("resident"):
            raise ValidationError("an opinion is the group's: it is answered to the village, not to one villager",
                                  "resident")


class NightTalkIn(_Strict):
    village_code = fields.String(required=True, validate=_no_problem(village_problem))
    held_on = fields.Date(required=True)
    host = fields.String(required=True, validate=validate.Length(min=1, max=50))
    attendance = fields.Integer(required=True, strict=True, validate=validate.Range(1, 10_000))
    village_phone = _phone(required=True, metadata={"description": "the village committee's: opinions are "
                                                                   "acknowledged and followed up there"})
    village_email = fields.String(load_default=None, allow_none=True, validate=_no_problem(email_problem))
    notes = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4000))
    raised = fields.List(fields.Nested(RaisedIn), required=True, validate=validate.Length(min=0, max=30))

    @post_load
    def one_form_per_number(self, data, **_):
        return {**data, "village_phone": normalise_phone(data["village_phone"])}
