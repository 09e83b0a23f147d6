"""What intake knows of a ticket's progress: a mirror of dispatch's lifecycle events. Pure rules.

Residents ask intake where their request is (Open311, the staff view); dispatch owns the lifecycle
and tells it through its events. `apply_status` takes a ticket (any object with the attributes of
`models.Ticket`) and one event's data as `schemas.TicketStatusChange` reads it, and changes the
ticket. Events arrive in any order: the version dispatch gives each change decides, an older one
changes nothing, and a ticket that ended (closed or cancelled) stays ended. No nameko, no SQLAlchemy.
"""
from __future__ import annotations

from datetime import datetime

# what a resident asking "where is my request?" needs; offers follow routing at once
LIFECYCLE_EVENTS = ("ticket_routed", "ticket_accepted", "ticket_in_progress", "ticket_resolved", "ticket_closed",
                    "ticket_reopened", "ticket_escalated", "ticket_returned", "ticket_cancelled", "ticket_filed",
                    "ticket_decided")
# what apply_status may change: the mirror's columns of a ticket
MIRRORED = ("village_code", "grid_code", "status", "status_version", "assignee_id", "assignee_name", "expected_at",
            "closed_at", "updated_at")
ENDED = ("closed", "cancelled")  # final: nothing moves a ticket out of these; retention counts from then
DONE = ("resolved", "followed_up") + ENDED  # the work is done (or given up): a resident can no longer withdraw


def ended(status: str) -> bool:
    return status in ENDED


def apply_status(ticket, event_name: str, change: dict, occurred_at: datetime) -> bool:
    """Follow one of dispatch's lifecycle events; True when the ticket's status changed."""
    path = change.get("area_path") or ()
    if ticket.village_code is None and len(path) >= 4:  # the county's dispatch centre placed it
        ticket.village_code = path[3]
    if change["ticket_version"] <= (ticket.status_version or 0):
        return False  # older than what we know: arrival order is not event order
    if ended(ticket.status):
        return False  # closed and cancelled are final: nothing later reopens the mirror
    if event_name == "ticket_routed":
        ticket.grid_code = path[4] if len(path) >= 5 else None
    ticket.status, ticket.status_version = change["state"], change["ticket_version"]
    ticket.assignee_id = change.get("assignee_id") or ticket.assignee_id
    ticket.assignee_name = change.get("assignee_name") or ticket.assignee_name
    ticket.expected_at = change.get("resolve_due_at") or ticket.expected_at
    ticket.closed_at = occurred_at if ended(change["state"]) else None
    ticket.updated_at = occurred_at
    return True
