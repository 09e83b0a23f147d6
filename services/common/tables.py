"""The plumbing tables every service's database carries: outbox and inbox."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column


def plumbing_tables(Base):
    """Declare `outbox` and `inbox` on a service's declarative Base."""

    class OutboxRow(Base):
        """An event written in the same transaction as the state change that caused it."""
        __tablename__ = "outbox"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
        event_id: Mapped[str] = mapped_column(String(36), index=True)  # one event may go to two exchanges
        exchange: Mapped[str] = mapped_column(String(100))
        routing_key: Mapped[str] = mapped_column(String(255))
        body: Mapped[str] = mapped_column(Text)
        created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
        sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
        __table_args__ = (Index("ix_outbox_unsent", "sent_at", "id"),)

    class InboxRow(Base):
        """An event a consumer has already applied: a redelivery changes nothing."""
        __tablename__ = "inbox"
        event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
        consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
        received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    return OutboxRow, InboxRow
