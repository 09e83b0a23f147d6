"""The ledger (台账): what came in to an area, how fast and how well it was handled, per county, town,
village, grid, worker or department, over a day, an ISO week, a month, or all time.

A ticket is counted in the period its `received_at` falls in, in China's local time (UTC+8, no
daylight saving), and in the group it belongs to now. The counts (all ticket counts, never event counts):

- received: every ticket.
- acknowledged_10s: the resident's acknowledgement was delivered within 10 s of receipt
  (`acknowledged_at - received_at <= 10 s`).
- accepted: accepted at least once (`accepted_on_time` is judged, True or False, at the first acceptance).
- accepted_on_time: `accepted_on_time` is True: the first acceptance came before the accept deadline in
  force, and no accept deadline of that ticket was missed before it. In its history: the first
  `ticket_accepted` has no `ticket_overdue` (what=accept) before it, and its `at` is at or before
  `accept_due_at` of the last `ticket_offered` before it.
- resolved: resolved at least once (`resolved_on_time` is judged at the first resolution).
- resolved_on_time: `resolved_on_time` is True. In its history: no `ticket_overdue` (what=resolve or
  decision) between the last `ticket_accepted` before the first `ticket_resolved` and that resolution,
  and the resolution's `at` is at or before the resolve deadline in force: `resolve_due_at` of that
  `ticket_accepted`, or of a later `ticket_escalated` with what=resolve (its `due_at`) or `ticket_decided`
  (its `resolve_due_at`: a department's time to decide does not count against the village).
- overdue_now: open, and a deadline of its current step is past at `now`: offered or returned (the desk's
  time to reassign) with `accept_due_at < now`; accepted or in_progress with `resolve_due_at < now`; filed with
  `decision_due_at < now`. (Resolved, followed-up, closed and cancelled tickets are never overdue.) The rule is
  `overdue_now` (SQL) and `is_overdue` (one case, in Python): the queues and the case view use them too.
- escalated, returned, reassigned, reopened: at least once (`escalation_count`, `return_count`,
  `reassign_count`, `reopen_count` > 0).
- cancelled, closed: in that final state.
- answered, satisfied: the resident answered the 回访 (`satisfied` is not None), and the last answer
  was satisfied (`satisfied` is True).
- proxy_handled: a 代办 item (`handling == "proxy"`) that was resolved (`resolved_at` is set).
- found_at_door: found by going to the door, not asked for: its channel is `grid_visit` (a need found on a
  visit) or `night_talk` (raised at a village night talk).

The rates, each the share of its base (None when the base is 0, else rounded to 4 places):
acknowledged_10s_rate (of received), accepted_on_time_rate (of accepted), resolved_on_time_rate (of
resolved), satisfaction_rate (of answered), reopen_rate (reopened, of resolved), found_at_door_rate (of received).

Groups (`level`): county (`county_code`); town (the first 9 digits of `village_code`); village; grid;
worker (`assignee_id`, with `assignee_name`); department; day (the China-time day of `received_at`, a trend:
`2026-11-27`). A ticket not yet placed in a village is in
the town and village "unplaced"; a ticket without a grid or an assignee is in the grid or worker "none".
The default level is one below the area's: city → county → town → village → grid → worker.

Everything is counted by the database (GROUP BY with sums of CASE), on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import Boolean, String, and_, case, func, literal, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from .models import Case

CHINA = timezone(timedelta(hours=8), "China Standard Time")
LEVELS = ("county", "town", "village", "grid", "worker", "department", "day")
FORMATS = ("json", "csv")
UNPLACED = "unplaced"  # town or village of a ticket not yet placed in a village
NONE = "none"  # grid or worker of a ticket that has none
TOTAL = "total"  # the key of the totals line
ACKNOWLEDGE_SECONDS = 10

COUNTS = ("received", "acknowledged_10s", "accepted", "accepted_on_time", "resolved", "resolved_on_time",
          "overdue_now", "escalated", "returned", "reassigned", "reopened", "cancelled", "closed",
          "answered", "satisfied", "proxy_handled", "found_at_door")
DOOR_CHANNELS = ("grid_visit", "night_talk")  # what going to the door found (services/outreach), not asked for
RATES = {  # rate: (count, base)
    "acknowledged_10s_rate": ("acknowledged_10s", "received"),
    "accepted_on_time_rate": ("accepted_on_time", "accepted"),
    "resolved_on_time_rate": ("resolved_on_time", "resolved"),
    "satisfaction_rate": ("satisfied", "answered"),
    "reopen_rate": ("reopened", "resolved"),
    "found_at_door_rate": ("found_at_door", "received"),
}
COLUMNS = ("key", "name") + COUNTS + tuple(RATES)  # a row's keys, in order: the CSV header


# --- periods ---------------------------------------------------------------------

class BadPeriod(ValueError):
    def __init__(self, text: str):
        super().__init__(f"period: {text} is not a day (YYYY-MM-DD), ISO week (YYYY-Www) or month (YYYY-MM)")


@dataclass(frozen=True)
class Period:
    """A day, ISO week or month of China's local calendar: `first` to `last`, both included."""
    name: str  # 2026-11-27, 2026-W48 or 2026-11
    kind: str  # day, week, month
    first: date
    last: date

    def utc_range(self) -> tuple[datetime, datetime]:
        """[start, end) in UTC: local midnight of the first day to local midnight after the last."""
        start = datetime.combine(self.first, datetime.min.time(), CHINA)
        end = datetime.combine(self.last + timedelta(days=1), datetime.min.time(), CHINA)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_WEEK = re.compile(r"(\d{4})-[Ww](\d{2})", re.ASCII)
