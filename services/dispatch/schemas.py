"""What dispatch reads: tolerant event readers and the HTTP forms of the console API."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from services.common.envelope import Tolerant

from .ledger import LedgerRow
from .lifecycle import ALLOWED, OPEN_STATES
from .supervision import CALL_OUTCOMES


class CategoryIn(Tolerant):
    code = fields.String(required=True)
    department = fields.String(required=True)
    accept_minutes = fields.Integer(required=True)
    resolve_hours = fields.Integer(required=True)
    follow_up_hours = fields.Integer(required=True)
    volunteer_skill = fields.String(load_default=None, allow_none=True)
    resolve_minutes = fields.Integer(load_default=None, allow_none=True)  # None: resolve_hours × 60
    proxy = fields.Boolean(load_default=False)


class ResidentIn(Tolerant):
    vulnerable = fields.Boolean(load_default=False)


class TicketReceivedIn(Tolerant):
    category = fields.Nested(CategoryIn, required=True)
    channel = fields.String(load_default="")
    resident = fields.Nested(ResidentIn, load_default=lambda: {"vulnerable": False})
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


class CancelledIn(Tolerant):
    """intake's ticket_cancelled: the resident withdrew (proved by a gateway-signed call)."""
    by = fields.String(load_default="resident")
    reason = fields.String(load_default="")


class SurveyUnansweredIn(Tolerant):
    round = fields.Integer(required=True)


class NotifiedIn(Tolerant):
    template = fields.String(required=True)
    delivered_at = fields.AwareDateTime(required=True)


class NotificationFailedIn(Tolerant):
    """notify's notification_failed: a message reached its recipient on none of its channels. The fields
    after `attempts` came later: an older notify does not send them."""
    template = fields.String(required=True)
    channel = fields.String(load_default="")
    reason = fields.String(load_default="")
    attempts = fields.Integer(load_default=0)
    channels_tried = fields.List(fields.String(), load_default=list)
    message_id = fields.String(load_default=None, allow_none=True)
    recipient = fields.String(load_default=None, allow_none=True)  # resident, reporter, staff (None: older notify)


# --- the console API: who acts is the token's subject, never a field here ---

class PlaceForm(Schema):
    village_code = fields.String(required=True, validate=validate.Regexp(
        r"^3413\d{8}$", error="must be a 12-digit Suzhou (3413…) village code"))


class ResolveForm(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=2000))


def _reason():
    return fields.String(required=True, validate=validate.Length(min=1, max=500,
                                                                 error="say why, in at most 500 characters"))


class ReturnForm(Schema):
    reason = _reason()


class CancelForm(Schema):
    reason = _reason()


class ReassignForm(Schema):
    """To a named worker of a grid (assignee_id) or to a grid's worker on duty (grid_code)."""
    grid_code = fields.String(load_default=None, validate=validate.Regexp(
        r"^3413\d{8}-G\d{2,3}$", error="must be a grid code such as 341323104214-G01"))
    assignee_id = fields.String(load_default=None, validate=validate.Regexp(
        r"^W-3413\d{8}-G\d{2,3}-\d$", error="must be a grid worker's id such as W-341323104214-G01-1"))
    reason = _reason()

    @validates_schema
    def one_target(self, data, **kwargs):
        if (data.get("grid_code") is None) == (data.get("assignee_id") is None):
            raise ValidationError("give either grid_code or assignee_id", "grid_code")


class TransferForm(Schema):
    department = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z]{2,20}$", error="must be a department code of the catalogue (e.g. power, hrss)"))
    reason = _reason()


