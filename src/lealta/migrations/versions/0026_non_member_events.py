"""non-member customers: their orders and refunds, for the member vs non-member figures

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _moment(name: str) -> sa.Column[object]:
    return sa.Column(name, lealta.kit.db.UTCDateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "non_member_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("order_ref", sa.String(length=128), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        _moment("occurred_at"),
        _moment("order_occurred_at"),
        _moment("received_at"),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response", _JSON, nullable=False),
        sa.CheckConstraint(
            "event_type IN ('order.paid', 'order.refunded')", name="ck_non_member_events_type"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        sa.UniqueConstraint("external_id"),
    )
    op.create_index(
        "ix_non_member_events_customer", "non_member_events", ["customer_id", "order_ref"]
    )
    op.create_index("ix_non_member_events_order_time", "non_member_events", ["order_occurred_at"])


def downgrade() -> None:
    op.drop_table("non_member_events")
