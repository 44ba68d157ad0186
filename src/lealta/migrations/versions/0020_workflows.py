"""workflows, versions and runs, steps and waits

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

Runs, their step log and the pause switch. Two unique indexes make starting a run safe under
concurrency: one run per (workflow, member, occurrence), and — partial, while the run is
active and the workflow allows no re-entry — one active run per (workflow, member).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ACTIVE = "status IN ('running', 'waiting') AND exclusive"


def _moment(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, lealta.kit.db.UTCDateTime(timezone=True), nullable=nullable)


_SOURCES = "source IN ('redemption', 'threshold', 'admin')"
_SOURCES_WITH_WORKFLOW = (
    "source IN ('redemption', 'threshold', 'admin', 'workflow', 'referral', 'challenge')"
)


def _coupon_sources(check: str) -> None:
    with op.batch_alter_table("coupons") as batch:
        batch.drop_constraint("ck_coupons_source", type_="check")
        batch.create_check_constraint("ck_coupons_source", check)


def upgrade() -> None:
    _coupon_sources(_SOURCES_WITH_WORKFLOW)
    op.create_table(
        "workflow_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("programme_version", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=64), nullable=False),
        sa.Column("occurrence", sa.String(length=200), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("vars", _JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exclusive", sa.Boolean(), nullable=False),
        sa.Column("pc", sa.Integer(), nullable=False),
        _moment("next_at", nullable=True),
        sa.Column("wait_event", sa.String(length=64), nullable=True),
        sa.Column("converted", sa.Boolean(), nullable=False),
        sa.Column("exit_reason", sa.String(length=200), nullable=True),
        _moment("started_at"),
        _moment("updated_at"),
        _moment("finished_at", nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'waiting', 'completed', 'exited', 'failed')",
            name="ck_workflow_runs_status",
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "workflow_id", "member_id", "occurrence", name="uq_workflow_runs_occurrence"
        ),
    )
    op.create_index(
        "uq_workflow_runs_active",
        "workflow_runs",
        ["workflow_id", "member_id"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )
    op.create_index("ix_workflow_runs_due", "workflow_runs", ["next_at"])
    op.create_index("ix_workflow_runs_member", "workflow_runs", ["member_id", "status"])
    op.create_index(
        "ix_workflow_runs_workflow_started", "workflow_runs", ["workflow_id", "started_at"]
    )
    op.create_table(
        "workflow_steps",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("step_type", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        _moment("at"),
        sa.ForeignKeyConstraint(["run_id"], ["workflow_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "seq", name="uq_workflow_steps_seq"),
    )
    op.create_index("ix_workflow_steps_run", "workflow_steps", ["run_id"])
    op.create_table(
        "workflow_switches",
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        _moment("updated_at"),
        sa.PrimaryKeyConstraint("workflow_id"),
    )


def downgrade() -> None:
    op.drop_table("workflow_switches")
    op.drop_index("ix_workflow_steps_run", table_name="workflow_steps")
    op.drop_table("workflow_steps")
    op.drop_index("ix_workflow_runs_workflow_started", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_member", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_due", table_name="workflow_runs")
    op.drop_index("uq_workflow_runs_active", table_name="workflow_runs")
    op.drop_table("workflow_runs")
    _coupon_sources(_SOURCES)
