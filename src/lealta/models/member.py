from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId


class Member(Base):
    """A shop customer enrolled in the programme, keyed by the shop's own id."""

    __tablename__ = "members"
    # The members list's sorts (migration 0011; on PostgreSQL it also adds GIN indexes on
    # tags, attributes and, with pg_trgm, the searched columns).
    __table_args__ = (
        Index("ix_members_enrolled_at_id", "enrolled_at", "id"),
        Index("ix_members_name_id", "name", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    birthday: Mapped[date | None] = mapped_column(Date)
    language: Mapped[str] = mapped_column(String(8), default="es")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Madrid")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    enrolled_at: Mapped[datetime]
    enrolment_channel: Mapped[str] = mapped_column(String(32), default="api")
    avatar_path: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Raised when the member signs out of the cockpit: older session cookies stop working.
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    # The paid plan whose benefits the member holds, and until when (lealta.plans keeps both
    # in step with the subscription; the engine reads them with the profile).
    plan_id: Mapped[str | None] = mapped_column(String(64))
    plan_until: Mapped[datetime | None]


class Consent(Base):
    """Append-only consent log: the latest row per purpose is the member's current choice."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_member_purpose", "member_id", "purpose", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]
