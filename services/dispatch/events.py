"""Events dispatch publishes on `dispatch.events` (and offers on `dispatch.work`): strict schemas, examples."""
from __future__ import annotations

from marshmallow import fields

from services.common.envelope import Strict, example_envelope

WORK_EXCHANGE = "dispatch.work"  # offers, keyed by area: consoles bind their own subtree


class Lifecycle(Strict):
    state = fields.String(required=True)
    ticket_version = fields.Integer(required=True)
    assignee_id = fields.String(required=True, allow_none=True)
    assignee_name = fields.String(required=True, allow_none=True)


class TicketRouted(Lifecycle):
    grid_code = fields.String(required=True, allow_none=True)  # None: at the county's dispatch centre
    area_path = fields.List(fields.String(), required=True)


class TicketOffered(Lifecycle):
    grid_code = fields.String(required=True, allow_none=True)
    work_key = fields.String(required=True)
    accept_due_at = fields.String(required=True)
    priority = fields.Integer(required=True)
    category_code = fields.String(required=True)


class TicketAccepted(Lifecycle):
    resolve_due_at = fields.String(required=True)


class TicketInProgress(Lifecycle):
    pass


class TicketResolved(Lifecycle):
    note = fields.String(required=True)
    resolved_at = fields.String(required=True)
    follow_up_hours = fields.Integer(required=True)


class TicketClosed(Lifecycle):
    satisfied = fields.Boolean(required=True)
    comment = fields.String(required=True)


class TicketReopened(Lifecycle):
    comment = fields.String(required=True)
    reopen_count = fields.Integer(required=True)


class VolunteerRequested(Strict):
    skill = fields.String(required=True)
    village_code = fields.String(required=True)
    town_code = fields.String(required=True)
    priority = fields.Integer(required=True)
    exclude = fields.List(fields.String(), required=True)


SCHEMAS = {
    "ticket_routed": TicketRouted(), "ticket_offered": TicketOffered(),
    "ticket_accepted": TicketAccepted(), "ticket_in_progress": TicketInProgress(),
    "ticket_resolved": TicketResolved(),
    "ticket_closed": TicketClosed(), "ticket_reopened": TicketReopened(),
    "volunteer_requested": VolunteerRequested(),
}


def _example(event: str, data: dict) -> dict:
    return example_envelope(event, data, "0f5d2b8e-3c1a-4e47-9a8e-2d6b1c0e9f21", "2026-11-27T01:00:01+00:00")


_WHO = {"assignee_id": "W-341323104214-G10-1", "assignee_name": "李桂兰"}
EXAMPLES = {
    "ticket_routed": _example("ticket_routed", {"state": "routed", "ticket_version": 1, **_WHO,
        "grid_code": "341323104214-G10",
        "area_path": ["3413", "341323", "341323104", "341323104214", "341323104214-G10"]}),
    "ticket_offered": _example("ticket_offered", {"state": "offered", "ticket_version": 2, **_WHO,
        "grid_code": "341323104214-G10",
        "work_key": "area.3413.341323.341323104.341323104214.341323104214-G10",
        "accept_due_at": "2026-11-27T01:15:01+00:00", "priority": 1, "category_code": "801"}),
    "ticket_accepted": _example("ticket_accepted", {"state": "accepted", "ticket_version": 3, **_WHO,
        "resolve_due_at": "2026-11-27T05:00:00+00:00"}),
    "ticket_in_progress": _example("ticket_in_progress", {"state": "in_progress", "ticket_version": 4, **_WHO}),
    "ticket_resolved": _example("ticket_resolved", {"state": "resolved", "ticket_version": 4, **_WHO,
        "note": "已代购米面油送到家", "resolved_at": "2026-11-27T01:30:00+00:00", "follow_up_hours": 24}),
    "ticket_closed": _example("ticket_closed", {"state": "closed", "ticket_version": 6, **_WHO,
        "satisfied": True, "comment": "满意"}),
    "ticket_reopened": _example("ticket_reopened", {"state": "reopened", "ticket_version": 6, **_WHO,
        "comment": "还没送到", "reopen_count": 1}),
    "volunteer_requested": _example("volunteer_requested", {"skill": "delivery",
        "village_code": "341323104214", "town_code": "341323104", "priority": 1, "exclude": []}),
}
