"""referral codes, referrals and the review queue

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06

Codes are made on first use (a member who never shares costs no row); one referral per
friend (the unique key decides racing claims); one reward row per (referral, role) keeps
every credit single.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _moment(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, lealta.kit.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "referral_codes",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("visits", sa.Integer(), server_default="0", nullable=False),
        _moment("created_at"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("member_id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "referrals",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("referrer_id", sa.BigInteger(), nullable=False),
        sa.Column("friend_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("flags", _JSON, nullable=False),
        sa.Column("order_external_id", sa.String(length=128), nullable=True),
        _moment("order_at", nullable=True),
        sa.Column("order_total_minor", sa.BigInteger(), nullable=True),
        _moment("created_at"),
        _moment("updated_at"),
        _moment("rewarded_at", nullable=True),
        sa.Column("reviewed_by", sa.String(length=200), nullable=True),
        _moment("reviewed_at", nullable=True),
        sa.ForeignKeyConstraint(["referrer_id"], ["members.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["friend_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("friend_id", name="uq_referrals_friend"),
    )
    op.create_index("ix_referrals_referrer_created", "referrals", ["referrer_id", "created_at"])
    op.create_index("ix_referrals_status", "referrals", ["status"])
    op.create_table(
        "referral_rewards",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("referral_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("ledger_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("coupon_code", sa.String(length=64), nullable=True),
        sa.Column("details", _JSON, nullable=False),
        _moment("created_at"),
        _moment("reversed_at", nullable=True),
        sa.Column("reversal_entry_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["referral_id"], ["referrals.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("referral_id", "role", name="uq_referral_rewards_role"),
    )
    op.create_index("ix_referral_rewards_member", "referral_rewards", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_referral_rewards_member", table_name="referral_rewards")
    op.drop_table("referral_rewards")
    op.drop_index("ix_referrals_status", table_name="referrals")
    op.drop_index("ix_referrals_referrer_created", table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("referral_codes")
