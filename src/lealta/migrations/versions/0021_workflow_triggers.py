"""time-based workflow triggers found set-wise

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

The birthday finder (:mod:`lealta.workflows.finders`) asks for the members whose birthday's
``month * 100 + day`` is one of the few celebrated somewhere at that moment. An index on that
expression lets it read those few hundred rows instead of every member (a sequential scan of
100,000 members computed the expression for each). The expression is written per dialect
exactly as the finder compiles it, so each planner matches it: ``date_part`` on PostgreSQL (a
date casts to a timestamp without time zone, so the expression is immutable), slices of the
``YYYY-MM-DD`` text SQLite stores. Autogenerate ignores expression indexes, so the model
does not declare it.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXPRESSION = {
    "postgresql": "CAST(date_part('month', birthday) * 100 + date_part('day', birthday) AS INTEGER)",
    "sqlite": "CAST(substr(birthday, 6, 2) || substr(birthday, 9, 2) AS INTEGER)",
}


def upgrade() -> None:
    expression = _EXPRESSION[op.get_bind().dialect.name]
    op.execute(f"CREATE INDEX ix_members_birthday_month_day ON members (({expression}))")


def downgrade() -> None:
    op.execute("DROP INDEX ix_members_birthday_month_day")
