"""inbound adapters, track/identify and publishable keys

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

Three tables: ``inbound_deliveries`` (each shop-platform webhook delivery, unique per source
and delivery id, so a redelivery acts once), ``anonymous_events`` (``track`` calls that named
only an anonymous id, attached to a member by a later ``identify``) and ``api_key_origins``
(the browser origins a publishable key may be used from).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = lealta.kit.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbound_deliveries",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("customer_id", sa.String(length=128), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response", _JSON, nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('processed', 'duplicate', 'skipped')", name="ck_inbound_deliveries_status"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "delivery_id", name="uq_inbound_deliveries_delivery"),
    )
    op.create_index("ix_inbound_deliveries_received", "inbound_deliveries", ["received_at"])
    op.create_table(
        "anonymous_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("anonymous_id", sa.String(length=128), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("properties", _JSON, nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("member_id", _ID, nullable=True),
        sa.Column("attached_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index(
        "ix_anonymous_events_anonymous", "anonymous_events", ["anonymous_id", "attached_at"]
    )
    op.create_table(
        "api_key_origins",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("api_key_id", _ID, nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_key_id", "origin", name="uq_api_key_origins"),
    )


def downgrade() -> None:
    op.drop_table("api_key_origins")
    op.drop_index("ix_anonymous_events_anonymous", table_name="anonymous_events")
    op.drop_table("anonymous_events")
    op.drop_index("ix_inbound_deliveries_received", table_name="inbound_deliveries")
    op.drop_table("inbound_deliveries")
