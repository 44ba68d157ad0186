"""Tiny PostgreSQL helper for scripts/test.sh (ping, create and drop a database)."""

from __future__ import annotations

import sys

import psycopg
from psycopg import sql


def main() -> int:
    action, url = sys.argv[1], sys.argv[2]
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        if action == "ping":
            conn.execute("SELECT 1")
        elif action == "create":
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(sys.argv[3])))
        elif action == "drop":
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(sys.argv[3]))
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
