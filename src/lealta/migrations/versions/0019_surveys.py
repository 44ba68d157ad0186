"""surveys and NPS: definitions, one response per member and survey, answers by value

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

Answers are kept one row per question with a column per kind of value (number, choice,
text), so the summaries per period and per tier are plain ``GROUP BY`` queries on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import lealta.kit.db

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _moment(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, lealta.kit.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("definition", _JSON, nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _moment("created_at"),
        _moment("updated_at"),
        _moment("closed_at", nullable=True),
        sa.CheckConstraint("status IN ('open', 'closed')", name="ck_surveys_status"),
        sa.CheckConstraint("points >= 0", name="ck_surveys_points_nonneg"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "survey_responses",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("survey_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("tier_id", sa.String(length=64), nullable=True),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("ledger_entry_id", sa.BigInteger(), nullable=True),
        _moment("answered_at"),
        sa.CheckConstraint(
            "channel IN ('cockpit', 'link', 'api')", name="ck_survey_responses_channel"
        ),
        sa.ForeignKeyConstraint(["survey_id"], ["surveys.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("survey_id", "member_id", name="uq_survey_responses_member"),
    )
    op.create_index(
        "ix_survey_responses_survey_answered", "survey_responses", ["survey_id", "answered_at"]
    )
    op.create_index("ix_survey_responses_member", "survey_responses", ["member_id"])
    op.create_table(
        "survey_answers",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("response_id", sa.BigInteger(), nullable=False),
        sa.Column("survey_id", sa.BigInteger(), nullable=False),
        sa.Column("question_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("choice", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["response_id"], ["survey_responses.id"]),
        sa.ForeignKeyConstraint(["survey_id"], ["surveys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_survey_answers_response", "survey_answers", ["response_id"])
    op.create_index(
        "ix_survey_answers_survey_question", "survey_answers", ["survey_id", "question_id"]
    )


def downgrade() -> None:
    op.drop_table("survey_answers")
    op.drop_table("survey_responses")
    op.drop_table("surveys")
