"""A case read and written as a row (dispatch/cases.py): what the rules change is what is stored, nothing more."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import sessionmaker

from services.dispatch import cases
from services.dispatch.models import Base, Case
from services.dispatch.service import new_case

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)
RECEIVED = {"category": {"code": "C01", "department": "civil", "accept_minutes": 30, "resolve_hours": 24,
                         "resolve_minutes": None, "follow_up_hours": 24, "proxy": False},
            "village_code": "341302001001", "county_code": "341302", "priority": 2, "address": "汴河路 1 号",
            "received_at": NOW, "channel": "hotline", "resident": {"vulnerable": True}}


@pytest.fixture
def sessions():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2].split()[0]))
    yield sessionmaker(engine, expire_on_commit=False), statements
    engine.dispose()


@pytest.fixture
def stored(sessions):
    """Case T1 as open_case stores it."""
    Session, statements = sessions
    with Session.begin() as s:
        cases.save(s, new_case("T1", RECEIVED, NOW))
    return Session, statements


def test_a_new_case_is_stored_with_every_column_the_rules_set(stored):
    Session, _ = stored
    with Session.begin() as s:
        stored = s.get(Case, "T1")
        assert (stored.state, stored.version, stored.county_code, stored.vulnerable, stored.handling) == (
            "received", 0, "341302", True, "grid")
        assert stored.grid_code is None and stored.overdue_count == 0 and stored.late is False


def test_what_the_rules_change_is_written_and_only_that(stored):
    Session, statements = stored
    with Session.begin() as s:
        case = cases.load(s, "T1")
        case.state, case.version, case.assignee_id = "offered", 1, "W-341302001001-G01"
        statements.clear()
        cases.save(s, case)
        assert statements == ["UPDATE"]
        cases.save(s, case)  # nothing changed since: no statement
        assert statements == ["UPDATE"]
    with Session.begin() as s:
        stored = s.get(Case, "T1")
        assert (stored.state, stored.version, stored.assignee_id, stored.address) == (
            "offered", 1, "W-341302001001-G01", "汴河路 1 号")


def test_a_write_leaves_the_columns_it_did_not_change_as_another_wrote_them(stored):
    Session, _ = stored
    with Session.begin() as s:
        case = cases.load(s, "T1")
        s.execute(Case.__table__.update().values(address=""))  # retention erased it meanwhile
        case.state = "offered"
        cases.save(s, case)
    with Session.begin() as s:
        assert s.execute(select(Case.state, Case.address)).one() == ("offered", "")


def test_an_unknown_case_loads_as_none_and_a_misspelt_column_is_refused(sessions):
    Session, _ = sessions
    with Session.begin() as s:
        assert cases.load(s, "nope") is None
    with pytest.raises(TypeError, match="stat"):
        cases.new(id="T2", stat="received")