class FileForm(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class DecideForm(Schema):
    approved = fields.Boolean(required=True)
    decision = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class TaskDoneForm(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(
        sorted({o for outcomes in CALL_OUTCOMES.values() for o in outcomes})))
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class TasksQuery(Schema):
    state = fields.String(load_default="open", validate=validate.OneOf(("open", "done", "all")))
    area = fields.String(load_default=None)


class TaskView(Schema):
    task_id = fields.Integer(required=True)
    ticket_id = fields.String(required=True)
    kind = fields.String(required=True)
    assignee_id = fields.String(required=True)
    assignee_name = fields.String(required=True)
    level = fields.Integer(required=True)
    due_at = fields.String(required=True)
    overdue = fields.Boolean(required=True)
    done_at = fields.String(required=True, allow_none=True)
    outcome = fields.String(required=True, allow_none=True)
    note = fields.String(required=True)


OPEN = "open"  # in a queue's `state`: every state but closed and cancelled


def queue_states(text: str) -> list[str]:
    """A queue's `state`: one or more states of lifecycle.ALLOWED, comma-separated, or `open` (every state
    but closed and cancelled); the states it names, sorted. ValidationError names what is not a state."""
    named = {name.strip() for name in text.split(",")}
    unknown = sorted(name for name in named if name != OPEN and name not in ALLOWED)
    if unknown:
        raise ValidationError(f"{', '.join(repr(name[:40]) for name in unknown[:5])}: not a state; give states among "
                              f"{', '.join(sorted(ALLOWED))}, comma-separated, or {OPEN!r}")
    return sorted(set().union(*(OPEN_STATES if name == OPEN else {name} for name in named)))


class QueueQuery(Schema):
    """`GET /queues/<area>?state=offered,returned&overdue=true&missed=true&escalated=true`: all optional."""
    state = fields.String(load_default="offered", validate=queue_states, metadata={
        "description": "one or more states, comma-separated (e.g. offered,returned), or 'open': every state but "
                       "closed and cancelled; default: offered"})
    overdue = fields.Boolean(load_default=False, metadata={
        "description": "true: only cases overdue now: at a step whose deadline has passed (offered or returned: "
                       "accept_due_at; accepted or in_progress: resolve_due_at; filed: decision_due_at), as the "
                       "ledger counts overdue_now; default false: no filter"})
    missed = fields.Boolean(load_default=False, metadata={
        "description": "true: only cases that missed a deadline at least once (overdue_count > 0: on the record "
                       "for good, whether or not a deadline is past now); default false: no filter"})
    escalated = fields.Boolean(load_default=False, metadata={
        "description": "true: only cases that climbed the escalation ladder at least once (escalation_count > 0: "
                       "an offer reassigned up, or work given a supervisor, 督办), as the ledger counts escalated; "
                       "with state=open, those still open; default false: no filter"})

    @post_load
    def named_states(self, data, **kwargs):
        return {**data, "states": queue_states(data["state"])}


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
    village_name = fields.String(required=True, allow_none=True,
                                 metadata={"description": "None: not placed in a village yet"})
    town_name = fields.String(required=True, allow_none=True,
                              metadata={"description": "None: not placed in a village yet"})
    address = fields.String(required=True, metadata={"description": "as the resident gave it ('' once erased)"})
    received_at = fields.String(required=True)
    grid_code = fields.String(required=True, allow_none=True)
    assignee_id = fields.String(required=True, allow_none=True)
    assignee_name = fields.String(required=True, allow_none=True)
    volunteer_id = fields.String(required=True, allow_none=True)
    reopen_count = fields.Integer(required=True)
    accept_due_at = fields.String(required=True, allow_none=True)
    resolve_due_at = fields.String(required=True, allow_none=True)
    decision_due_at = fields.String(required=True, allow_none=True)
    handling = fields.String(required=True)
    level = fields.Integer(required=True)
    supervisor_id = fields.String(required=True, allow_none=True)
    supervisor_name = fields.String(required=True, allow_none=True)
    channel = fields.String(required=True)
    overdue_count = fields.Integer(required=True)
    escalation_count = fields.Integer(required=True)
    return_count = fields.Integer(required=True)
    overdue = fields.Boolean(required=True, metadata={
        "description": "overdue now: the deadline of the step it is at has passed (the queue's overdue=true)"})


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
    level = fields.String(required=True)
    period = fields.String(required=True, allow_none=True)
    rows = fields.List(fields.Nested(LedgerRow), required=True)
    totals = fields.Nested(LedgerRow, required=True)
    total = fields.Integer(required=True)
    by_state = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    by_county = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    by_category = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    reopened = fields.Integer(required=True)
    unplaced = fields.Integer(required=True)
