"""paid plans: subscriptions, payments reported by the provider, the plan on the member

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06

The member row carries the plan whose benefits hold and until when, so the engine reads
them with the rest of the profile in the one query that loads a member.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LIVE = "status IN ('incomplete', 'trialing', 'active', 'past_due')"


def _moment(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, lealta.kit.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("plan_id", sa.String(length=64), nullable=True))
        batch.add_column(_moment("plan_until", nullable=True))
    op.create_table(
        "plan_subscriptions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_ref", sa.String(length=128), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        _moment("started_at"),
        _moment("trial_ends_at", nullable=True),
        _moment("current_period_start", nullable=True),
        _moment("current_period_end", nullable=True),
        _moment("benefits_until", nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        _moment("canceled_at", nullable=True),
        _moment("ended_at", nullable=True),
        sa.Column("checkout_url", sa.String(length=500), nullable=True),
        _moment("created_at"),
        _moment("updated_at"),
        sa.CheckConstraint(
            "status IN ('incomplete', 'trialing', 'active', 'past_due', 'canceled', 'expired')",
            name="ck_plan_subscriptions_status",
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_ref", name="uq_plan_subscriptions_provider_ref"),
    )
    op.create_index("ix_plan_subscriptions_member_id", "plan_subscriptions", ["member_id"])
    op.create_index("ix_plan_subscriptions_due", "plan_subscriptions", ["status", "benefits_until"])
    op.create_index(
        "uq_plan_subscriptions_live_member",
        "plan_subscriptions",
        ["member_id"],
        unique=True,
        postgresql_where=sa.text(_LIVE),
        sqlite_where=sa.text(_LIVE),
    )
    op.create_table(
        "plan_payments",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_event_id", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        _moment("period_start", nullable=True),
        _moment("period_end", nullable=True),
        _moment("occurred_at"),
        _moment("received_at"),
        sa.Column("payload", _JSON, nullable=False),
        sa.CheckConstraint("outcome IN ('paid', 'failed')", name="ck_plan_payments_outcome"),
        sa.ForeignKeyConstraint(["subscription_id"], ["plan_subscriptions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_event_id", name="uq_plan_payments_event"),
    )
    op.create_index("ix_plan_payments_subscription_id", "plan_payments", ["subscription_id"])
    op.create_index("ix_plan_payments_occurred", "plan_payments", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("plan_payments")
    op.drop_table("plan_subscriptions")
    with op.batch_alter_table("members") as batch:
        batch.drop_column("plan_until")
        batch.drop_column("plan_id")
