"""Notify's own database: contacts, the delivery log, surveys, plus outbox and inbox."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.tables import gateway_call_table, plumbing_tables


class Base(DeclarativeBase):
    pass


class Contact(Base):
    """How to reach the resident of a ticket (copied from intake's ticket_received)."""
    __tablename__ = "contacts"
    ticket_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    locale: Mapped[str] = mapped_column(String(10), default="zh-CN")
    category_zh: Mapped[str] = mapped_column(String(100), default="")
    category_en: Mapped[str] = mapped_column(String(200), default="")
    area_code: Mapped[str | None] = mapped_column(String(12), nullable=True)  # its village (or county)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # ticket_version of the last closed/reopened/cancelled seen: a resolution older than that (its event
    # handled late, on another queue) is not asked about
    outcome_version: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Delivery(Base):
    """One message to one resident on one channel: written pending, sent by the courier, never twice on purpose.

    States: pending (due at `next_attempt_at`) -> sending (claimed: `claimed_by` sends it, nobody else
    may before `claimed_until`) -> sent, or back to pending (a temporary failure, later), or failed.
    `attempts` counts claims: tries begun, a try cut short by a crash included. A message that failed on
    its channel goes on as a new delivery on the next one (`fallback_of`: the delivery it replaces; its
    message id is the first one's plus `.<channel>`), see delivery_rules.py."""
    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(80), unique=True)  # idempotency key at the peer
    ticket_id: Mapped[str] = mapped_column(String(32), index=True)
    template: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(10))
    address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), index=True)  # pending, sending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reference: Mapped[str | None] = mapped_column(String(300), nullable=True)
    answer: Mapped[str | None] = mapped_column(String(300), nullable=True)  # the peer's, when it took it
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the courier (instance) that has it
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # its lease
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the first try on this channel: patience (DELIVERY_PATIENCE_SECONDS) counts from here
    first_tried_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    fallback_of: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the delivery this one goes on from
    # the recipient's addresses ({"email", "phone"}, JSON) for a fallback; NULL: none other (staff)
    contact: Mapped[str | None] = mapped_column(Text, nullable=True)
    # an acknowledgement (delivery_rules.is_urgent): claimed before every other due delivery
    urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Survey(Base):
    """A follow-up (回访) round, one per resolution: a durable timer with three steps.

    Stored when the ticket is resolved, with `due_at` follow_up_hours later; then, each when `due_at`
    comes: asked (the survey is sent), reminded (REMIND_AFTER_HOURS later, unanswered), given up
    (GIVE_UP_AFTER_HOURS after the reminder: `survey_unanswered`, and a 回访 call decides). `due_at` is
    when the next step is due, NULL once nothing is left to do (answered, closed or given up).
    """
    __tablename__ = "surveys"
    __table_args__ = (UniqueConstraint("ticket_id", "round"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(32), index=True)
    round: Mapped[int] = mapped_column(Integer)
    code: Mapped[str | None] = mapped_column(String(16), nullable=True)  # sent with the survey: proves the answer
    ticket_version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # of the resolution asked about
    resolved_by: Mapped[str | None] = mapped_column(String(50), nullable=True)  # named in the survey
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    asked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    given_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # ticket moved on
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    satisfied: Mapped[bool | None] = mapped_column(nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")



class ReplyAttempt(Base):
    """Every answer forwarded to us, counted or refused, and why."""
    __tablename__ = "reply_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    gateway: Mapped[str] = mapped_column(String(40), default="")
    ticket_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    outcome: Mapped[str] = mapped_column(String(12))  # counted, forged, replayed, refused, unexpected, invalid
    reason: Mapped[str] = mapped_column(String(300), default="")
    remote: Mapped[str] = mapped_column(String(64), default="")


OutboxRow, InboxRow = plumbing_tables(Base)
GatewayCall = gateway_call_table(Base)
