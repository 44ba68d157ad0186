"""CLV fits stored by a scheduled job; simulator runs

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

``clv_fits`` (each run of the BG/NBD + Gamma-Gamma fit: parameters, or why it failed) and
``clv_predictions`` (per member: the purchase summary at the calibration end and the
predictions at the default horizon), written by the ``analytics.fit_clv`` job
(:mod:`lealta.analytics.clv_store`); ``simulator_runs`` (simulations started from the console,
run by the ``simulator.run`` job; the simulation itself runs in a throwaway database).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_TS = lealta.kit.db.UTCDateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "clv_fits",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("fitted_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("log_likelihood", sa.Float(), nullable=True),
        sa.Column("bg_r", sa.Float(), nullable=True),
        sa.Column("bg_alpha", sa.Float(), nullable=True),
        sa.Column("bg_a", sa.Float(), nullable=True),
        sa.Column("bg_b", sa.Float(), nullable=True),
        sa.Column("gg_p", sa.Float(), nullable=True),
        sa.Column("gg_q", sa.Float(), nullable=True),
        sa.Column("gg_gamma", sa.Float(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column(
            "aggregate",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.CheckConstraint("status IN ('running', 'ok', 'failed')", name="ck_clv_fits_status"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_clv_fits_currency_status", "clv_fits", ["currency", "status", "id"])
    op.create_table(
        "clv_predictions",
        sa.Column("fit_id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("first_purchase", sa.Date(), nullable=False),
        sa.Column("last_purchase", sa.Date(), nullable=False),
        sa.Column("frequency", sa.Float(), nullable=False),
        sa.Column("recency", sa.Float(), nullable=False),
        sa.Column("age", sa.Float(), nullable=False),
        sa.Column("monetary", sa.Float(), nullable=False),
        sa.Column("purchases_90d", sa.Float(), nullable=False),
        sa.Column("purchases_365d", sa.Float(), nullable=False),
        sa.Column("probability_alive", sa.Float(), nullable=False),
        sa.Column("expected_value", sa.Float(), nullable=False),
        sa.Column("clv", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["fit_id"], ["clv_fits.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("fit_id", "member_id"),
    )
    op.create_index("ix_clv_predictions_member", "clv_predictions", ["member_id"])
    op.create_table(
        "simulator_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("as_of", _TS, nullable=False),
        sa.Column("orders_name", sa.String(length=255), nullable=False),
        sa.Column("orders_bytes", sa.BigInteger(), nullable=False),
        sa.Column("orders_csv", sa.LargeBinary(), nullable=True),
        sa.Column("designs", _JSON, nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False),
        sa.Column("rows_read", sa.BigInteger(), nullable=False),
        sa.Column("result", _JSON, nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=1000), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name="ck_simulator_runs_status"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_simulator_runs_created", "simulator_runs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_simulator_runs_created", table_name="simulator_runs")
    op.drop_table("simulator_runs")
    op.drop_index("ix_clv_predictions_member", table_name="clv_predictions")
    op.drop_table("clv_predictions")
    op.drop_index("ix_clv_fits_currency_status", table_name="clv_fits")
    op.drop_table("clv_fits")
