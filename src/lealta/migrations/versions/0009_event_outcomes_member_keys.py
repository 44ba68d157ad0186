"""events keep their own outcome; every per-member table carries member_id

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

The event row is now the idempotency record of an event: it stores the request's hash and
the response, so ingesting one event claims one row instead of two. Existing events take
their hash and response from ``idempotency_records``.

``lot_allocations`` and ``order_items`` gain ``member_id`` (filled from their lot and
order), so every hot table can be distributed by member (see README, "Scaling out").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_hash", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("status_code", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("response", _JSON, nullable=True))
    op.execute(
        """
        UPDATE events SET
            request_hash = (SELECT r.request_hash FROM idempotency_records r
                            WHERE r.scope = 'event' AND r.key = events.idempotency_key),
            status_code = (SELECT r.status_code FROM idempotency_records r
                           WHERE r.scope = 'event' AND r.key = events.idempotency_key),
            response = (SELECT r.response FROM idempotency_records r
                        WHERE r.scope = 'event' AND r.key = events.idempotency_key)
        """
    )
    with op.batch_alter_table("lot_allocations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("member_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE lot_allocations SET member_id ="
        " (SELECT l.member_id FROM point_lots l WHERE l.id = lot_allocations.lot_id)"
    )
    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("member_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE order_items SET member_id ="
        " (SELECT o.member_id FROM orders o WHERE o.id = order_items.order_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.drop_column("member_id")
    with op.batch_alter_table("lot_allocations", schema=None) as batch_op:
        batch_op.drop_column("member_id")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("response")
        batch_op.drop_column("status_code")
        batch_op.drop_column("request_hash")
