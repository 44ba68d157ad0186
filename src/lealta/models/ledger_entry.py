from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

ENTRY_TYPES = ("earn", "redeem", "adjust", "expire", "reverse")


class LedgerEntry(Base):
    """One signed, append-only change of a member's points. Never updated, never deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(
            "entry_type IN ('earn', 'redeem', 'adjust', 'expire', 'reverse')",
            name="ck_ledger_entries_type",
        ),
        Index("ix_ledger_member_time", "member_id", "occurred_at", "id"),
        # A campaign's points (experiment results read them by the campaign's prefix).
        Index(
            "ix_ledger_campaign_ref",
            "source_ref",
            sqlite_where=text("source_type = 'campaign'"),
            postgresql_where=text("source_type = 'campaign'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    entry_type: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str] = mapped_column(String(500))
    source_type: Mapped[str] = mapped_column(String(32))
    source_ref: Mapped[str | None] = mapped_column(String(200))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    rule_id: Mapped[str | None] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
