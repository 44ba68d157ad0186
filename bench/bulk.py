"""(xi) Bulk points to many members (``lealta bulk points``' path), next to a raw load of the
same number of ledger rows.

On a throwaway PostgreSQL database: ``--bulk-members`` members and accounts are made by
``INSERT … SELECT generate_series`` (a fixture, not the product path). The figure is the
product path in this process, as the CLI runs it: the operation and its rows recorded
(:func:`lealta.bulk.service.create`), then every row applied through the engine in chunks
(:func:`lealta.bulk.service.run`: load states, apply, write the outcome, one statement per
table, row statuses and progress in the same transaction). Then the same file again: a no-op.
The baseline is the least the database must do for that many points: ``COPY`` of as many
rows, shaped like ``ledger_entries``, into an unindexed table of the same columns.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg

from bench.pg import throwaway_database
from bench.report import rate, times
from lealta.bulk import service as bulk
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.migrate import upgrade

if TYPE_CHECKING:
    from bench.runner import Run

BULK_MEMBERS = 100_000

MEMBERS_SQL = """
INSERT INTO members (external_id, language, timezone, attributes, tags, enrolled_at,
                     enrolment_channel, created_at, updated_at, session_generation)
SELECT 'k-' || lpad(g::text, 7, '0'), 'es', 'Europe/Madrid', '{}'::jsonb, '[]'::jsonb,
       %(now)s, 'import', %(now)s, %(now)s, 0
FROM generate_series(1::bigint, %(n)s::bigint) AS g
"""
ACCOUNTS_SQL = """
INSERT INTO accounts (member_id, points_available, points_pending, lifetime_earned,
                      lifetime_spent, points_expired, points_shortfall, qualifying_spend_minor,
                      spend_high_water_minor, orders_count, updated_at)
SELECT id, 0, 0, 0, 0, 0, 0, 0, 0, 0, %(now)s FROM members
"""


def _members(url: str, count: int) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(MEMBERS_SQL, {"now": now, "n": count})
        conn.execute(ACCOUNTS_SQL, {"now": now})
        conn.execute("VACUUM ANALYZE members")
        conn.execute("VACUUM ANALYZE accounts")


def raw_ledger_copy(url: str, count: int) -> float:
    """Seconds to COPY ``count`` ledger-shaped rows into an unindexed table, committed."""
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE raw_ledger (LIKE ledger_entries INCLUDING DEFAULTS)")
        conn.commit()
        started = time.perf_counter()
        columns = (
            "id, member_id, entry_type, points, balance_after, shortfall, reason, source_type,"
            " source_ref, actor, details, occurred_at, recorded_at"
        )
        with conn.cursor() as cur, cur.copy(f"COPY raw_ledger ({columns}) FROM STDIN") as copy:
            for i in range(1, count + 1):
                copy.write_row(
                    (i, i, "adjust", 5, 5, 0, "Anniversary", "bulk", "1", "bench", "{}", now, now)
                )
        conn.commit()
        return time.perf_counter() - started


def bulk_figure(run: Run, admin: str) -> None:
    """(xi) bulk points to ``BULK_MEMBERS`` members against a raw COPY of as many rows."""
    count = BULK_MEMBERS
    with throwaway_database(admin, run.database("bulk")) as url:
        sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        upgrade(sa_url)
        run.step(f"(xi) creating {count:,} members (generate_series)")
        _members(url, count)
        database = Database(sa_url)
        clock = SystemClock()
        try:
            rows = [
                bulk.NewRow(i, f"k-{i:07d}", {"points": 5, "reason": "Anniversary"})
                for i in range(1, count + 1)
            ]
            run.step(f"(xi) bulk points to {count:,} members (create + run)")
            started = time.perf_counter()
            with database.unit_of_work() as session:
                op = bulk.create(
                    session, kind="points", key="bench", request_hash="bench", rows=rows,
                    actor="bench", reason="Anniversary", source="bench", now=clock.now(),
                ).operation  # fmt: skip
            done = bulk.run(database, op.id, clock=clock)
            took = time.perf_counter() - started
            if (done.status, done.applied_rows) != ("done", count):
                run.errors.append(f"bulk points: {done.applied_rows:,} of {count:,} applied")
                return
            started = time.perf_counter()
            with database.unit_of_work() as session:
                again = bulk.create(
                    session, kind="points", key="bench", request_hash="bench", rows=rows,
                    actor="bench", reason="Anniversary", source="bench", now=clock.now(),
                )  # fmt: skip
            bulk.run(database, again.operation.id, clock=clock)
            rerun = time.perf_counter() - started
            if again.created:
                run.errors.append("bulk points: the same key created a second operation")
        finally:
            database.dispose()
        run.step("(xi) baseline: COPY of as many ledger rows")
        raw = raw_ledger_copy(url, count)
        run.report.add(
            f"(xi) bulk points to {count:,} members (one ledger entry and lot each)",
            f"{took:.1f} s ({rate(count / took, 'rows/s')}); same file again {rerun:.1f} s, no-op",
            f"COPY {count:,} ledger rows, no index: {raw:.2f} s ({rate(count / raw, 'rows/s')})",
            f"{times(took / raw)} slower",
        )


NOTE = (
    "(xi) throwaway PostgreSQL database; members made by INSERT … SELECT generate_series; the"
    " figure is lealta.bulk.service.create + run in the bench process (the CLI's path): every"
    " row through the engine, chunks of 2,000, each chunk one transaction writing entries,"
    " lots, accounts, row statuses and progress; baseline COPY into an unindexed copy of"
    " ledger_entries."
)
