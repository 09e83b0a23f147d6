"""Volunteer's own database: volunteers, their offers and service hours, plus outbox and inbox."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.tables import plumbing_tables


class Base(DeclarativeBase):
    pass


class VolunteerRow(Base):
    __tablename__ = "volunteers"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    team_id: Mapped[str] = mapped_column(String(20), index=True)
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    town_code: Mapped[str] = mapped_column(String(9))
    skills: Mapped[str] = mapped_column(String(200))  # comma-separated skill codes
    max_load: Mapped[int] = mapped_column(Integer)
    service_points: Mapped[int] = mapped_column(Integer, default=0)


class Offer(Base):
    __tablename__ = "offers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(32), index=True)
    volunteer_id: Mapped[str] = mapped_column(String(20), index=True)
    skill: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(12))  # offered, accepted, declined, done
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


OutboxRow, InboxRow = plumbing_tables(Base)
