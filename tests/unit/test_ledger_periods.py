"""The ledger's periods (a day, an ISO week, a month of China's calendar), its query and its default level."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from services.dispatch.ledger import BadPeriod, LedgerQuery, default_level, parse_period

UTC = timezone.utc


@pytest.mark.parametrize("text, name, kind, first, last", [
    ("2026-11-27", "2026-11-27", "day", date(2026, 11, 27), date(2026, 11, 27)),
    ("2024-02-29", "2024-02-29", "day", date(2024, 2, 29), date(2024, 2, 29)),  # a leap day
    ("2026-11", "2026-11", "month", date(2026, 11, 1), date(2026, 11, 30)),
    ("2026-02", "2026-02", "month", date(2026, 2, 1), date(2026, 2, 28)),
    ("2024-02", "2024-02", "month", date(2024, 2, 1), date(2024, 2, 29)),
    ("2026-12", "2026-12", "month", date(2026, 12, 1), date(2026, 12, 31)),  # the year's last month
    ("2026-W48", "2026-W48", "week", date(2026, 11, 23), date(2026, 11, 29)),
    ("2026-W49", "2026-W49", "week", date(2026, 11, 30), date(2026, 12, 6)),  # spans November and December
    ("2026-w49", "2026-W49", "week", date(2026, 11, 30), date(2026, 12, 6)),  # a lower-case w is read too
    ("2026-W01", "2026-W01", "week", date(2025, 12, 29), date(2026, 1, 4)),  # spans two years
    ("2026-W53", "2026-W53", "week", date(2026, 12, 28), date(2027, 1, 3)),  # 2026 has 53 ISO weeks
    (" 2026-11 ", "2026-11", "month", date(2026, 11, 1), date(2026, 11, 30)),
])
def test_a_period_is_a_day_an_iso_week_or_a_month(text, name, kind, first, last):
    period = parse_period(text)
    assert (period.name, period.kind, period.first, period.last) == (name, kind, first, last)


@pytest.mark.parametrize("text", [
    "2026-13", "2026-00", "2026-02-30", "2026-11-31", "2025-02-29", "2025-W53", "2026-W00", "2026-W54",
    "2026", "26-11", "2026-1", "2026-11-1", "2026/11", "2026-11-27T00:00", "November", "", "2026-W4",
    "２０２６-１１",  # full-width digits are digits to Python's \d, not to the ledger
])
def test_anything_else_is_refused_with_what_a_period_may_be(text):
    with pytest.raises(BadPeriod) as refused:
        parse_period(text)
    assert str(refused.value) == (f"period: {text.strip()} is not a day (YYYY-MM-DD), ISO week (YYYY-Www) "
                                  f"or month (YYYY-MM)")


@pytest.mark.parametrize("text, start, end", [
    # China time is UTC+8: a local day starts at 16:00 UTC the day before
    ("2026-12-01", datetime(2026, 11, 30, 16, tzinfo=UTC), datetime(2026, 12, 1, 16, tzinfo=UTC)),
    ("2026-11", datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 30, 16, tzinfo=UTC)),
    ("2026-W49", datetime(2026, 11, 29, 16, tzinfo=UTC), datetime(2026, 12, 6, 16, tzinfo=UTC)),
    ("2026-12", datetime(2026, 11, 30, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC)),
])
def test_a_period_is_counted_in_china_time(text, start, end):
    assert parse_period(text).utc_range() == (start, end)


@pytest.mark.parametrize("query, loaded", [
    ({}, {"level": None, "period": None, "format": "json", "area": None}),
    ({"level": "town", "period": "2026-11", "format": "csv"},
     {"level": "town", "period": "2026-11", "format": "csv", "area": None}),
    ({"level": "worker", "period": "2026-W48", "area": "341323"},
     {"level": "worker", "period": "2026-W48", "format": "json", "area": "341323"}),
    ({"level": "department", "period": "2026-11-27"},
     {"level": "department", "period": "2026-11-27", "format": "json", "area": None}),
])
def test_the_ledger_query_takes_a_level_a_period_and_a_format(query, loaded):
    assert LedgerQuery().load(query) == loaded


@pytest.mark.parametrize("query, field, message", [
    ({"period": "2026-13"}, "period",
     "period: 2026-13 is not a day (YYYY-MM-DD), ISO week (YYYY-Www) or month (YYYY-MM)"),
    ({"level": "province"}, "level", "Must be one of: county, town, village, grid, worker, department, day."),
    ({"format": "xlsx"}, "format", "Must be one of: json, csv."),
])
def test_the_ledger_query_says_what_is_wrong(query, field, message):
    from marshmallow import ValidationError
    with pytest.raises(ValidationError) as refused:
        LedgerQuery().load(query)
    assert refused.value.messages == {field: [message]}


@pytest.mark.parametrize("area, level", [
    ("3413", "county"), ("341323", "town"), ("341323104", "village"), ("341323104214", "grid"),
    ("341323104214-G10", "worker"),
])
def test_the_default_level_is_one_below_the_area(area, level):
    assert default_level(area) == level
