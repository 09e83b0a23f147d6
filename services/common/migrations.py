"""Alembic, per service: each service's `migrations/` folder, driven from its config's DB_URL."""
from __future__ import annotations

from alembic import command, context
from alembic.config import Config

from .config import SERVICES_DIR, service_config
from .database import make_engine


def alembic_config(service: str, db_url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.attributes["db_url"] = db_url or service_config(service)["DB_URL"]
    return cfg


def upgrade(service: str, db_url: str | None = None) -> None:
    command.upgrade(alembic_config(service, db_url), "head")


def run_env(metadata) -> None:
    """Body of every service's migrations/env.py."""
    url = context.config.attributes["db_url"]
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata,
                          render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
