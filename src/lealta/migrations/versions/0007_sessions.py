"""sessions: a generation counter that ends every console or cockpit session of a person

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

Session cookies are signed, not stored, so a copied cookie used to outlive a sign-out. The
cookie now carries the ``session_generation`` it was issued under; signing out, a new
password, a new role or disabling a console user raises the number, and every older cookie
is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("admin_users", "members"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("session_generation", sa.Integer(), server_default="0", nullable=False)
            )


def downgrade() -> None:
    for table in ("members", "admin_users"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("session_generation")
