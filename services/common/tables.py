"""Tables several services' databases carry, each in its own database: outbox and inbox (every service),
and the gateway calls already taken (those that accept residents' signed calls: intake, notify)."""
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


def gateway_call_table(Base):
    """Declare `gateway_calls` on a service's Base: a signed gateway call already taken, by its signature,
    so the same call again is a replay (services/common/gateways.py)."""

    class GatewayCall(Base):
        __tablename__ = "gateway_calls"
        signature: Mapped[str] = mapped_column(String(64), primary_key=True)
        gateway: Mapped[str] = mapped_column(String(40))
        at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    return GatewayCall
