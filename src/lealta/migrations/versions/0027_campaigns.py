"""campaigns: their state and their recipients (arm, outcome, opens and clicks)

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


_SOURCES = "source IN ('redemption', 'threshold', 'admin', 'workflow', 'referral', 'challenge')"
_SOURCES_WITH_CAMPAIGN = (
    "source IN ('redemption', 'threshold', 'admin', 'workflow', 'referral', 'challenge',"
    " 'campaign')"
)


def _coupon_sources(check: str) -> None:
    with op.batch_alter_table("coupons") as batch:
        batch.drop_constraint("ck_coupons_source", type_="check")
        batch.create_check_constraint("ck_coupons_source", check)


def _moment(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, lealta.kit.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    _coupon_sources(_SOURCES_WITH_CAMPAIGN)
    op.create_table(
        "campaign_states",
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("definition", _JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("programme_version", sa.Integer(), nullable=True),
        sa.Column("audience_size", sa.Integer(), nullable=True),
        _moment("launched_at", nullable=True),
        _moment("finished_at", nullable=True),
        _moment("created_at"),
        _moment("updated_at"),
        sa.Column("detail", _JSON, nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'running', 'paused', 'cancelled', 'completed')",
            name="ck_campaign_states_status",
        ),
        sa.CheckConstraint("source IN ('programme', 'api')", name="ck_campaign_states_source"),
        sa.PrimaryKeyConstraint("campaign_id"),
    )
    op.create_table(
        "campaign_recipients",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        _moment("assigned_at"),
        _moment("reached_at", nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        _moment("opened_at", nullable=True),
        _moment("clicked_at", nullable=True),
        sa.Column("boost_factor", sa.String(length=16), nullable=True),
        _moment("boost_until", nullable=True),
        sa.Column("detail", _JSON, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'held_out', 'suppressed', 'no_consent', 'capped',"
            " 'failed', 'cancelled')",
            name="ck_campaign_recipients_status",
        ),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_campaign_recipients_member",
        "campaign_recipients",
        ["campaign_id", "member_id"],
        unique=True,
    )
    op.create_index(
        "ix_campaign_recipients_pending", "campaign_recipients", ["campaign_id", "status", "id"]
    )
    op.create_index("ix_campaign_recipients_member", "campaign_recipients", ["member_id"])
    op.create_index(
        "ix_campaign_recipients_boost",
        "campaign_recipients",
        ["member_id"],
        sqlite_where=sa.text("boost_until IS NOT NULL"),
        postgresql_where=sa.text("boost_until IS NOT NULL"),
    )

    op.create_index(
        "ix_ledger_campaign_ref",
        "ledger_entries",
        ["source_ref"],
        sqlite_where=sa.text("source_type = 'campaign'"),
        postgresql_where=sa.text("source_type = 'campaign'"),
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_campaign_ref", table_name="ledger_entries")
    op.drop_table("campaign_recipients")
    op.drop_table("campaign_states")
    _coupon_sources(_SOURCES)
