"""One resident per phone number, when two requests from a new number are taken at the same moment (two workers,
two instances of intake on PostgreSQL): the second waits for the first's commit and finds its resident, instead
of failing on the unique phone (a retry would reorder the two requests)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from services.common.database import make_engine
from services.intake.models import Base, Resident
from services.intake.residents import find_or_add

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)
PHONE = "13812345678"


def test_two_requests_from_a_new_number_at_once_make_one_resident(postgres_url):
    engine = make_engine(postgres_url)
    Base.metadata.create_all(engine)
    try:
        with Session(engine) as first:
            first.begin()
            first_id = find_or_add(first, {"phone": PHONE, "name": "王秀英"}, NOW)  # inserted, not committed yet
            second: dict = {}

            def take_the_second() -> None:
                try:
                    with Session(engine) as s, s.begin():
                        second["id"] = find_or_add(s, {"phone": PHONE, "name": "冒充者"}, NOW)
                except Exception as exc:  # the assertion below says what went wrong
                    second["error"] = exc
            thread = threading.Thread(target=take_the_second)
            thread.start()
            _wait_until_someone_waits_for_a_lock(engine)
            first.commit()
        thread.join(timeout=30)
        assert second == {"id": first_id}
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(Resident)) == 1
            assert s.get(Resident, first_id).name == "王秀英"  # the first request's record, not overwritten
    finally:
        engine.dispose()


def _wait_until_someone_waits_for_a_lock(engine, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND wait_event_type = 'Lock'")).scalar()
            if waiting:
                return
            conn.rollback()
            time.sleep(0.02)
    raise AssertionError(f"the second request did not wait for the first's insert within {timeout:g} s")
