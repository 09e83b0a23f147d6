"""Each service's migrations build exactly the tables its models describe, on SQLite and PostgreSQL."""
from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.common.database import make_engine
from services.common.migrations import upgrade


@pytest.mark.parametrize("service", ["intake", "dispatch", "volunteer", "notify", "outreach"])
def test_migrations_match_the_models(service, db_url):
    upgrade(service, db_url)
    upgrade(service, db_url)  # running again is a no-op, as ops will do on every deploy
    models = importlib.import_module(f"services.{service}.models")
    engine = make_engine(db_url)
    with engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn), models.Base.metadata)
    engine.dispose()
    assert drift == [], f"{service}: models and migrations differ — add a migration: {drift}"