_MONTH = re.compile(r"(\d{4})-(\d{2})", re.ASCII)


def parse_period(text: str) -> Period:
    """`2026-11-27` (a day), `2026-W48` (an ISO week, Monday to Sunday) or `2026-11` (a month)."""
    text = (text or "").strip()
    try:
        if m := _DAY.fullmatch(text):
            day = date(int(m[1]), int(m[2]), int(m[3]))
            return Period(day.isoformat(), "day", day, day)
        if m := _WEEK.fullmatch(text):
            year, week = int(m[1]), int(m[2])
            monday = date.fromisocalendar(year, week, 1)  # ValueError for week 0, or 53 of a 52-week year
            return Period(f"{year:04d}-W{week:02d}", "week", monday, monday + timedelta(days=6))
        if m := _MONTH.fullmatch(text):
            first = date(int(m[1]), int(m[2]), 1)
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return Period(f"{first.year:04d}-{first.month:02d}", "month", first, following - timedelta(days=1))
    except ValueError:
        pass
    raise BadPeriod(text)


def _valid_period(text: str) -> None:
    try:
        parse_period(text)
    except BadPeriod as exc:
        raise ValidationError(str(exc)) from None


class LedgerQuery(Schema):
    """`GET /ledger?level=town&period=2026-11&format=csv`: every parameter optional."""
    level = fields.String(load_default=None, validate=validate.OneOf(LEVELS),
                          metadata={"description": "group by; default: one level below the caller's area"})
    period = fields.String(load_default=None, validate=_valid_period,
                           metadata={"description": "tickets received on a day (2026-11-27), in an ISO week "
                                                    "(2026-W48) or a month (2026-11), China time; default: all"})
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS))
    area = fields.String(load_default=None, validate=validate.Regexp(r"^\d{4}(\d{2}(\d{3}(\d{3}(-G\d{2,3})?)?)?)?$",
                                                                    error="must be an area code inside yours"),
                         metadata={"description": "an area inside the caller's; default: the caller's area"})


LedgerRow = Schema.from_dict({  # one group's line of the ledger, and its totals line (key "total")
    "key": fields.String(required=True, metadata={"description": "the group: an area code, 'unplaced', "
                                                                 "'none', a worker's id or a department"}),
    "name": fields.String(required=True),
    **{count: fields.Integer(required=True) for count in COUNTS},
    **{rate: fields.Float(required=True, allow_none=True, metadata={"description": f"{count} / {base}"})
       for rate, (count, base) in RATES.items()},
}, name="LedgerRow")


# --- the ledger ------------------------------------------------------------------

def default_level(area: str) -> str:
    """One below the area's own level: city (4 digits) → county, county (6) → town, town (9) → village,
    village (12) → grid, grid → worker."""
    if "-" in area:
        return "worker"
    return {6: "town", 9: "village", 12: "grid"}.get(len(area), "county")


