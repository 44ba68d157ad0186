from __future__ import annotations

from sqlalchemy import BigInteger, Integer

# BIGINT on PostgreSQL; SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
