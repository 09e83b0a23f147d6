"""The ledger, recomputed from the tickets' history alone: evidence that `ledger_of` counts what happened.

`ledger_of` counts columns of `cases` that the lifecycle keeps up to date as things happen
(`accepted_on_time`, `return_count`, …). This module ignores those columns: it reads the history rows
(event, at, state, actor, data) of each ticket and judges every count again, by the definitions in
`services/dispatch/ledger.py`'s docstring, with plain Python (no SQL, nothing imported from dispatch).
If the two agree, the columns were kept by the rules the ledger promises.

What the history does not hold is what the ticket arrived with: when it was received and where, its
department and how it is handled. Those come in `arrivals`, {ticket_id: {"received_at", "county_code",
"village_code", "department", "handling"}}, as intake's `ticket_received` said them.

From the history:
- the village: the arrival's, or the first `ticket_routed` whose `area_path` reaches a village (placing);
- the grid: the last `grid_code` a `ticket_routed` named (escalating to a village cadre or a desk keeps it);
- the worker: `assignee_id`/`assignee_name` of the last entry that carries them (dispatch's own events);
- the department: that of the last `ticket_filed`, else the arrival's;
- the state: `state` of the last entry;
- acknowledged: the first `resident_notified` with template "ack" (its `delivered_at`, else its `at`);
- reassigned: a `ticket_routed` by a person (actor not "dispatch": the service itself routes on receipt,
  after a reopen and when an escalation reassigns) that is not a placing (the ticket had a village before);
- the deadline in force for a step: the latest of its events: accept — `ticket_offered.accept_due_at`,
  `ticket_returned.reassign_due_at` (the desk's time to reassign), `ticket_escalated(what=accept).due_at`;
  resolve — `ticket_accepted.resolve_due_at`, `ticket_escalated(what=resolve).due_at`,
  `ticket_decided.resolve_due_at` (a department's time does not count against the village);
  decision — `ticket_filed.decision_due_at`, `ticket_escalated(what=decision).due_at`.
"""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8))
COUNTS = ("received", "acknowledged_10s", "accepted", "accepted_on_time", "resolved", "resolved_on_time",
          "overdue_now", "escalated", "returned", "reassigned", "reopened", "cancelled", "closed",
          "answered", "satisfied", "proxy_handled", "found_at_door")
DEFAULT_LEVEL = {4: "county", 6: "town", 9: "village", 12: "grid"}


def recompute_from_history(history_rows, arrivals: dict, *, area: str, level: str | None = None,
                           period: str | None = None, now: datetime) -> dict:
    """{"rows": [...], "totals": {...}} as `ledger_of` answers them, from history rows (objects or dicts
    with ticket_id, at, event, state, actor, data) and the arrivals."""
    by_ticket = defaultdict(list)
    for n, row in enumerate(history_rows):
        entry = _entry(row)
        by_ticket[entry["ticket_id"]].append((entry["at"], entry.get("id") or 0, n, entry))
    level = level or ("worker" if "-" in area else DEFAULT_LEVEL.get(len(area), "county"))
    groups = defaultdict(list)
    for ticket_id, arrival in arrivals.items():
        history = [e for *_, e in sorted(by_ticket.get(ticket_id, []), key=lambda t: t[:3])]
        facts = judge(arrival, history, now)
        if _inside(facts, area) and _in_period(arrival["received_at"], period):
            groups[facts[level]].append(facts)
    rows = [_row(key, facts, level) for key, facts in sorted(groups.items())]
    totals = _row("total", [f for facts in groups.values() for f in facts], None)
    return {"level": level, "rows": rows, "totals": totals}


