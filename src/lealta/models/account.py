from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base


class Account(Base):
    """A member's cached balances, updated under a row lock in the ledger's transaction.

    Every figure here is derivable from ``ledger_entries``; ``lealta ledger verify`` checks it.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("points_available >= 0", name="ck_accounts_available_nonneg"),
        CheckConstraint("points_pending >= 0", name="ck_accounts_pending_nonneg"),
        # The members list's sorts and tier filter (migration 0011). They cost the hot write
        # PostgreSQL's in-place (HOT) update of the account row (measured: no change in the
        # ingest rate); without them a sorted, filtered list over 1,000,000 members took
        # seconds instead of tens of milliseconds.
        Index("ix_accounts_points_available", "points_available", "member_id"),
        Index("ix_accounts_lifetime_earned", "lifetime_earned", "member_id"),
        Index("ix_accounts_last_order_at", "last_order_at", "member_id"),
        Index("ix_accounts_tier_id", "tier_id", "member_id"),
    )

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    points_available: Mapped[int] = mapped_column(BigInteger, default=0)
    points_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    points_expired: Mapped[int] = mapped_column(BigInteger, default=0)
    points_shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    qualifying_spend_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    spend_high_water_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    orders_count: Mapped[int] = mapped_column(default=0)
    last_order_at: Mapped[datetime | None]
    tier_id: Mapped[str | None] = mapped_column(String(64))
    tier_since: Mapped[datetime | None]
    tier_held_until: Mapped[datetime | None] = mapped_column(index=True)
    updated_at: Mapped[datetime]
