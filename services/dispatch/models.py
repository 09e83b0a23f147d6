"""Dispatch's own database: cases (a ticket's lifecycle) and their history, plus outbox and inbox."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.tables import plumbing_tables


class Base(DeclarativeBase):
    pass


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the ticket number
    state: Mapped[str] = mapped_column(String(20), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    category_code: Mapped[str] = mapped_column(String(10))
    department: Mapped[str] = mapped_column(String(40))
    priority: Mapped[int] = mapped_column(Integer)
    village_code: Mapped[str | None] = mapped_column(String(12), index=True, nullable=True)  # None: unplaced
    county_code: Mapped[str] = mapped_column(String(6), index=True)
    address: Mapped[str] = mapped_column(String(200), default="")
    grid_code: Mapped[str | None] = mapped_column(String(20), nullable=True)
    work_key: Mapped[str | None] = mapped_column(String(120), nullable=True)
    assignee_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    assignee_name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    volunteer_skill: Mapped[str | None] = mapped_column(String(20), nullable=True)
    volunteer_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    accept_minutes: Mapped[int] = mapped_column(Integer)
    resolve_hours: Mapped[int] = mapped_column(Integer)
    follow_up_hours: Mapped[int] = mapped_column(Integer)
    accept_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolve_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)

    @classmethod
    def in_area(cls, area: str):
        """Cases inside an area (city, county, town, village or grid code): a filter for queries."""
        if "-" in area:
            return cls.grid_code == area
        if len(area) <= 6:  # city or county: every case knows its county, placed or not
            return cls.county_code.startswith(area, autoescape=True)
        return cls.village_code.startswith(area, autoescape=True)


class HistoryEntry(Base):
    __tablename__ = "history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str | None] = mapped_column(String(50), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")


OutboxRow, InboxRow = plumbing_tables(Base)
