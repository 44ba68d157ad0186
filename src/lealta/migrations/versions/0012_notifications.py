"""notifications: templates, messages, in-app inbox, consent and caps

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

Two tables: ``notification_templates`` (the team's own templates per key, channel and
language; keys without a row use the templates shipped in :mod:`lealta.notify.defaults`) and
``messages`` (every message to a member, its status and outcome; ``inapp`` messages are the
cockpit inbox). Consent stays in the ``consents`` log.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = lealta.kit.db.UTCDateTime(timezone=True)
_CHANNELS = "channel IN ('email', 'sms', 'push', 'inapp')"


def upgrade() -> None:
    op.create_table(
        "notification_templates",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint(_CHANNELS, name="ck_notification_templates_channel"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", "channel", "language", name="uq_notification_templates_variant"),
    )
    op.create_table(
        "messages",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("template_key", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("effect_key", sa.String(length=200), nullable=False),
        sa.Column("context", _JSON, nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("due_at", _TS, nullable=False),
        sa.Column("sent_at", _TS, nullable=True),
        sa.Column("read_at", _TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'delayed', 'sent', 'failed', 'capped', 'no_consent')",
            name="ck_messages_status",
        ),
        sa.CheckConstraint(_CHANNELS, name="ck_messages_channel"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("effect_key"),
    )
    op.create_index("ix_messages_member_id", "messages", ["member_id", "id"], unique=False)
    op.create_index(
        "ix_messages_member_channel_sent",
        "messages",
        ["member_id", "channel", "sent_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_member_channel_sent", table_name="messages")
    op.drop_index("ix_messages_member_id", table_name="messages")
    op.drop_table("messages")
    op.drop_table("notification_templates")
