"""bulk operations and migration imports

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

Bulk operations (points, tags, attributes, tier moves to many members): one row per
operation, unique by its idempotency key, and one row per input line with its status
(``pending`` until the job reaches it, then ``applied`` or ``rejected`` with a code and a
message). Imports from another system need no table of their own: an opening balance is a
ledger entry with ``source_type = 'migration'`` naming the source system.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _at(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, lealta.kit.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "bulk_operations",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("processed_rows", sa.Integer(), nullable=False),
        sa.Column("applied_rows", sa.Integer(), nullable=False),
        sa.Column("rejected_rows", sa.Integer(), nullable=False),
        sa.Column("points_applied", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _at("created_at", nullable=False),
        _at("started_at", nullable=True),
        _at("finished_at", nullable=True),
        sa.CheckConstraint(
            "kind IN ('points', 'tags', 'attributes', 'tier')", name="ck_bulk_operations_kind"
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name="ck_bulk_operations_status"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key", name="uq_bulk_operations_key"),
    )
    op.create_index(
        "ix_bulk_operations_created", "bulk_operations", ["created_at", "id"], unique=False
    )
    op.create_table(
        "bulk_operation_rows",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("operation_id", _ID, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("message", sa.String(length=500), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'applied', 'rejected')", name="ck_bulk_operation_rows_status"
        ),
        sa.ForeignKeyConstraint(["operation_id"], ["bulk_operations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("operation_id", "line", name="uq_bulk_operation_rows_line"),
    )
    op.create_index(
        "ix_bulk_operation_rows_status",
        "bulk_operation_rows",
        ["operation_id", "status", "line"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_bulk_operation_rows_status", table_name="bulk_operation_rows")
    op.drop_table("bulk_operation_rows")
    op.drop_index("ix_bulk_operations_created", table_name="bulk_operations")
    op.drop_table("bulk_operations")
