from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

ERASURE_MODES = ("erase", "pseudonymise")
ERASURE_STATUSES = ("scheduled", "completed")


class MemberErasure(Base):
    """The record that a member's personal data was erased, kept without that data.

    ``pseudonym`` is random and becomes the member's ``external_id``, so the ledger, orders
    and aggregates stay linked to one anonymous account. ``subject_hash`` is an HMAC of the
    former external id under the instance's secret: it lets a repeated request say "already
    erased" without storing the id. ``summary`` counts the rows touched per table.
    """

    __tablename__ = "member_erasures"
    __table_args__ = (
        CheckConstraint("mode IN ('erase', 'pseudonymise')", name="ck_member_erasures_mode"),
        CheckConstraint("status IN ('scheduled', 'completed')", name="ck_member_erasures_status"),
        Index("ix_member_erasures_subject_hash", "subject_hash"),
        Index("ix_member_erasures_requested_at", "requested_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), unique=True
    )
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    subject_hash: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
