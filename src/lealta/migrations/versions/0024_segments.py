"""segments, memberships and counts over time

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06

``segment_members`` is keyed by (segment, member) so the recompute's set-wise INSERT of the
newcomers and DELETE of the leavers are index lookups; its member index answers "which
segments is this member in" in one lookup.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _moment(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, lealta.kit.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("definition", _JSON, nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        _moment("computed_at", nullable=True),
        _moment("created_at"),
        _moment("updated_at"),
        sa.CheckConstraint("source IN ('programme', 'api')", name="ck_segments_source"),
        sa.CheckConstraint("kind IN ('dynamic', 'static')", name="ck_segments_kind"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "segment_members",
        sa.Column("segment_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        _moment("entered_at"),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("segment_id", "member_id"),
    )
    op.create_index("ix_segment_members_member", "segment_members", ["member_id", "segment_id"])
    op.create_table(
        "segment_counts",
        sa.Column("segment_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("segment_id", "day"),
    )


def downgrade() -> None:
    op.drop_table("segment_counts")
    op.drop_index("ix_segment_members_member", table_name="segment_members")
    op.drop_table("segment_members")
    op.drop_table("segments")
