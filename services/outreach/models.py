"""outreach's own database: the household register, household heads, visit plans, visits and the needs they
found, the record of every change and every read of personal data, plus outbox and inbox.

Nothing is deleted by an API: a head or a household is deactivated (`active` false, when and by whom), a plan
stopped, a visit cancelled; `register_changes` keeps what each change replaced.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.tables import plumbing_tables


class Base(DeclarativeBase):
    pass


class Head(Base):
    """A household head (联户长): a resident who looks after about ten neighbouring households."""
    __tablename__ = "heads"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    phone: Mapped[str] = mapped_column(String(20))
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    party_member: Mapped[bool] = mapped_column(Boolean, default=False)  # 党员: takes orders (党员接单)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    registered_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deactivated_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Household(Base):
    __tablename__ = "households"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    grid_code: Mapped[str] = mapped_column(String(20), index=True)
    address: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(20))  # whom a ticket from this household acknowledges
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)  # e.g. a child's, far away
    contact_by: Mapped[str] = mapped_column(String(10))  # phone, door, sms: how the household prefers to be reached
    key_groups: Mapped[str] = mapped_column(String(200), default="")  # comma-separated (registry.KEY_GROUPS)
    grid_worker_id: Mapped[str] = mapped_column(String(40), index=True)
    head_id: Mapped[str | None] = mapped_column(ForeignKey("heads.id"), nullable=True, index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    forgotten_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # retention.py
    version: Mapped[int] = mapped_column(Integer, default=1)


class Member(Base):
    __tablename__ = "household_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    relation: Mapped[str] = mapped_column(String(20))  # 户主, 配偶, 子女, …: as the household says
    born: Mapped[int | None] = mapped_column(Integer, nullable=True)  # year
    key_groups: Mapped[str] = mapped_column(String(200), default="")


class PlanRow(Base):
    """A recurring visit of a household (schedules.Plan)."""
    __tablename__ = "visit_plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    every_days: Mapped[int] = mapped_column(Integer)
    due_minutes: Mapped[int] = mapped_column(Integer)
    starts_on: Mapped[date] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DayOpened(Base):
    """A calendar day whose visits were made (schedules.py): once, whichever instance or tick came first."""
    __tablename__ = "days_opened"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    visits: Mapped[int] = mapped_column(Integer)


class Visit(Base):
    __tablename__ = "visits"
    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("visit_plans.id"))
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    kind: Mapped[str] = mapped_column(String(10))
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    grid_code: Mapped[str] = mapped_column(String(20), index=True)
    level: Mapped[int] = mapped_column(Integer)  # visits.LEVELS
    responsible_id: Mapped[str] = mapped_column(String(40), index=True)
    assigned_to: Mapped[str] = mapped_column(String(40), index=True)  # who it was made for: the ledger's "per head"
    state: Mapped[str] = mapped_column(String(10))  # due, done, cancelled
    first_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # the rung's deadline
    missed: Mapped[bool] = mapped_column(Boolean, default=False)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    done_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contact_made: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    on_time: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (UniqueConstraint("plan_id", "day", name="uq_visit_plan_day"),
                      Index("ix_visits_due", "state", "due_at"))


class NightTalk(Base):
    """A village night talk (乡村夜话): when, where, who hosted, how many came; what was raised is in `needs`."""
    __tablename__ = "night_talks"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    held_on: Mapped[date] = mapped_column(Date, index=True)
    host: Mapped[str] = mapped_column(String(50))
    attendance: Mapped[int] = mapped_column(Integer)
    # where the village is answered for the opinions raised (its committee), not a villager's number
    village_phone: Mapped[str] = mapped_column(String(20))
    village_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Need(Base):
    """A need found going to the door, sent to intake as a submission with its id as message id: found on a
    visit (`visit`: channel grid_visit, the household the resident), or raised at a night talk (`talk`: channel
    night_talk, a named resident; `opinion`: the same, a group's, answered to the village)."""
    __tablename__ = "needs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), default="visit")  # visit, talk, opinion
    visit_id: Mapped[str | None] = mapped_column(ForeignKey("visits.id"), nullable=True, index=True)
    household_id: Mapped[str | None] = mapped_column(ForeignKey("households.id"), nullable=True, index=True)
    talk_id: Mapped[str | None] = mapped_column(ForeignKey("night_talks.id"), nullable=True, index=True)
    category: Mapped[str] = mapped_column(String(10))
    description: Mapped[str] = mapped_column(Text)
    attributes: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the category's attributes, for intake
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # its order in its visit or talk
    # intake's receipt: sent (none yet), received or merged (with the ticket), or rejected (with the reason)
    status: Mapped[str] = mapped_column(String(10), default="sent")
    ticket_no: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class RegisterChange(Base):
    """Who changed the register, when, and what the change replaced (a JSON object of the fields before)."""
    __tablename__ = "register_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    what: Mapped[str] = mapped_column(String(20))  # head, household
    subject_id: Mapped[str] = mapped_column(String(20), index=True)
    change: Mapped[str] = mapped_column(String(20))  # registered, edited, deactivated
    before: Mapped[str] = mapped_column(Text, default="{}")


class HouseholdRead(Base):
    """Personal data read: who read which household, when (for the audit)."""
    __tablename__ = "household_reads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    reader: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    household_id: Mapped[str] = mapped_column(String(20), index=True)


OutboxRow, InboxRow = plumbing_tables(Base)
