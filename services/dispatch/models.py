"""Dispatch's own database: cases (a ticket's lifecycle) and their history, the deadlines that watch them,
call tasks (the 10-second callback, the 回访 call, reaching a resident), plus outbox and inbox."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
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
    # supervision (定责): who answers for it, how it is handled, and what the ledger counts
    channel: Mapped[str] = mapped_column(String(20), default="")
    vulnerable: Mapped[bool] = mapped_column(Boolean, default=False)
    handling: Mapped[str] = mapped_column(String(12), default="grid")  # grid, proxy (代办), department (转办)
    level: Mapped[int] = mapped_column(Integer, default=0)  # 0 grid, 1 village, 2 town, 3 county (ladder.py)
    supervisor_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    supervisor_name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    resolve_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: resolve_hours × 60
    filed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decision_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decision: Mapped[str | None] = mapped_column(Text, nullable=True)
    approved: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    accepted_on_time: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # first acceptance
    resolved_on_time: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # first resolution
    overdue_count: Mapped[int] = mapped_column(Integer, default=0)
    escalation_count: Mapped[int] = mapped_column(Integer, default=0)
    return_count: Mapped[int] = mapped_column(Integer, default=0)
    reassign_count: Mapped[int] = mapped_column(Integer, default=0)
    satisfied: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # the last answer to 回访
    closed_how: Mapped[str | None] = mapped_column(String(20), nullable=True)  # resident, follow_up_call, unreached
    late: Mapped[bool] = mapped_column(Boolean, default=False)  # a deadline of the step under way was missed

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
    data: Mapped[str] = mapped_column(Text, default="{}")  # the event's own data (JSON): the ledger's evidence


class EarlyAcknowledgement(Base):
    """A resident's acknowledgement that came before its ticket did: in a surge the acknowledgement's lane
    (common/lanes.py) runs ahead of dispatch's backlog. Kept here until the case opens, then applied to it
    (by `open_case`, or the next tick should the two have crossed) and removed."""
    __tablename__ = "early_acknowledgements"
    ticket_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Deadline(Base):
    """A durable timer: when `due_at` passes, `what` (accept, resolve, decision, task) is checked.

    `kind` is `due_soon` (a warning at a share of the time) or `overdue`. A deadline is moot when
    what it watches has moved on (the case's own due time for `what` is no longer `deadline_at`)."""
    __tablename__ = "deadlines"
    __table_args__ = (Index("ix_deadlines_due", "fired_at", "due_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    what: Mapped[str] = mapped_column(String(12))
    kind: Mapped[str] = mapped_column(String(10))
    level: Mapped[int] = mapped_column(Integer, default=0)
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(10), nullable=True)  # fired, moot


class Task(Base):
    """A call someone must make: the 10-second callback of a hotline request, the 回访 call, or reaching a
    resident no message reached (`reach`, `about` the failed message: one task per message)."""
    __tablename__ = "tasks"
    __table_args__ = (Index("ux_tasks_about", "kind", "about", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))  # callback, follow_up, reach
    assignee_id: Mapped[str] = mapped_column(String(40), index=True)
    assignee_name: Mapped[str] = mapped_column(String(50))
    level: Mapped[int] = mapped_column(Integer, default=0)
    area_code: Mapped[str] = mapped_column(String(20), index=True)  # where it is: its grid, village or county
    work_key: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    done_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    about: Mapped[str | None] = mapped_column(String(80), nullable=True)  # reach: the message id that failed


OutboxRow, InboxRow = plumbing_tables(Base)
