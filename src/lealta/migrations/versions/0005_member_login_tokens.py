"""member cockpit: sign-in link requests and member pictures

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import lealta.kit.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_login_tokens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("created_at", lealta.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", lealta.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", lealta.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(
        "ix_member_login_tokens_member_id", "member_login_tokens", ["member_id"], unique=False
    )
    op.create_index(
        "ix_member_login_tokens_email_time",
        "member_login_tokens",
        ["email_hash", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_member_login_tokens_ip_time",
        "member_login_tokens",
        ["client_ip", "created_at"],
        unique=False,
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("avatar_path", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("avatar_path")
    op.drop_index("ix_member_login_tokens_ip_time", table_name="member_login_tokens")
    op.drop_index("ix_member_login_tokens_email_time", table_name="member_login_tokens")
    op.drop_index("ix_member_login_tokens_member_id", table_name="member_login_tokens")
    op.drop_table("member_login_tokens")
