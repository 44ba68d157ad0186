"""analytics roll-ups for the programme dashboard

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

Roll-up tables kept by the analytics subscribers (:mod:`lealta.analytics.rollups`):
``analytics_members`` (enrolment and first purchase day), ``analytics_member_days`` (one
member's figures per UTC day), ``analytics_daily``, ``analytics_monthly`` and
``analytics_cohorts`` (programme totals, sums of the member rows) and ``analytics_applied``
(outbox rows already applied). ``lealta report rebuild`` refills them from the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import lealta.kit.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = lealta.kit.db.UTCDateTime(timezone=True)


def _flows() -> list[sa.Column[int]]:
    return [
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("revenue_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("points_reversed", sa.BigInteger(), nullable=False),
        sa.Column("points_redeemed", sa.BigInteger(), nullable=False),
        sa.Column("points_expired", sa.BigInteger(), nullable=False),
        sa.Column("points_adjusted", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "analytics_members",
        sa.Column("member_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("enrolled_day", sa.Date(), nullable=False),
        sa.Column("first_order_day", sa.Date(), nullable=True),
        sa.Column("synced_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("member_id"),
    )
    op.create_index("ix_analytics_members_first_order", "analytics_members", ["first_order_day"])
    op.create_table(
        "analytics_member_days",
        *_flows(),
        sa.Column("member_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("enrolled", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "day"),
    )
    op.create_index(
        "ix_analytics_member_days_buyers",
        "analytics_member_days",
        ["day", "member_id", "orders"],
        postgresql_where=sa.text("orders > 0"),
        sqlite_where=sa.text("orders > 0"),
    )
    op.create_table(
        "analytics_daily",
        *_flows(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("new_members", sa.Integer(), nullable=False),
        sa.Column("active_members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "analytics_monthly",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("active_members", sa.Integer(), nullable=False),
        sa.Column("new_members", sa.Integer(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("revenue_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("month"),
    )
    op.create_table(
        "analytics_cohorts",
        sa.Column("cohort", sa.Date(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("active_members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("cohort", "month"),
    )
    op.create_table(
        "analytics_applied",
        sa.Column("outbox_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("applied_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("outbox_id"),
    )


def downgrade() -> None:
    op.drop_table("analytics_applied")
    op.drop_table("analytics_cohorts")
    op.drop_table("analytics_monthly")
    op.drop_table("analytics_daily")
    op.drop_index("ix_analytics_member_days_buyers", table_name="analytics_member_days")
    op.drop_table("analytics_member_days")
    op.drop_index("ix_analytics_members_first_order", table_name="analytics_members")
    op.drop_table("analytics_members")
