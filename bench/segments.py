"""(segments) recomputing five segments over ``--segment-members`` members on PostgreSQL:
the product path (:func:`lealta.segments.service.recompute`: the compiled query into a scratch
table, then the set-wise diff with outbox rows) next to the same work written by hand in SQL
on plain psycopg.

The fixture is a bench fixture: the members bench's members and accounts and three orders a
member over two years (the dashboard bench's statement), all by ``INSERT … SELECT
generate_series``. The five segments are the demo programme's kinds: a tier, an activity band,
the top 10 % spend (deciles), a frequency (orders a year) and RFM champions (quintiles).
Each side computes them once (everyone enters) and then again a week later (the measured
run: a realistic diff, a few per cent of members moving).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from bench import dashboard as dashboard_bench
from bench import members as members_bench
from bench.pg import throwaway_database
from bench.report import times
from lealta.kit.db import Database
from lealta.kit.migrate import upgrade
from lealta.segments import service
from lealta.segments.schema import Segment as SegmentDef

if TYPE_CHECKING:
    from bench.runner import Run

MEMBERS = 1_000_000
ORDERS_PER_MEMBER = 3

SEGMENTS = [
    {"id": "b-oro", "all": [{"field": "tier", "op": "eq", "value": "oro"}]},
    {"id": "b-at-risk", "all": [{"field": "activity", "op": "eq", "value": "at_risk"}]},
    {"id": "b-top", "all": [{"field": "spend_decile", "op": "eq", "value": 10, "days": 365}]},
    {"id": "b-frequent", "all": [{"field": "frequency", "op": "gte", "value": 3, "days": 365}]},
    {
        "id": "b-champions",
        "all": [
            {"field": "rfm_r", "op": "gte", "value": 4},
            {"field": "rfm_f", "op": "gte", "value": 4},
            {"field": "rfm_m", "op": "gte", "value": 4},
        ],
    },
]

# The same five conditions by hand (%(now)s, %(since)s = now - 365 days, %(a)s / %(i)s =
# now - 90 / 180 days).
_WINDOW = """(SELECT member_id, count(*) AS n, sum(total_minor - refunded_minor) AS spend
  FROM orders WHERE occurred_at >= %(since)s AND occurred_at <= %(now)s
  AND total_minor - refunded_minor > 0 GROUP BY member_id)"""
HAND_SQL = [
    "SELECT a.member_id FROM accounts a WHERE a.tier_id = 'oro'",
    "SELECT a.member_id FROM accounts a WHERE a.last_order_at <= %(a)s AND a.last_order_at > %(i)s",
    f"SELECT member_id FROM (SELECT member_id, ntile(10) OVER (ORDER BY spend, member_id) AS d"
    f" FROM {_WINDOW} w WHERE spend > 0) t WHERE d = 10",
    f"SELECT member_id FROM {_WINDOW} w WHERE n * 365.0 / 365 >= 3",
    f"""SELECT member_id FROM (SELECT a.member_id,
       ntile(5) OVER (ORDER BY a.last_order_at, a.member_id) AS r,
       ntile(5) OVER (ORDER BY coalesce(w.n, 0), a.member_id) AS f,
       ntile(5) OVER (ORDER BY coalesce(w.spend, 0), a.member_id) AS m
     FROM accounts a LEFT JOIN {_WINDOW} w ON w.member_id = a.member_id
     WHERE a.last_order_at IS NOT NULL) t WHERE r >= 4 AND f >= 4 AND m >= 4""",
]
# The same diff as the product, into the same tables (same constraints and indexes), for
# segments of their own: only the SQL is written by hand.
HAND_DIFF = [
    "CREATE TEMP TABLE IF NOT EXISTS hand_eval (member_id bigint PRIMARY KEY)",
    "TRUNCATE hand_eval",
    "INSERT INTO hand_eval {select}",
    "ANALYZE hand_eval",
    "INSERT INTO outbox (topic, version, member_id, payload, backfill, created_at)"
    " SELECT 'segment.entered', 1, e.member_id, %(payload)s::jsonb, %(first)s, %(now)s"
    " FROM hand_eval e WHERE NOT EXISTS (SELECT 1 FROM segment_members h"
    " WHERE h.segment_id = %(sid)s AND h.member_id = e.member_id)",
    "INSERT INTO outbox (topic, version, member_id, payload, backfill, created_at)"
    " SELECT 'segment.left', 1, h.member_id, %(payload)s::jsonb, false, %(now)s"
    " FROM segment_members h WHERE h.segment_id = %(sid)s"
    " AND NOT EXISTS (SELECT 1 FROM hand_eval e WHERE e.member_id = h.member_id)",
    "DELETE FROM segment_members h WHERE h.segment_id = %(sid)s AND NOT EXISTS (SELECT 1 FROM"
    " hand_eval e WHERE e.member_id = h.member_id)",
    "INSERT INTO segment_members (segment_id, member_id, entered_at) SELECT %(sid)s,"
    " e.member_id, %(now)s FROM hand_eval e WHERE NOT EXISTS (SELECT 1 FROM segment_members h"
    " WHERE h.segment_id = %(sid)s AND h.member_id = e.member_id)",
    "SELECT count(*) FROM hand_eval",
]


def fixture(url: str, members: int, now: datetime) -> float:
    started = time.perf_counter()
    members_bench.bulk_members(url, members)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        indexes = dashboard_bench._secondary_indexes(conn, ("orders",))
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute(
            dashboard_bench.ORDERS_SQL,
            {"members": members, "now": now, "days": dashboard_bench.DAYS,
             "n": members * ORDERS_PER_MEMBER},
        )  # fmt: skip
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE orders")
    return time.perf_counter() - started


def product(db: Database, now: datetime) -> tuple[float, list[int]]:
    """The five segments through the service, each in its own transaction (as the job)."""
    started = time.perf_counter()
    sizes = []
    for data in SEGMENTS:
        with db.unit_of_work() as session:
            row = service.get(session, str(data["id"]))
            sizes.append(service.recompute(session, row, now=now, currency="EUR").members)
    return time.perf_counter() - started, sizes


def by_hand(url: str, now: datetime, ids: list[int], *, first: bool) -> tuple[float, list[int]]:
    params: dict[str, Any] = {
        "now": now, "since": now - timedelta(days=365), "a": now - timedelta(days=90),
        "i": now - timedelta(days=180),
    }  # fmt: skip
    sizes = []
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for sid, select in zip(ids, HAND_SQL, strict=True):
            payload = f'{{"segment_key": "h-{sid}", "at": "{now.isoformat()}"}}'
            values = {**params, "sid": sid, "payload": payload, "first": first}
            for statement in HAND_DIFF:
                sql = statement.replace("{select}", select)
                cur = conn.execute(sql.encode(), values if "%(" in sql else None)  # type: ignore[call-overload]
            row = cur.fetchone()
            sizes.append(int(row[0]) if row else 0)
            conn.commit()
        return time.perf_counter() - started, sizes


def segments_figure(run: Run, admin: str) -> None:
    """Five segments recomputed over a large population against hand-written SQL."""
    members = run.args.segment_members
    now = datetime.now(UTC)
    later = now + timedelta(days=7)
    with throwaway_database(admin, run.database("segments")) as url:
        sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        upgrade(sa_url)
        run.step(f"(segments) bulk-creating {members:,} members and their orders (generate_series)")
        took = fixture(url, members, now)
        db = Database(sa_url)
        try:
            with db.unit_of_work() as session:
                ids = []
                for data in SEGMENTS:
                    service.create(session, SegmentDef.model_validate(data), actor="bench", now=now)
                    hand = {**data, "id": f"h{str(data['id'])[1:]}"}
                    ids.append(
                        service.create(
                            session, SegmentDef.model_validate(hand), actor="bench", now=now
                        ).id
                    )
            run.step(f"(segments) fixture in {took:.0f} s; first computation (everyone enters)")
            first, _ = product(db, now)
            hand_first, _ = by_hand(url, now, ids, first=True)
            run.step(
                f"(segments) first: product {first:.1f} s, by hand {hand_first:.1f} s; a week later"
            )
            again, sizes = product(db, later)
            hand_again, hand_sizes = by_hand(url, later, ids, first=False)
        finally:
            db.dispose()
    if sizes != hand_sizes:
        run.errors.append(f"segments disagree with the hand-written SQL: {sizes} vs {hand_sizes}")
        return
    label = f"{members:,} members, {members * ORDERS_PER_MEMBER:,} orders"
    run.report.add(
        f"(segments) recompute 5 segments a week later over {label} (sizes {sizes})",
        f"{again:,.2f} s",
        f"hand-written SQL, same diff and outbox rows: {hand_again:,.2f} s",
        times(again / hand_again),
    )
    run.report.add(
        f"(segments) first computation of the 5 segments (every member enters) over {label}",
        f"{first:,.2f} s",
        f"hand-written SQL: {hand_first:,.2f} s",
        times(first / hand_first),
    )


NOTE = (
    "(segments) a throwaway database with --segment-members members and accounts (the members"
    " bench's rows) and three orders a member over two years (the dashboard bench's statement),"
    " by INSERT … SELECT generate_series. Five segments (tier, activity band, top 10 % spend,"
    " 3+ orders a year, RFM champions) are recomputed by lealta.segments.service.recompute (the"
    " compiled query into a scratch table, then outbox rows, DELETE and INSERT set-wise), once"
    " (everyone enters) and again a week later (measured); baseline: the same five conditions"
    " and the same diff statements written by hand, on plain psycopg, into tables of their own."
)
