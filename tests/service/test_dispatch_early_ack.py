"""An acknowledgement that reaches dispatch before its ticket does: in a surge the acknowledgement goes first
(common/lanes.py) while `open_case` works off a backlog. It is kept, not retried into the dead-letter queue,
and counted for the ledger once the case opens. Driven without a broker (tests/service_layer.py)."""
from __future__ import annotations

import copy
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from services.common.clock import ManualClock, as_utc
from services.dispatch.areas import AreaMap
from services.dispatch.models import Case, EarlyAcknowledgement, HistoryEntry
from services.dispatch.service import DispatchService
from services.dispatch.supervision import Policy
from services.intake.events import EXAMPLES as INTAKE
from services.notify.events import EXAMPLES as NOTIFY
from tests.service_layer import Staff, Worker

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)
TICKET = "SDJ-261127-EARLY001"
DELIVERED = "2026-11-27T01:00:00.290000+00:00"


@pytest.fixture
def dispatch(tmp_path):
    return Worker(DispatchService, tmp_path, clock=ManualClock(T0), areas=AreaMap.load(), policy=Policy(),
                  staff=Staff())


def received() -> dict:
    env = copy.deepcopy(INTAKE["ticket_received"])
    env.update(event_id=str(uuid.uuid4()), ticket_id=TICKET, correlation_id=TICKET)
    return env


def acknowledged() -> dict:
    env = copy.deepcopy(NOTIFY["resident_acknowledged"])
    env.update(event_id=str(uuid.uuid4()), ticket_id=TICKET, correlation_id=TICKET)
    env["data"].update(delivered_at=DELIVERED)
    return env


def state(w) -> tuple:
    with w.db.transaction() as s:
        case = s.get(Case, TICKET)
        notes = s.scalar(select(func.count()).select_from(HistoryEntry).where(
            HistoryEntry.ticket_id == TICKET, HistoryEntry.event == "resident_notified"))
        early = s.scalar(select(func.count()).select_from(EarlyAcknowledgement))
        return (as_utc(case.acknowledged_at).isoformat() if case and case.acknowledged_at else None), notes, early


def test_an_acknowledgement_ahead_of_its_ticket_is_kept_and_counted_when_the_case_opens(dispatch):
    dispatch.call("note_acknowledged", [acknowledged()])
    dispatch.call("note_acknowledged", [acknowledged(), acknowledged()])  # repeats, in one batch too: kept once
    assert state(dispatch) == (None, 0, 1)
    dispatch.call("open_case", [received()])
    assert state(dispatch) == (DELIVERED, 1, 0)


def test_an_acknowledgement_after_the_case_is_counted_at_once_and_once(dispatch):
    dispatch.call("open_case", [received()])
    dispatch.call("note_acknowledged", [acknowledged()])
    dispatch.call("note_acknowledged", [acknowledged()])
    assert state(dispatch) == (DELIVERED, 1, 0)


def test_the_tick_applies_one_that_crossed_the_case_opening(dispatch):
    """PostgreSQL, two workers at once: the case was being opened while the acknowledgement was kept."""
    dispatch.call("open_case", [received()])
    with dispatch.db.transaction() as s:
        s.add(EarlyAcknowledgement(ticket_id=TICKET, delivered_at=datetime.fromisoformat(DELIVERED)))
    assert dispatch.call("apply_early_acknowledgements") == 1
    assert state(dispatch) == (DELIVERED, 1, 0)
    assert dispatch.call("apply_early_acknowledgements") == 0
