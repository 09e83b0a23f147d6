"""The console's own database: who is signed in. Nothing of a ticket is kept here; the services own that."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class SignIn(Base):
    """A signed-in person: the session cookie's hash (never the cookie itself), the staff token the services
    are called with on their behalf, and the CSRF token every form of the session carries."""
    __tablename__ = "sign_ins"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's value
    token: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(30))
    area: Mapped[str] = mapped_column(String(20))
    department: Mapped[str | None] = mapped_column(String(40), nullable=True)
    csrf: Mapped[str] = mapped_column(String(64))
    signed_in_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
