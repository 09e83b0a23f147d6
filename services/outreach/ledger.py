"""The visits' ledger (走访台账): visits due, done and on time per town, village, grid or household head; needs
found per hundred visits; and the key households nobody has reached for N days (a list for the village cadre).

A visit is counted on its day (China calendar), in the place it is in now, for the person it was made for
(`assigned_to`: the household head, or the grid worker when the household had none). Cancelled visits (the
household left the register) are not counted. The counts:
- due: every visit of the days asked for; done: recorded (`done`, whoever recorded it);
- on_time: done by its first deadline; missed: its first deadline passed undone (it escalated);
- at_village: climbed to the village, the last rung; contact_made: done, and someone was reached;
- open_overdue: still open and past the deadline of its rung (or at the village with none left);
- needs_found: needs recorded on these visits (each became a request to intake).
Rates (None when the base is 0): done_rate (of due), on_time_rate (of due), needs_per_100 (needs per hundred
visits done). The share of tickets found by going to the door is dispatch's ledger's (by channel): not here.
Counted by the database (GROUP BY with sums of CASE), on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import and_, case, func, or_, select

from services.common.clock import as_utc

from .models import Household, Need, Visit
from .visits import VILLAGE

LEVELS = ("town", "village", "grid", "head")
COUNTS = ("due", "done", "on_time", "missed", "at_village", "contact_made", "open_overdue", "needs_found")
NOT_REACHED_LIST = 500  # households listed at most


def default_level(area: str) -> str:
    if "-" in area:
        return "head"
    return {9: "village", 12: "grid"}.get(len(area), "town")


def _key(level: str):
    return {"town": func.substr(Visit.village_code, 1, 9), "village": Visit.village_code, "grid": Visit.grid_code,
            "head": Visit.assigned_to}[level]


def _inside(area: str):
    return Visit.grid_code == area if "-" in area else Visit.village_code.startswith(area)


def visits_ledger(session, area: str, first: date, last: date, now: datetime, level: str | None = None) -> dict:
    """The ledger of visits of days `first` to `last` in `area`, grouped by `level`."""
    level = level or default_level(area)
    needs = (select(Need.visit_id, func.count().label("n")).group_by(Need.visit_id).subquery())
    counted = and_(_inside(area), Visit.day >= first, Visit.day <= last, Visit.state != "cancelled")
    conditions = {
        "due": Visit.state.in_(("due", "done")),
        "done": Visit.state == "done",
        "on_time": Visit.on_time.is_(True),
        "missed": Visit.missed.is_(True),
        "at_village": Visit.level == VILLAGE,
        "contact_made": Visit.contact_made.is_(True),
        "open_overdue": and_(Visit.state == "due", or_(Visit.due_at < now, Visit.due_at.is_(None))),
    }
    measures = [func.sum(case((cond, 1), else_=0)).label(name) for name, cond in conditions.items()]
    measures.append(func.sum(func.coalesce(needs.c.n, 0)).label("needs_found"))

    def rows_of(statement):
        return [{"key": r.get("key", "total"), **{c: int(r[c] or 0) for c in COUNTS}}
                for r in session.execute(statement).mappings()]
    key = _key(level).label("key")
    grouped = rows_of(select(key, *measures).select_from(Visit).outerjoin(needs, needs.c.visit_id == Visit.id)
                      .where(counted).group_by(key).order_by(key))
    [totals] = rows_of(select(*measures).select_from(Visit).outerjoin(needs, needs.c.visit_id == Visit.id)
                       .where(counted))
    return {"area": area, "level": level, "first": first.isoformat(), "last": last.isoformat(),
            "rows": [_with_rates(r) for r in grouped], "totals": _with_rates(totals)}


def _with_rates(row: dict) -> dict:
    def share(count, base, per=1):
        return round(row[count] * per / row[base], 4) if row[base] else None
    return {**row, "done_rate": share("done", "due"), "on_time_rate": share("on_time", "due"),
            "needs_per_100": share("needs_found", "done", 100)}


def not_reached(session, area: str, days: int, now: datetime) -> list[dict]:
    """Key households (of a key group, on the register) with no visit that reached them in the last `days`
    days, oldest first: never reached, then the longest ago."""
    since = now - timedelta(days=days)
    last_reached = (select(Visit.household_id, func.max(Visit.done_at).label("at"))
                    .where(Visit.contact_made.is_(True)).group_by(Visit.household_id).subquery())
    inside = Household.grid_code == area if "-" in area else Household.village_code.startswith(area)
    rows = session.execute(
        select(Household.id, Household.village_code, Household.grid_code, Household.head_id,
               Household.grid_worker_id, Household.key_groups, last_reached.c.at)
        .outerjoin(last_reached, last_reached.c.household_id == Household.id)
        .where(inside, Household.active.is_(True), Household.key_groups != "",
               or_(last_reached.c.at.is_(None), last_reached.c.at < since))
        .order_by(last_reached.c.at.is_not(None), last_reached.c.at, Household.id).limit(NOT_REACHED_LIST)).all()
    return [{"household_id": r.id, "village_code": r.village_code, "grid_code": r.grid_code, "head_id": r.head_id,
             "grid_worker_id": r.grid_worker_id, "key_groups": r.key_groups.split(","),
             "last_reached_at": as_utc(r.at).isoformat() if r.at else None} for r in rows]
