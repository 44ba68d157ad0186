"""The baseline of (iv): a CSV history into one plain table, as raw as the engine allows.

``python -m bench.rawload DATABASE_URL FILE``: on PostgreSQL the file's bytes go through
``COPY ... FROM STDIN (FORMAT csv)`` with psycopg's ``cursor.copy`` (the server parses and
types every field); on SQLite the rows are parsed with :mod:`csv` and written with
``executemany`` in one transaction, under the pragmas Lealta's own connections use. Either
way it is the same rows into the same engine with no logic at all — the floor any import of
that file could reach. It runs as a process of its own, like ``lealta import orders``, so
both times include starting an interpreter (and importing only what its engine needs).
"""

from __future__ import annotations

import csv
import sqlite3
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from bench.orders import COLUMNS

TABLE = "bench_raw_orders"
PG_TYPES = {"occurred_at": "timestamptz", "amount": "numeric(14, 2)", "currency": "char(3)"}
SQLITE_TYPES = {"occurred_at": "TEXT", "amount": "NUMERIC", "currency": "TEXT"}
BLOCK_BYTES = 1 << 20
SQLITE_CHUNK = 10_000


def _columns(types: dict[str, str], default: str) -> str:
    return ", ".join(f"{name} {types.get(name, default)}" for name in COLUMNS)


def load_postgres(url: str, path: Path) -> int:
    """COPY ``path`` into a fresh ``bench_raw_orders``; return the rows loaded."""
    # Imported here: the SQLite baseline must not pay for a driver it never uses (psycopg is
    # about 0.1 s of a start-up).
    import psycopg

    from bench.pg import psycopg_url

    with psycopg.connect(psycopg_url(url)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute(f"CREATE TABLE {TABLE} ({_columns(PG_TYPES, 'text')})")
        names = ", ".join(COLUMNS)
        statement = f"COPY {TABLE} ({names}) FROM STDIN (FORMAT csv, HEADER true)"
        with cur.copy(statement) as copy, path.open("rb") as f:
            while block := f.read(BLOCK_BYTES):
                copy.write(block)
        return cur.rowcount


def _rows(path: Path) -> Iterator[list[str]]:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        yield from reader


def load_sqlite(url: str, path: Path) -> int:
    """executemany the rows of ``path`` into a fresh ``bench_raw_orders``; return the count."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} ({_columns(SQLITE_TYPES, 'TEXT')})")
        insert = f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(COLUMNS))})"
        loaded = 0
        rows = _rows(path)
        conn.execute("BEGIN")
        while chunk := list(islice(rows, SQLITE_CHUNK)):
            conn.executemany(insert, chunk)
            loaded += len(chunk)
        conn.execute("COMMIT")
        return loaded
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    url, file = argv if argv is not None else sys.argv[1:3]
    start = time.perf_counter()
    load = load_sqlite if url.startswith("sqlite") else load_postgres
    rows = load(url, Path(file))
    print(f"loaded {rows} rows in {time.perf_counter() - start:.3f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
