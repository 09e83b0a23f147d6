"""Events dispatch publishes on `dispatch.events` (and offers on `dispatch.work`): strict schemas, examples."""
from __future__ import annotations

from marshmallow import fields, validate

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
    satisfied = fields.Boolean(required=True, allow_none=True)  # None: the resident was never reached
    comment = fields.String(required=True)
    how = fields.String(required=True, validate=validate.OneOf(("resident", "follow_up_call", "unreached")))


class TicketReopened(Lifecycle):
    comment = fields.String(required=True)
    reopen_count = fields.Integer(required=True)


WHAT = ("accept", "resolve", "decision", "task", "reopened")


class TicketDueSoon(Lifecycle):
    what = fields.String(required=True, validate=validate.OneOf(WHAT))
    due_at = fields.String(required=True)
    level = fields.Integer(required=True)


class TicketOverdue(TicketDueSoon):
    pass


class TicketEscalated(Lifecycle):
    what = fields.String(required=True, validate=validate.OneOf(WHAT))
    mode = fields.String(required=True, validate=validate.OneOf(("reassign", "supervise")))
    level = fields.Integer(required=True)
    level_name = fields.String(required=True)
    supervisor_id = fields.String(required=True, allow_none=True)
    supervisor_name = fields.String(required=True, allow_none=True)
    due_at = fields.String(required=True, allow_none=True)
    work_key = fields.String(required=True)


class TicketReturned(Lifecycle):
    reason = fields.String(required=True)
    returned_by = fields.String(required=True, allow_none=True)
    work_key = fields.String(required=True)
    reassign_due_at = fields.String(required=True)


class TicketFiled(Lifecycle):
    department = fields.String(required=True)
    note = fields.String(required=True)
    work_key = fields.String(required=True)
    decision_due_at = fields.String(required=True)


class TicketDecided(Lifecycle):
    department = fields.String(required=True)
    approved = fields.Boolean(required=True)
    decision = fields.String(required=True)
    resolve_due_at = fields.String(required=True, allow_none=True)


class TicketCancelled(Lifecycle):
    by = fields.String(required=True, validate=validate.OneOf(("resident", "dispatcher")))
    reason = fields.String(required=True)


class TaskAssigned(Strict):
    task_id = fields.Integer(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(("callback", "follow_up", "reach")))
    task_assignee_id = fields.String(required=True)
    task_assignee_name = fields.String(required=True)
    due_at = fields.String(required=True)
    work_key = fields.String(required=True)


class TaskDone(Strict):
    task_id = fields.Integer(required=True)
    kind = fields.String(required=True)
    outcome = fields.String(required=True)
    note = fields.String(required=True)


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
    "ticket_due_soon": TicketDueSoon(), "ticket_overdue": TicketOverdue(), "ticket_escalated": TicketEscalated(),
    "ticket_returned": TicketReturned(), "ticket_filed": TicketFiled(), "ticket_decided": TicketDecided(),
    "ticket_cancelled": TicketCancelled(), "task_assigned": TaskAssigned(), "task_done": TaskDone(),
}

# where a ticket stands, every change of it: also sent a relay round at a time in one message, for a mirror that
# follows them all (common/digests.py; intake's status mirror), besides each event on its own
DIGESTS = {"lifecycle": ("ticket_routed", "ticket_accepted", "ticket_in_progress", "ticket_resolved", "ticket_closed",
                         "ticket_reopened", "ticket_escalated", "ticket_returned", "ticket_cancelled", "ticket_filed",
                         "ticket_decided")}


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
        "satisfied": True, "comment": "满意", "how": "resident"}),
    "ticket_reopened": _example("ticket_reopened", {"state": "reopened", "ticket_version": 6, **_WHO,
        "comment": "还没送到", "reopen_count": 1}),
    "volunteer_requested": _example("volunteer_requested", {"skill": "delivery",
        "village_code": "341323104214", "town_code": "341323104", "priority": 1, "exclude": []}),
    "ticket_due_soon": _example("ticket_due_soon", {"state": "offered", "ticket_version": 2, **_WHO,
        "what": "accept", "due_at": "2026-11-27T01:10:01+00:00", "level": 0}),
    "ticket_overdue": _example("ticket_overdue", {"state": "offered", "ticket_version": 2, **_WHO,
        "what": "accept", "due_at": "2026-11-27T01:10:01+00:00", "level": 0}),
    "ticket_escalated": _example("ticket_escalated", {"state": "escalated", "ticket_version": 3, **_WHO,
        "what": "accept", "mode": "reassign", "level": 1, "level_name": "village", "supervisor_id": None,
        "supervisor_name": None, "due_at": None,
        "work_key": "area.3413.341323.341323104.341323104214.duty"}),
    "ticket_returned": _example("ticket_returned", {"state": "returned", "ticket_version": 4,
        "assignee_id": "town-341323104", "assignee_name": "冯庙镇调度", "reason": "不属于本网格，应由供电所处理",
        "returned_by": "W-341323104214-G10-1", "work_key": "area.3413.341323.341323104.desk",
        "reassign_due_at": "2026-11-27T02:00:00+00:00"}),
    "ticket_filed": _example("ticket_filed", {"state": "filed", "ticket_version": 5,
        "assignee_id": "P-341323104214", "assignee_name": "周明华", "department": "hrss",
        "note": "材料已齐，报县人社局", "work_key": "dept.hrss.341323",
        "decision_due_at": "2026-11-30T01:00:00+00:00"}),
    "ticket_decided": _example("ticket_decided", {"state": "in_progress", "ticket_version": 6,
        "assignee_id": "P-341323104214", "assignee_name": "周明华", "department": "hrss", "approved": True,
        "decision": "准予参保登记", "resolve_due_at": "2026-12-03T01:00:00+00:00"}),
    "ticket_cancelled": _example("ticket_cancelled", {"state": "cancelled", "ticket_version": 3, **_WHO,
        "by": "resident", "reason": "已自行解决"}),
    "task_assigned": _example("task_assigned", {"task_id": 17, "kind": "callback",
        "task_assignee_id": "W-341323104214-G10-1", "task_assignee_name": "李桂兰",
        "due_at": "2026-11-27T01:05:01+00:00",
        "work_key": "area.3413.341323.341323104.341323104214.341323104214-G10"}),
    "task_done": _example("task_done", {"task_id": 17, "kind": "callback", "outcome": "need_confirmed",
        "note": "需要米和油各一份"}),
}
