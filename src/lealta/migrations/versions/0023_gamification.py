"""badges, challenges, streaks and leaderboards

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06

Badges earned (once per member), challenge progress per member and period, events already
counted (so a re-delivered event counts once), streak runs and their rungs, and the names
members show on leaderboards.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import lealta.kit.db

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _moment(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, lealta.kit.db.UTCDateTime(timezone=True), nullable=nullable)


def _member() -> sa.Column[object]:
    return sa.Column("member_id", sa.BigInteger(), nullable=False)


def _member_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "member_badges",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        _member(),
        sa.Column("badge_id", sa.String(length=64), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("ledger_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("backfill", sa.Boolean(), nullable=False),
        _moment("awarded_at"),
        _member_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id", "badge_id", name="uq_member_badges_member_badge"),
    )
    op.create_index("ix_member_badges_badge", "member_badges", ["badge_id"])
    op.create_table(
        "challenge_progress",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        _member(),
        sa.Column("challenge_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("target", sa.BigInteger(), nullable=False),
        _moment("completed_at", nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("ledger_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("coupon_id", sa.BigInteger(), nullable=True),
        _moment("updated_at"),
        _member_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "member_id", "challenge_id", "period", name="uq_challenge_progress_member_period"
        ),
    )
    op.create_index(
        "ix_challenge_progress_challenge_period", "challenge_progress", ["challenge_id", "period"]
    )
    op.create_table(
        "gamification_applied",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        _member(),
        _moment("recorded_at"),
        _member_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_gamification_applied_member_id", "gamification_applied", ["member_id"])
    op.create_table(
        "streak_states",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        _member(),
        sa.Column("streak_id", sa.String(length=64), nullable=False),
        sa.Column("started_month", sa.Integer(), nullable=False),
        sa.Column("last_month", sa.Integer(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("best", sa.Integer(), nullable=False),
        _moment("updated_at"),
        _member_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id", "streak_id", name="uq_streak_states_member_streak"),
    )
    op.create_table(
        "streak_rungs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        _member(),
        sa.Column("streak_id", sa.String(length=64), nullable=False),
        sa.Column("started_month", sa.Integer(), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("ledger_entry_id", sa.BigInteger(), nullable=True),
        _moment("awarded_at"),
        _member_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "member_id", "streak_id", "started_month", "months", name="uq_streak_rungs_once"
        ),
    )
    op.create_table(
        "leaderboard_profiles",
        _member(),
        sa.Column("display_name", sa.String(length=40), nullable=False),
        sa.Column("display_key", sa.String(length=40), nullable=False),
        _moment("updated_at"),
        _member_fk(),
        sa.PrimaryKeyConstraint("member_id"),
        sa.UniqueConstraint("display_key"),
    )


def downgrade() -> None:
    op.drop_table("leaderboard_profiles")
    op.drop_table("streak_rungs")
    op.drop_table("streak_states")
    op.drop_index("ix_gamification_applied_member_id", table_name="gamification_applied")
    op.drop_table("gamification_applied")
    op.drop_index("ix_challenge_progress_challenge_period", table_name="challenge_progress")
    op.drop_table("challenge_progress")
    op.drop_index("ix_member_badges_badge", table_name="member_badges")
    op.drop_table("member_badges")