def ledger_of(session, area: str, level: str | None = None, period: str | Period | None = None,
              now: datetime | None = None, areas=None) -> dict:
    """The ledger of `area` grouped by `level`, for tickets received in `period` (None: all time).

    `now` decides what is overdue (default: the wall clock); `areas` (an AreaMap), when given, names the
    counties, towns, villages and grids. Raises BadPeriod or ValueError for a bad period or level."""
    level = level or default_level(area)
    if level not in LEVELS:
        raise ValueError(f"level: {level!r} is not one of {', '.join(LEVELS)}")
    if isinstance(period, str):
        period = parse_period(period)
    now = _utc(now or datetime.now(timezone.utc))
    inside = [Case.in_area(area)]
    if period is not None:
        start, end = period.utc_range()
        inside += [Case.received_at >= start, Case.received_at < end]

    measures = _measures(now)
    key = _group_key(level).label("key")
    extra = [func.max(Case.assignee_name).label("assignee_name")] if level == "worker" else []
    grouped = session.execute(select(key, *extra, *measures).where(*inside).group_by(key)).mappings().all()
    rows = [_with_rates({"key": _key_text(level, r["key"]), "name": _name(level, r, areas),
                         **{c: int(r[c] or 0) for c in COUNTS}}) for r in grouped]
    rows.sort(key=lambda row: row["key"])
    overall = session.execute(select(*measures).where(*inside)).mappings().one()
    totals = _with_rates({"key": TOTAL, "name": "", **{c: int(overall[c] or 0) for c in COUNTS}})

    def count_by(column):
        return dict(session.execute(select(column, func.count()).where(*inside).group_by(column)).all())
    by_state = count_by(Case.state)
    return {"area": area, "level": level, "period": period.name if period else None,
            "rows": rows, "totals": totals,
            # the first ledger's keys, still read by the console, the demo and the tests
            "total": sum(by_state.values()), "by_state": by_state,
            "by_county": count_by(Case.county_code), "by_category": count_by(Case.category_code),
            "reopened": totals["reopened"],
            "unplaced": session.scalar(select(func.count()).where(*inside, Case.village_code.is_(None)))}


# --- overdue now, escalated: one rule each, for the ledger's counts and the queues' filters ----------

DEADLINE_OF_STATE = {  # the deadline of the step a case is at: overdue now once it is past
    "offered": "accept_due_at", "returned": "accept_due_at",  # returned: the desk's time to reassign
    "accepted": "resolve_due_at", "in_progress": "resolve_due_at",
    "filed": "decision_due_at",
}  # every other state (received and routed for an instant, resolved … closed, cancelled): never overdue


def overdue_now(now: datetime):
    """SQL: the case is overdue at `now` (`overdue_now` in the module's docstring): it is at a step of
    DEADLINE_OF_STATE and that step's deadline is past. `is_overdue` is the same rule for one case."""
    now = _utc(now)
    by_deadline: dict[str, list[str]] = {}
    for state, column in DEADLINE_OF_STATE.items():
        by_deadline.setdefault(column, []).append(state)
    return or_(*(and_(Case.state.in_(states), getattr(Case, column) < now) for column, states in by_deadline.items()))


def is_overdue(case, now: datetime) -> bool:
    """`overdue_now` for one case (anything with the attributes of models.Case), in Python."""
    column = DEADLINE_OF_STATE.get(case.state)
    due = getattr(case, column) if column else None
    return due is not None and _utc(due) < _utc(now)


def escalated():
    """SQL: the case climbed the escalation ladder at least once (an offer reassigned up, or work given a
    supervisor, 督办): `escalation_count > 0`, whatever its state now."""
    return Case.escalation_count > 0


