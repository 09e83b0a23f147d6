"""Events outreach publishes on `outreach.events`: strict schemas and one example each. The envelope's
`ticket_id` names what the event is about: here a visit.

A need found on a visit is not an event here: it goes to intake's front door as a submission
(register.submission), and the ticket's own events follow from there."""
from __future__ import annotations

from marshmallow import fields

from services.common.envelope import Strict, example_envelope


class _AboutAVisit(Strict):
    household_id = fields.String(required=True)
    day = fields.Date(required=True)
    kind = fields.String(required=True)
    village_code = fields.String(required=True)
    grid_code = fields.String(required=True)
    level = fields.String(required=True)  # who answers for it now: household_head, grid_worker, village
    responsible_id = fields.String(required=True)


class VisitEscalated(_AboutAVisit):
    """Not done by its deadline: it climbed a rung (or, at the village, stays there overdue: due_at null)."""
    from_level = fields.String(required=True)
    missed_at = fields.AwareDateTime(required=True)
    due_at = fields.AwareDateTime(required=True, allow_none=True)


class VisitRecorded(_AboutAVisit):
    done_by = fields.String(required=True)
    contact_made = fields.Boolean(required=True)
    on_time = fields.Boolean(required=True)
    needs_found = fields.Integer(required=True)


SCHEMAS = {"visit_escalated": VisitEscalated(), "visit_recorded": VisitRecorded()}

_VISIT = {"household_id": "HH0000421", "day": "2026-12-02", "kind": "phone", "village_code": "341323104214",
          "grid_code": "341323104214-G10"}


def _example(event: str, data: dict) -> dict:
    return example_envelope(event, data, "5b1e0c55-45a4-4f0c-a1c6-5b0f0a1e2d34", "2026-12-02T02:00:01+00:00",
                            ticket_id="V20261202-00000421")


EXAMPLES = {
    "visit_escalated": _example("visit_escalated", {**_VISIT, "level": "grid_worker",
        "responsible_id": "W-341323104214-G10-1", "from_level": "household_head",
        "missed_at": "2026-12-02T02:00:00+00:00", "due_at": "2026-12-02T06:00:01+00:00"}),
    "visit_recorded": _example("visit_recorded", {**_VISIT, "level": "household_head",
        "responsible_id": "H0000042", "done_by": "H0000042", "contact_made": True, "on_time": True,
        "needs_found": 1}),
}
