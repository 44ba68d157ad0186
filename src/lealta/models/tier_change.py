from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base
from lealta.models._types import BigId


class TierChange(Base):
    """History of a member's tier: every upgrade, downgrade and initial placement."""

    __tablename__ = "tier_changes"
    __table_args__ = (Index("ix_tier_changes_member_time", "member_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    from_tier: Mapped[str | None] = mapped_column(String(64))
    to_tier: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(16))
    qualifying_value: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
