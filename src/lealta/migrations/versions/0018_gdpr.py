"""GDPR erasure, retention and data export

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

The erasure log: one row per erased (or pseudonymised) member, without their personal data.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "member_erasures",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("subject_hash", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", lealta.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", lealta.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("summary", _JSON, nullable=False),
        sa.CheckConstraint("mode IN ('erase', 'pseudonymise')", name="ck_member_erasures_mode"),
        sa.CheckConstraint(
            "status IN ('scheduled', 'completed')", name="ck_member_erasures_status"
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id"),
        sa.UniqueConstraint("pseudonym"),
    )
    op.create_index(
        "ix_member_erasures_subject_hash", "member_erasures", ["subject_hash"], unique=False
    )
    op.create_index(
        "ix_member_erasures_requested_at",
        "member_erasures",
        ["requested_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_member_erasures_requested_at", table_name="member_erasures")
    op.drop_index("ix_member_erasures_subject_hash", table_name="member_erasures")
    op.drop_table("member_erasures")
