"""Volunteer's own database: volunteers, their offers and service hours, plus outbox and inbox."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text, false, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.tables import plumbing_tables


# offers that hold a place in a volunteer's load
OPEN_STATES = ("offered", "accepted")


class Base(DeclarativeBase):
    pass


class VolunteerRow(Base):
    __tablename__ = "volunteers"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    team_id: Mapped[str] = mapped_column(String(20), index=True)
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    town_code: Mapped[str] = mapped_column(String(9), index=True)
    skills: Mapped[str] = mapped_column(String(200))  # comma-separated skill codes
    max_load: Mapped[int] = mapped_column(Integer)
    # open (offered or accepted) offers held: the truth every instance decides on, changed only by
    # the service's guarded UPDATEs in the transaction that makes or ends an offer (service.py)
    load: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    service_points: Mapped[int] = mapped_column(Integer, default=0)
    # people, registered over the API (people.py): never deleted, deactivated
    kind: Mapped[str] = mapped_column(String(10), default="volunteer", server_default="volunteer")  # or neighbour
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    party_member: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # 党员: takes orders
    offers: Mapped[str | None] = mapped_column(Text, nullable=True)  # a neighbour's help offered (亲帮亲/邻帮邻)
    availability: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")  # JSON windows; []: any time
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    registered_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: the demo's seed
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)


class TeamRow(Base):
    """A volunteer team (志愿服务队): its leader, its area, its members (volunteers.team_id)."""
    __tablename__ = "teams"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    leader_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Offer(Base):
    __tablename__ = "offers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(32), index=True)
    volunteer_id: Mapped[str] = mapped_column(String(20), index=True)
    skill: Mapped[str] = mapped_column(String(20))
    # offered -> accepted | declined | expired; offered or accepted -> done (ticket closed) | released (cancelled)
    state: Mapped[str] = mapped_column(String(12))
    # where the TICKET is (not the volunteer): a decline or an expiry asks the next volunteer near here
    village_code: Mapped[str] = mapped_column(String(12), default="")
    town_code: Mapped[str] = mapped_column(String(9), default="")
    # an offer still `offered` at this time expires (null only on rows no timer ever watched)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("ix_offers_due", "state", "expires_at"),)  # the expiry timer's query


OutboxRow, InboxRow = plumbing_tables(Base)