def _measures(now: datetime) -> list:
    """One `sum(CASE WHEN … THEN 1 ELSE 0 END)` per count, labelled by its name."""
    conditions = {
        "received": true(),
        "acknowledged_10s": and_(Case.acknowledged_at.is_not(None),
                                 within_seconds(Case.received_at, Case.acknowledged_at,
                                                literal(ACKNOWLEDGE_SECONDS))),
        "accepted": Case.accepted_on_time.is_not(None),
        "accepted_on_time": Case.accepted_on_time.is_(True),
        "resolved": Case.resolved_on_time.is_not(None),
        "resolved_on_time": Case.resolved_on_time.is_(True),
        "overdue_now": overdue_now(now),
        "escalated": escalated(),
        "returned": Case.return_count > 0,
        "reassigned": Case.reassign_count > 0,
        "reopened": Case.reopen_count > 0,
        "cancelled": Case.state == "cancelled",
        "closed": Case.state == "closed",
        "answered": Case.satisfied.is_not(None),
        "satisfied": Case.satisfied.is_(True),
        "proxy_handled": and_(Case.handling == "proxy", Case.resolved_at.is_not(None)),
        "found_at_door": Case.channel.in_(DOOR_CHANNELS),
    }
    return [func.sum(case((conditions[name], 1), else_=0)).label(name) for name in COUNTS]


def _group_key(level: str):
    return {"county": Case.county_code,
            "town": func.substr(Case.village_code, 1, 9),
            "village": Case.village_code,
            "grid": Case.grid_code,
            "worker": Case.assignee_id,
            "department": Case.department,
            "day": china_day(Case.received_at)}[level]


def _key_text(level: str, key) -> str:
    if key is not None:
        return key
    return UNPLACED if level in ("town", "village") else NONE


def _name(level: str, row, areas) -> str:
    key = row["key"]
    if level == "worker":
        return row["assignee_name"] or ""
    if areas is None or key is None or level in ("department", "day"):
        return ""
    try:
        if level == "grid":
            village, _, number = key.partition("-")
            return f"{areas.area(village).name} {number}"
        return areas.area(key).name
    except KeyError:
        return ""


def _with_rates(row: dict) -> dict:
    for rate, (count, base) in RATES.items():
        row[rate] = round(row[count] / row[base], 4) if row[base] else None
    return row


def _utc(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite compares them as text, so the bound value must be UTC too."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


# --- CSV ---------------------------------------------------------------------------

def ledger_csv(ledger: dict) -> str:
    """The ledger's rows and its totals line as CSV (RFC 4180); the header is the rows' keys."""
    out = io.StringIO()
    writer = csv.writer(out)
    header = list(ledger["rows"][0]) if ledger["rows"] else list(ledger["totals"])
    writer.writerow(header)
    for row in [*ledger["rows"], ledger["totals"]]:
        writer.writerow([_cell(row.get(column)) for column in header])
    return out.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet must not read a name as a formula
    return str(value)


# --- elapsed time in SQL, exact on both databases -------------------------------------

class china_day(FunctionElement):
    """The day (`2026-11-27`) a UTC moment falls on in China time (UTC+8, no daylight saving)."""
    type = String()
    name = "china_day"
    inherit_cache = True


@compiles(china_day)
def _china_day_postgresql(element, compiler, **kw):
    moment = compiler.process(element.clauses, **kw)
    return f"to_char(({moment}) AT TIME ZONE 'UTC' + INTERVAL '8 hours', 'YYYY-MM-DD')"


@compiles(china_day, "sqlite")
def _china_day_sqlite(element, compiler, **kw):
    moment = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d', substr({moment}, 1, 19), '+8 hours')"


class within_seconds(FunctionElement):
    """`later - earlier <= seconds`, to the microsecond, on PostgreSQL and SQLite."""
    type = Boolean()
    name = "within_seconds"
    inherit_cache = True


@compiles(within_seconds)
def _within_seconds_interval(element, compiler, **kw):
    earlier, later, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"(({later}) - ({earlier}) <= ({seconds}) * INTERVAL '1 second')"


@compiles(within_seconds, "sqlite")
def _within_seconds_sqlite(element, compiler, **kw):
    earlier, later, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"({_sqlite_micros(later)} - {_sqlite_micros(earlier)} <= ({seconds}) * 1000000)"


def _sqlite_micros(column: str) -> str:
    """Microseconds since 1970 of SQLAlchemy's SQLite text `YYYY-MM-DD HH:MM:SS.ffffff` (UTC): whole
    seconds by strftime, the fraction from the text, so no floating-point day count blurs the 10 s line."""
    return (f"(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000"
            f" + CAST(substr({column} || '.000000', 21, 6) AS INTEGER))")
