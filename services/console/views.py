"""What the pages show, as plain rules over what the services answered: which queue a case is in and
what deadline runs for it, which forms a case's page offers, the ledger as chart bars. No HTTP, no
nameko: unit-tested on their own (tests/unit/test_console_rules.py).

The forms offered follow the role and the case's state only to spare people buttons that cannot work;
whether an action is allowed is decided by dispatch when it is sent (a refusal is shown as dispatch says it).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from services.common.clock import as_utc
from services.common.staff import COUNTY_DISPATCHER, DEPARTMENT_STAFF, DISPATCHERS, WORKERS, Principal

CHINA = timezone(timedelta(hours=8))
WAITING = ("offered", "returned", "escalated", "routed", "received", "reopened")  # nobody has taken it (yet)
IN_HAND = ("accepted", "in_progress", "filed")
QUEUE_STATES = ",".join(WAITING + IN_HAND)  # what a queue page asks dispatch for, whoever's it is
# the outcomes dispatch takes for each kind of call (services/dispatch/supervision.py CALL_OUTCOMES; a contract
# test keeps the two the same)
CALL_OUTCOMES = {"callback": ("reached", "not_reached", "need_confirmed"),
                 "follow_up": ("satisfied", "unsatisfied", "unreachable"),
                 "reach": ("reached", "unreached")}
ACTIONS = ("accept", "start", "resolve", "return", "file", "decide", "reassign", "transfer", "place", "cancel")
BEFORE_RESOLVED = ("received", "routed", "offered", "accepted", "in_progress", "returned", "escalated", "filed",
                   "reopened")  # a dispatcher may still cancel


def parse_time(value: str | None) -> datetime | None:
    """An ISO time from a service; naive ones (SQLite's) are UTC."""
    return as_utc(datetime.fromisoformat(value)) if value else None


def running_deadline(case: dict) -> datetime | None:
    """The deadline of the case's current step: to accept (or, at a desk, to reassign) while it waits, to
    resolve while in hand, the department's to decide while filed."""
    if case["state"] in ("offered", "returned", "escalated"):
        return parse_time(case.get("accept_due_at"))
    if case["state"] == "filed":
        return parse_time(case.get("decision_due_at"))
    if case["state"] in ("accepted", "in_progress"):
        return parse_time(case.get("resolve_due_at"))
    return None


@dataclass(frozen=True)
class Row:
    case: dict
    due_at: datetime | None
    overdue: bool

    @property
    def sort_key(self):
        far = datetime.max.replace(tzinfo=timezone.utc)
        return (self.case.get("priority") or 9, self.due_at or far, self.case["ticket_id"])


def queue_rows(cases: list[dict], now: datetime) -> tuple[list[Row], list[Row]]:
    """(waiting, in hand), each most urgent first: priority (1 is the most urgent), then the deadline."""
    rows = []
    for case in cases:
        due = running_deadline(case)
        rows.append(Row(case, due, bool(case.get("overdue")) or (due is not None and due < now)))
    waiting = sorted((r for r in rows if r.case["state"] in WAITING), key=lambda r: r.sort_key)
    in_hand = sorted((r for r in rows if r.case["state"] in IN_HAND), key=lambda r: r.sort_key)
    return waiting, in_hand


def all_rows(cases: list[dict], now: datetime) -> list[Row]:
    """Every case as a row, most urgent first (the supervisor's lists)."""
    waiting, in_hand = queue_rows(cases, now)
    return sorted(waiting + in_hand, key=lambda r: r.sort_key)


def actions_for(who: Principal, case: dict) -> list[str]:
    """The forms a case's page offers this person."""
    state, offered = case["state"], []
    if who.role in WORKERS and case.get("assignee_id") == who.subject:
        offered += {"offered": ["accept", "return"], "accepted": ["start", "resolve", "return"],
                    "in_progress": ["resolve", "return"]}.get(state, [])
        if case.get("handling") == "proxy" and state in ("accepted", "in_progress"):
            offered.insert(-1, "file")  # 代办: filed with the department, before returning
    if who.role == DEPARTMENT_STAFF and state == "filed" and case.get("department") == who.department:
        offered.append("decide")
    if who.role in DISPATCHERS and state in ("offered", "returned", "accepted", "in_progress"):
        offered += ["reassign", "transfer"]
    if who.role == COUNTY_DISPATCHER and not case.get("village_code") and state not in ("closed", "cancelled"):
        offered.append("place")  # a map point is placed by its county's dispatch centre
    if who.role in DISPATCHERS and state in BEFORE_RESOLVED:
        offered.append("cancel")
    return offered


def calls_for(who: Principal, tasks: list[dict], ticket_id: str) -> list[dict]:
    """This person's open calls about the ticket, with the outcomes each may record."""
    return [{**task, "outcomes": CALL_OUTCOMES.get(task["kind"], ())} for task in tasks
            if task["ticket_id"] == ticket_id and task["assignee_id"] == who.subject and not task.get("done_at")]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # a rate 0..1, None when there is nothing to rate
    count: int

    @property
    def percent(self) -> str:
        return "—" if self.value is None else f"{self.value * 100:.1f}%"

    def width(self, full: int) -> int:
        return 0 if self.value is None else round(self.value * full)


def rate_bars(rows: list[dict], rate: str, base: str) -> list[Bar]:
    """One bar per ledger row (a town, a village …): its rate, and how many tickets the rate is of."""
    return [Bar(row.get("name") or row["key"], row.get(rate), int(row.get(base) or 0)) for row in rows]


def last_days(today: date, days: int = 7) -> list[str]:
    """The ledger's day periods (China time) ending today, oldest first: 2026-11-25 … 2026-12-01."""
    return [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


AREA_LEVELS = ("county", "town", "village", "grid")


def finer(level: str | None, area: str) -> str | None:
    """The ledger's level below `level` (below the area's default when none is chosen): a county's supervisor
    sees its towns and, under them, its villages. None past the grid, or for a level not of areas."""
    level = level or {4: "county", 6: "town", 9: "village"}.get(len(area), "grid" if "-" not in area else None)
    if level not in AREA_LEVELS or level == AREA_LEVELS[-1]:
        return level  # the same again: shown once
    return AREA_LEVELS[AREA_LEVELS.index(level) + 1]


def month_of(day: str) -> str:
    return day[:7]


def trend(days: list[str], rows: list[dict]) -> list[tuple[str, dict]]:
    """(day, that day's ledger line) for each of `days`, from the ledger by day (level=day), a day without
    tickets as zeros."""
    by_day = {row["key"]: row for row in rows}
    empty = {"received": 0, "resolved_on_time_rate": None, "satisfaction_rate": None}
    return [(day, by_day.get(day, empty)) for day in days]


def china_time(value: str | datetime | None) -> str:
    """`2026-12-02 07:29:21`: a moment as people in the county read it (China time), from the services' UTC."""
    moment = parse_time(value) if isinstance(value, str) else as_utc(value)  # naive: UTC, never local time
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def china_today(now: datetime) -> date:
    return now.astimezone(CHINA).date()


def countdown(due: datetime | None, now: datetime) -> tuple[str, bool]:
    """`h:mm:ss` to the deadline, or past it (True): what the page shows before its script counts down."""
    if due is None:
        return "", False
    seconds = int((due - now).total_seconds())
    overdue, seconds = seconds < 0, abs(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}", overdue
