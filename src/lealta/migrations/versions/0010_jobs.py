"""jobs: durable background work (the queue the workers claim from)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

One table of jobs: a registered task's name and JSON arguments, a queue and a priority, when
it may run, how many attempts it had and may have, the lease of the worker holding it, the
last error, and an optional unique ``dedupe_key`` (the same key enqueued twice is one job).
Partial indexes serve the claim (due jobs of a queue) and the recovery of expired leases.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_CLAIMABLE = "status IN ('queued', 'retrying')"


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("args", _JSON, nullable=False),
        sa.Column("queue", sa.String(length=50), server_default="default", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("run_at", lealta.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", lealta.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("created_at", lealta.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", lealta.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", lealta.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'retrying', 'succeeded', 'dead', 'discarded')",
            name="ck_jobs_status",
        ),
        sa.CheckConstraint("attempts >= 0", name="ck_jobs_attempts_nonneg"),
        sa.CheckConstraint("max_attempts >= 1", name="ck_jobs_max_attempts_positive"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index(
        "ix_jobs_claim",
        "jobs",
        [sa.text("priority DESC"), "run_at", "id"],
        unique=False,
        postgresql_where=sa.text(_CLAIMABLE),
        sqlite_where=sa.text(_CLAIMABLE),
    )
    op.create_index(
        "ix_jobs_lease",
        "jobs",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    op.create_index("ix_jobs_status_task", "jobs", ["status", "task", "id"], unique=False)
    op.create_index("ix_jobs_status_finished", "jobs", ["status", "finished_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_status_finished", table_name="jobs")
    op.drop_index("ix_jobs_status_task", table_name="jobs")
    op.drop_index("ix_jobs_lease", table_name="jobs")
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.drop_table("jobs")
