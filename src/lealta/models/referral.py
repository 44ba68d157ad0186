from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

REFERRAL_STATUSES = (
    "pending",
    "waiting",
    "rewarded",
    "flagged",
    "refused",
    "rejected",
    "reversed",
    "void",
)
REFERRAL_ROLES = ("referrer", "friend")


class ReferralCode(Base):
    """A member's referral code (made on first use); ``visits`` counts landing-page views."""

    __tablename__ = "referral_codes"

    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(16), unique=True)
    visits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime]


class Referral(Base):
    """A friend referred by a member. One per friend (the unique key makes racing claims
    one referral); the qualifying order and the review decision are kept on the row."""

    __tablename__ = "referrals"
    __table_args__ = (
        UniqueConstraint("friend_id", name="uq_referrals_friend"),
        Index("ix_referrals_referrer_created", "referrer_id", "created_at"),
        Index("ix_referrals_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    referrer_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("members.id", ondelete="CASCADE")
    )
    friend_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    order_external_id: Mapped[str | None] = mapped_column(String(128))
    order_at: Mapped[datetime | None]
    order_total_minor: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    rewarded_at: Mapped[datetime | None]
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[datetime | None]


class ReferralReward(Base):
    """What one side of a referral got: at most one row per (referral, role), so a reward is
    credited once whatever retries or races; ``reversed_at`` when a refund took it back."""

    __tablename__ = "referral_rewards"
    __table_args__ = (
        UniqueConstraint("referral_id", "role", name="uq_referral_rewards_role"),
        Index("ix_referral_rewards_member", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    referral_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("referrals.id", ondelete="CASCADE")
    )
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(Integer, default=0)
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime]
    reversed_at: Mapped[datetime | None]
    reversal_entry_id: Mapped[int | None] = mapped_column(BigInteger)