def judge(arrival: dict, history: list[dict], now: datetime) -> dict:
    """One ticket's counts (0/1 each) and groups, from its arrival and its history in order."""
    received_at = _aware(arrival["received_at"])
    events = [e["event"] for e in history]

    def first(name, where=lambda e: True, start=0, stop=None):
        for i in range(start, len(history) if stop is None else stop):
            if history[i]["event"] == name and where(history[i]):
                return i
        return None

    def last_before(name, stop):
        found = [i for i in range(stop) if history[i]["event"] == name]
        return found[-1] if found else None

    acked = first("resident_notified", lambda e: e["data"].get("template") == "ack")
    acknowledged = acked is not None and (
        _aware(history[acked]["data"].get("delivered_at") or history[acked]["at"]) - received_at
        <= timedelta(seconds=10))

    accepted_at = first("ticket_accepted")
    accepted_on_time = None
    if accepted_at is not None:
        missed = first("ticket_overdue", lambda e: e["data"].get("what") == "accept", stop=accepted_at) is not None
        offered = last_before("ticket_offered", accepted_at)
        due = _aware(history[offered]["data"]["accept_due_at"]) if offered is not None else None
        accepted_on_time = not missed and due is not None and history[accepted_at]["at"] <= due

    resolved_at = first("ticket_resolved")
    resolved_on_time = None
    if resolved_at is not None:
        accepted = last_before("ticket_accepted", resolved_at)
        resolved_on_time = False
        if accepted is not None:
            due = _aware(history[accepted]["data"]["resolve_due_at"])
            for e in history[accepted + 1:resolved_at]:
                if e["event"] == "ticket_escalated" and e["data"].get("what") == "resolve" and e["data"].get("due_at"):
                    due = _aware(e["data"]["due_at"])
                elif e["event"] == "ticket_decided" and e["data"].get("resolve_due_at"):
                    due = _aware(e["data"]["resolve_due_at"])  # a department's time is not the village's
            late = any(e["event"] == "ticket_overdue" and e["data"].get("what") in ("resolve", "decision")
                       for e in history[accepted + 1:resolved_at])
            resolved_on_time = not late and history[resolved_at]["at"] <= due

    state = history[-1]["state"] if history else "received"
    deadline = {"accept": None, "resolve": None, "decision": None}
    for e in history:
        data = e["data"]
        if e["event"] == "ticket_offered":
            deadline["accept"] = data.get("accept_due_at")
        elif e["event"] == "ticket_returned":
            deadline["accept"] = data.get("reassign_due_at")  # the desk must reassign it in time
        elif e["event"] in ("ticket_accepted", "ticket_decided"):
            deadline["resolve"] = data.get("resolve_due_at") or deadline["resolve"]
        elif e["event"] == "ticket_filed":
            deadline["decision"] = data.get("decision_due_at")
        elif e["event"] == "ticket_escalated" and data.get("due_at") and data.get("what") in deadline:
            deadline[data["what"]] = data["due_at"]
    step = {"offered": "accept", "returned": "accept", "accepted": "resolve", "in_progress": "resolve",
            "filed": "decision"}.get(state)
    overdue_now = step is not None and deadline[step] is not None and _aware(deadline[step]) < now

    village = arrival.get("village_code")
    grid = assignee_id = assignee_name = None
    reassigned = routed_before = False
    department = arrival["department"]
    for e in history:
        data = e["data"]
        if e["event"] == "ticket_routed":
            path = data.get("area_path") or []
            placing = village is None and len(path) >= 4
            if routed_before and not placing and e.get("actor") not in (None, "dispatch"):
                reassigned = True
            if placing:
                village = path[3]
            grid, routed_before = data.get("grid_code") or grid, True
        if e["event"] == "ticket_filed":
            department = data["department"]
        if "assignee_id" in data:
            assignee_id, assignee_name = data["assignee_id"], data.get("assignee_name")

    satisfied = None
    for e in history:
        if e["event"] == "ticket_closed" and e["data"].get("satisfied") is not None:
            satisfied = e["data"]["satisfied"]
        elif e["event"] == "ticket_reopened":
            satisfied = False  # an unsatisfied answer reopens
    return {
        "county": arrival["county_code"],
        "town": village[:9] if village else "unplaced",
        "village": village or "unplaced",
        "grid": grid or "none",
        "worker": assignee_id or "none",
        "assignee_name": assignee_name,
        "department": department,
        "day": received_at.astimezone(CHINA).date().isoformat(),
        "area_codes": (arrival["county_code"], village, grid),
        "received": 1,
        "acknowledged_10s": int(acknowledged),
        "accepted": int(accepted_on_time is not None),
        "accepted_on_time": int(bool(accepted_on_time)),
        "resolved": int(resolved_on_time is not None),
        "resolved_on_time": int(bool(resolved_on_time)),
        "overdue_now": int(overdue_now),
        "escalated": int("ticket_escalated" in events),
        "returned": int("ticket_returned" in events),
        "reassigned": int(reassigned),
        "reopened": int("ticket_reopened" in events),
        "cancelled": int(state == "cancelled"),
        "closed": int(state == "closed"),
        "answered": int(satisfied is not None),
        "satisfied": int(satisfied is True),
        "proxy_handled": int(arrival["handling"] == "proxy" and resolved_at is not None),
        "found_at_door": int(arrival.get("channel") in ("grid_visit", "night_talk")),
    }


def _row(key: str, tickets: list[dict], level: str | None) -> dict:
    row = {"key": key, "name": ""}
    if level == "worker":
        row["name"] = next((t["assignee_name"] for t in tickets if t["assignee_name"]), "") or ""
    for count in COUNTS:
        row[count] = sum(t[count] for t in tickets)
    for rate, (count, base) in {"acknowledged_10s_rate": ("acknowledged_10s", "received"),
                                "accepted_on_time_rate": ("accepted_on_time", "accepted"),
                                "resolved_on_time_rate": ("resolved_on_time", "resolved"),
                                "satisfaction_rate": ("satisfied", "answered"),
                                "reopen_rate": ("reopened", "resolved"),
                                "found_at_door_rate": ("found_at_door", "received")}.items():
        row[rate] = round(row[count] / row[base], 4) if row[base] else None
    return row


def _inside(facts: dict, area: str) -> bool:
    county, village, grid = facts["area_codes"]
    if "-" in area:
        return grid == area
    if len(area) <= 6:
        return county.startswith(area)
    return village is not None and village.startswith(area)


def _in_period(received_at, period: str | None) -> bool:
    if period is None:
        return True
    local = _aware(received_at).astimezone(CHINA).date()
    if "W" in period.upper():
        year, week, _ = local.isocalendar()
        return f"{year:04d}-W{week:02d}" == period.upper()
    if period.count("-") == 2:
        return local.isoformat() == period
    return local.strftime("%Y-%m") == period


def _entry(row) -> dict:
    if not isinstance(row, dict):
        row = {name: getattr(row, name) for name in ("id", "ticket_id", "at", "event", "state", "actor", "data")}
    data = row.get("data") or {}
    return {**row, "at": _aware(row["at"]), "data": json.loads(data) if isinstance(data, str) else data}


def _aware(moment) -> datetime:
    """Times as stored (SQLite gives them back without a zone: they are UTC) or as ISO text."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
