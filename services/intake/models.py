"""Intake's own database: residents and tickets, plus its outbox and inbox."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.tables import gateway_call_table, plumbing_tables


class Base(DeclarativeBase):
    pass


class Resident(Base):
    __tablename__ = "residents"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    phone: Mapped[str | None] = mapped_column(String(32), unique=True, nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Ticket(Base):
    __tablename__ = "tickets"
    # a publisher's idempotency key is its own: two publishers may use the same message id
    __table_args__ = (UniqueConstraint("publisher", "message_id", name="uq_tickets_publisher_message"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the ticket number residents see
    publisher: Mapped[str] = mapped_column(String(100), default="")  # its broker user, or open311:<client>
    message_id: Mapped[str] = mapped_column(String(100), index=True)  # the publisher's idempotency key
    channel: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(10))
    # a point alone is known only to its county until the county's dispatch centre places it
    village_code: Mapped[str | None] = mapped_column(String(12), index=True, nullable=True)
    county_code: Mapped[str] = mapped_column(String(6), index=True)
    address: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text)
    resident_id: Mapped[str] = mapped_column(ForeignKey("residents.id"))
    # how to reach whoever asked, as given with this request: an unverified submission never
    # changes what another request (or the resident record) holds
    contact_name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    contact_phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    contact_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="received")
    status_version: Mapped[int] = mapped_column(Integer, default=0)
    assignee_id: Mapped[str | None] = mapped_column(String(50), nullable=True)
    assignee_name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    grid_code: Mapped[str | None] = mapped_column(String(20), nullable=True)  # from dispatch's routing
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # what Open311 shows about a request (never personal data)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    long: Mapped[float | None] = mapped_column(Float, nullable=True)
    attributes: Mapped[str] = mapped_column(Text, default="{}")  # JSON of the category's attributes
    media_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    expected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    merged_into: Mapped[str | None] = mapped_column(String(32), nullable=True)  # a repeat of that ticket
    # the resident asked to withdraw it (a gateway-signed call): told to dispatch once, which cancels it
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CatalogueVersion(Base):
    """Each version of the service catalogue intake has served, as loaded from catalogue.yaml."""
    __tablename__ = "catalogue_versions"
    version: Mapped[str] = mapped_column(String(40), primary_key=True)
    document: Mapped[str] = mapped_column(Text)  # the catalogue as JSON
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ContactRead(Base):
    """Whoever reads (or tries to read) a resident's full phone number or name leaves a record of it."""
    __tablename__ = "contact_reads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(32), index=True)
    staff_id: Mapped[str] = mapped_column(String(50), index=True)  # the token's subject
    role: Mapped[str] = mapped_column(String(20), default="")
    reason: Mapped[str] = mapped_column(String(200))
    read_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    granted: Mapped[bool] = mapped_column(default=True)
    refusal: Mapped[str | None] = mapped_column(String(200), nullable=True)  # why not, when refused
    area_code: Mapped[str] = mapped_column(String(20), default="", index=True)  # where the ticket lies

    @classmethod
    def in_area(cls, area: str):
        return cls.area_code == area if "-" in area else cls.area_code.startswith(area, autoescape=True)



class CancelAttempt(Base):
    """Every withdrawal a gateway forwarded, taken or refused, and why (never who sent it)."""
    __tablename__ = "cancel_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    gateway: Mapped[str] = mapped_column(String(40), default="")
    ticket_id: Mapped[str] = mapped_column(String(40), default="", index=True)
    outcome: Mapped[str] = mapped_column(String(12))  # requested, again, forged, refused, unexpected, unknown, invalid
    reason: Mapped[str] = mapped_column(String(300), default="")
    remote: Mapped[str] = mapped_column(String(64), default="")


OutboxRow, InboxRow = plumbing_tables(Base)
GatewayCall = gateway_call_table(Base)
