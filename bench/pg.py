"""Throwaway PostgreSQL databases and the pgbench TPC-B baseline."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

PGBENCH_CANDIDATES = ("pgbench", "/usr/bin/pgbench")


def _swap_dbname(admin_url: str, dbname: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{dbname}"


def server_version(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def psycopg_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as psycopg takes it (as
    ``lealta.kit.db.psycopg_conninfo`` does, without importing SQLAlchemy into the raw-load
    baseline, whose start-up is part of its figure)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def autovacuum(admin_url: str) -> str:
    """The server's ``autovacuum`` setting (``on``/``off``)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return str(row[0]) if row else "?"


def vacuum_analyze(url: str) -> None:
    """``VACUUM (ANALYZE)`` the database at ``url``: what autovacuum does on a production
    server. Without it (a CI cluster may run with ``autovacuum = off``) the accounts and lots
    that every event updates pile up dead versions and the planner never learns the tables'
    sizes; after ~10,000 events the ingest statement took 20 ms instead of 0.2 ms here, and a
    figure measured then says more about the missing vacuum than about Lealta."""
    with psycopg.connect(psycopg_url(url)) as conn:
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE)")


@contextmanager
def throwaway_database(admin_url: str, name: str) -> Iterator[str]:
    """CREATE DATABASE ``name``, yield its URL, and always DROP it (forcing connections off)."""
    ident = sql.Identifier(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield _swap_dbname(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@dataclass(frozen=True, slots=True)
class PgbenchResult:
    tps: float
    clients: int
    seconds: int


def _pgbench_binary() -> str:
    for candidate in PGBENCH_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise RuntimeError("pgbench not found (install postgresql-client)")


def pgbench_tpcb(
    url: str, *, clients: int = 8, threads: int = 2, seconds: int = 10
) -> PgbenchResult:
    """``pgbench -i -s 1`` then a TPC-B run of ``seconds``; the tps without connection time."""
    info = conninfo_to_dict(url)
    conn_args = [
        "-h",
        str(info.get("host") or "127.0.0.1"),
        "-p",
        str(info.get("port") or 5432),
        "-U",
        str(info.get("user") or "postgres"),
    ]
    dbname = str(info["dbname"])
    binary = _pgbench_binary()
    subprocess.run(
        [binary, "-i", "-s", "1", "-q", *conn_args, dbname],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    run = subprocess.run(
        [binary, "-c", str(clients), "-j", str(threads), "-T", str(seconds), *conn_args, dbname],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout)
    if match is None:
        match = re.search(r"tps = ([0-9.]+)", run.stdout)
    if match is None:
        raise RuntimeError(f"could not read tps from pgbench output:\n{run.stdout}")
    return PgbenchResult(float(match.group(1)), clients, seconds)
