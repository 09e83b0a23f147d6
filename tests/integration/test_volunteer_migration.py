"""volunteer_0002 on a database with offers made before it: they learn a place and, when open, an expiry;
volunteer_0003: each volunteer's load is counted from their open offers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import command

from services.common.database import make_engine
from services.common.migrations import alembic_config, upgrade

MADE = datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)

# the tables as volunteer_0001 left them (the models describe the newest schema)
volunteers = sa.table("volunteers", *(sa.column(name) for name in (
    "id", "name", "team_id", "village_code", "town_code", "skills", "max_load", "service_points")))
offers = sa.table("offers", sa.column("id"), sa.column("ticket_id"), sa.column("volunteer_id"), sa.column("skill"),
                  sa.column("state"), sa.column("created_at", sa.DateTime(timezone=True)),
                  sa.column("updated_at", sa.DateTime(timezone=True)))
offers_0002 = sa.table("offers", *(sa.column(c.name, c.type) for c in offers.c), sa.column("village_code"),
                       sa.column("town_code"))  # as volunteer_0002 left it
after = sa.table("offers", sa.column("id"), sa.column("village_code"), sa.column("town_code"),
                 sa.column("expires_at", sa.DateTime(timezone=True)))


def utc(moment: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back (what the service stores is UTC), PostgreSQL aware ones."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def test_existing_offers_take_their_volunteers_place_and_open_ones_expire_after_the_default_wait(db_url):
    command.upgrade(alembic_config("volunteer", db_url), "volunteer_0001")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(volunteers.insert().values(id="V1", name="n", team_id="T1", village_code="341323104215",
                                                town_code="341323104", skills="errand", max_load=2,
                                                service_points=0))
        conn.execute(offers.insert(), [
            {"id": offer_id, "ticket_id": "K", "volunteer_id": volunteer, "skill": "errand", "state": state,
             "created_at": MADE, "updated_at": MADE}
            for offer_id, volunteer, state in ((1, "V1", "offered"), (2, "V1", "accepted"), (3, "GONE", "offered"))])

    upgrade("volunteer", db_url)

    with engine.connect() as conn:
        rows = conn.execute(sa.select(after).order_by(after.c.id)).all()
    engine.dispose()
    assert [(r.id, r.village_code, r.town_code, utc(r.expires_at)) for r in rows] == [
        (1, "341323104215", "341323104", MADE + timedelta(minutes=15)),  # open: passed on at the first tick
        (2, "341323104215", "341323104", None),                          # accepted: nothing to expire
        (3, "", "", MADE + timedelta(minutes=15)),                       # its volunteer is gone: no place known
    ]


def test_each_volunteer_starts_with_the_load_their_open_offers_hold(db_url):
    """volunteer_0003: `load` is counted from the offers still offered or accepted; ended ones hold nothing."""
    command.upgrade(alembic_config("volunteer", db_url), "volunteer_0002")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(volunteers.insert(), [
            {"id": vid, "name": "n", "team_id": "T1", "village_code": "341323104215", "town_code": "341323104",
             "skills": "errand", "max_load": 3, "service_points": 0} for vid in ("V1", "V2", "V3")])
        conn.execute(offers_0002.insert(), [
            {"id": offer_id, "ticket_id": f"K{offer_id}", "volunteer_id": volunteer, "skill": "errand",
             "state": state, "village_code": "341323104215", "town_code": "341323104", "created_at": MADE,
             "updated_at": MADE}
            for offer_id, volunteer, state in ((1, "V1", "offered"), (2, "V1", "accepted"), (3, "V1", "done"),
                                               (4, "V2", "declined"), (5, "V2", "expired"), (6, "V2", "released"),
                                               (7, "V3", "accepted"), (8, "GONE", "offered"))])

    upgrade("volunteer", db_url)

    loaded = sa.table("volunteers", sa.column("id"), sa.column("load"))
    with engine.connect() as conn:
        assert dict(conn.execute(sa.select(loaded.c.id, loaded.c.load).order_by(loaded.c.id)).all()) == {
            "V1": 2, "V2": 0, "V3": 1}
    engine.dispose()
