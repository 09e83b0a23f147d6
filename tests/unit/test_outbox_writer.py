"""The outbox writer wakes its relay once a transaction that wrote events committed, and not otherwise."""
from __future__ import annotations

import pytest
from sqlalchemy import Column, DateTime, Integer, String, Text, create_engine, func, select
from sqlalchemy.orm import declarative_base, sessionmaker

from services.common.outbox import OutboxWriter

Base = declarative_base()


class Row(Base):
    __tablename__ = "outbox"
    id = Column(Integer, primary_key=True)
    event_id = Column(String, nullable=False)
    exchange = Column(String, nullable=False)
    routing_key = Column(String, nullable=False)
    body = Column(Text, nullable=False)
    created_at = Column(DateTime)


@pytest.fixture
def sessions():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def wakes() -> list[str]:
    return []


@pytest.fixture
def writer(wakes) -> OutboxWriter:
    return OutboxWriter(Row, "x.events", {}, lambda: wakes.append("woken"))


def test_a_commit_that_wrote_events_wakes_the_relay_once(sessions, writer, wakes) -> None:
    with sessions.begin() as s:
        writer.add_message(s, "x.events", "thing_happened", "a", {})
        writer.add_message(s, "x.events", "thing_happened", "b", {})
        assert wakes == []  # not before the commit: the relay would find nothing yet
    assert wakes == ["woken"]


def test_a_transaction_that_rolled_back_wakes_nobody_and_the_next_commit_does(sessions, writer, wakes) -> None:
    with pytest.raises(RuntimeError), sessions.begin() as s:
        writer.add_message(s, "x.events", "thing_happened", "a", {})
        raise RuntimeError("the handler failed")
    assert wakes == []
    with sessions.begin() as s:
        s.execute(select(func.count()).select_from(Row))  # a transaction that writes no event
    assert wakes == []
    with sessions.begin() as s:
        writer.add_message(s, "x.events", "thing_happened", "b", {})
    assert wakes == ["woken"]


def test_a_savepoint_rolled_back_inside_a_committed_transaction_still_wakes(sessions, writer, wakes) -> None:
    with sessions() as s:
        with s.begin():
            writer.add_message(s, "x.events", "thing_happened", "a", {})
            s.begin_nested().rollback()
        assert wakes == ["woken"]
        assert s.scalar(select(func.count()).select_from(Row)) == 1


def test_two_writers_in_one_transaction_wake_their_own_relays(sessions, wakes) -> None:
    first = OutboxWriter(Row, "x.events", {}, lambda: wakes.append("first"))
    second = OutboxWriter(Row, "y.events", {}, lambda: wakes.append("second"))
    with sessions.begin() as s:
        first.add_message(s, "x.events", "thing_happened", "a", {})
        second.add_message(s, "x.events", "thing_happened", "b", {})
    assert sorted(wakes) == ["first", "second"]
