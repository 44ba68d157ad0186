"""Badges earned, challenge progress per period, streaks, and leaderboard names.

Each effect that gives points has a unique key in its own table (a badge once per member, a
challenge once per period, a rung once per run), written in the same transaction as the
ledger entry: a re-delivered event finds the row and gives nothing again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base
from lealta.models._types import BigId


class MemberBadge(Base):
    __tablename__ = "member_badges"
    __table_args__ = (
        UniqueConstraint("member_id", "badge_id", name="uq_member_badges_member_badge"),
        Index("ix_member_badges_badge", "badge_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id", ondelete="CASCADE"))
    badge_id: Mapped[str] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    backfill: Mapped[bool] = mapped_column(default=False)
    awarded_at: Mapped[datetime]


class ChallengeProgress(Base):
    __tablename__ = "challenge_progress"
    __table_args__ = (
        UniqueConstraint(
            "member_id", "challenge_id", "period", name="uq_challenge_progress_member_period"
        ),
        Index("ix_challenge_progress_challenge_period", "challenge_id", "period"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id", ondelete="CASCADE"))
    challenge_id: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(16))
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    target: Mapped[int] = mapped_column(BigInteger)
    completed_at: Mapped[datetime | None]
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    coupon_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class GamificationApplied(Base):
    """One row per (effect, event) already counted: ``challenge:<id>:<event key>``."""

    __tablename__ = "gamification_applied"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("members.id", ondelete="CASCADE"), index=True
    )
    recorded_at: Mapped[datetime]


class StreakState(Base):
    __tablename__ = "streak_states"
    __table_args__ = (
        UniqueConstraint("member_id", "streak_id", name="uq_streak_states_member_streak"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id", ondelete="CASCADE"))
    streak_id: Mapped[str] = mapped_column(String(64))
    started_month: Mapped[int]
    last_month: Mapped[int]
    length: Mapped[int]
    best: Mapped[int]
    updated_at: Mapped[datetime]


class StreakRung(Base):
    __tablename__ = "streak_rungs"
    __table_args__ = (
        UniqueConstraint(
            "member_id", "streak_id", "started_month", "months", name="uq_streak_rungs_once"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id", ondelete="CASCADE"))
    streak_id: Mapped[str] = mapped_column(String(64))
    started_month: Mapped[int]
    months: Mapped[int]
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    awarded_at: Mapped[datetime]


class LeaderboardProfile(Base):
    """The name a member shows on leaderboards (``display_key`` folds case and spaces)."""

    __tablename__ = "leaderboard_profiles"

    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    display_name: Mapped[str] = mapped_column(String(40))
    display_key: Mapped[str] = mapped_column(String(40), unique=True)
    updated_at: Mapped[datetime]
