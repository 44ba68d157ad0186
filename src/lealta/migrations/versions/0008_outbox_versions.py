"""outbox: typed domain events carry a payload version and a backfill mark

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Domain events are now typed, versioned dataclasses (``lealta.outbox``) written by one
``emit()``. Each outbox row records the version of its payload, and whether it comes from
backfilled history (CSV import, demo load) so that subscribers can skip what must not fire.
Existing rows are version 1 and live.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(
            sa.Column("backfill", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("backfill")
        batch_op.drop_column("version")
