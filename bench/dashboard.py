"""(xii) the programme dashboard's KPIs over a large history: warm p99 of
``GET /v1/analytics/kpis`` (read from the roll-up tables) next to the same figures computed
by SQL on the raw tables (members, orders, ledger entries) on plain psycopg.

The fixture is a bench fixture, not the product path: ``--dashboard-members`` members with
accounts (the members bench's statement), ``--dashboard-orders`` orders and
``--dashboard-ledger`` ledger entries spread over two years, all by ``INSERT … SELECT
generate_series`` with the tables' secondary indexes dropped first and rebuilt after. The
roll-ups are then filled by set-based SQL that applies the definitions of
:func:`lealta.analytics.rollups.member_facts` (``lealta report rebuild`` computes the same rows
member by member in Python; the tests check that equality on small histories).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

from bench import members as members_bench
from bench.load import LoadResult
from bench.pg import throwaway_database
from bench.report import ms, times
from bench.server import running_server
from bench.workload import auth_headers, get_load
from lealta.kit.migrate import upgrade

if TYPE_CHECKING:
    from bench.runner import Run

DAYS = 730

ORDERS_SQL = """
INSERT INTO orders (member_id, external_id, total_minor, refunded_minor, currency, channel,
                    store, status, points_earned, points_reversed, occurred_at, recorded_at)
SELECT 1 + (g * 7919) %% %(members)s, 'o-' || g, 1000 + (g * 104729) %% 20000,
       CASE WHEN g %% 20 = 0 THEN (1000 + (g * 104729) %% 20000) / 2 ELSE 0 END,
       'EUR', 'web', NULL, 'paid', 0, 0, t, t
FROM generate_series(1::bigint, %(n)s::bigint) AS g,
     LATERAL (SELECT %(now)s - ((g * 15485863) %% %(days)s) * interval '1 day'
                             - (g %% 86400) * interval '1 second' AS t) AS at_
"""
# Six in ten earn, two redeem, one expires, one is a manual adjustment.
LEDGER_SQL = """
INSERT INTO ledger_entries (member_id, entry_type, points, balance_after, shortfall, reason,
                            source_type, source_ref, order_id, rule_id, actor, details,
                            occurred_at, recorded_at)
SELECT 1 + (g * 104729) %% %(members)s, k.kind,
       CASE k.kind WHEN 'earn' THEN 10 + g %% 200 WHEN 'adjust' THEN 50
                   ELSE -(5 + g %% 50) END,
       0, 0, 'bench', 'bench', NULL, NULL, NULL, 'bench', '{}'::jsonb, t, t
FROM generate_series(1::bigint, %(n)s::bigint) AS g,
     LATERAL (SELECT CASE WHEN g %% 10 < 6 THEN 'earn' WHEN g %% 10 < 8 THEN 'redeem'
                          WHEN g %% 10 = 8 THEN 'expire' ELSE 'adjust' END AS kind) AS k,
     LATERAL (SELECT %(now)s - ((g * 15485863) %% %(days)s) * interval '1 day'
                             - (g %% 86400) * interval '1 second' AS t) AS at_
"""
ROLLUP_SQL = [
    """
INSERT INTO analytics_member_days (member_id, day, orders, revenue_minor, refunded_minor,
    points_earned, points_reversed, points_redeemed, points_expired, points_adjusted, enrolled)
SELECT member_id, day, sum(o), sum(rev), sum(ref), sum(e), sum(rv), sum(rd), sum(x), sum(a),
       max(en)
FROM (
  SELECT member_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, 1 AS o, total_minor AS rev,
         refunded_minor AS ref, 0 AS e, 0 AS rv, 0 AS rd, 0 AS x, 0 AS a, 0 AS en FROM orders
  UNION ALL
  SELECT member_id, (occurred_at AT TIME ZONE 'UTC')::date, 0, 0, 0,
         CASE entry_type WHEN 'earn' THEN points ELSE 0 END,
         CASE entry_type WHEN 'reverse' THEN -points ELSE 0 END,
         CASE entry_type WHEN 'redeem' THEN -points ELSE 0 END,
         CASE entry_type WHEN 'expire' THEN -points ELSE 0 END,
         CASE entry_type WHEN 'adjust' THEN points ELSE 0 END, 0
  FROM ledger_entries
  UNION ALL
  SELECT id, (enrolled_at AT TIME ZONE 'UTC')::date, 0, 0, 0, 0, 0, 0, 0, 0, 1 FROM members
) AS t GROUP BY member_id, day
""",
    """
INSERT INTO analytics_members (member_id, enrolled_day, first_order_day, synced_at)
SELECT m.id, (m.enrolled_at AT TIME ZONE 'UTC')::date, f.first_day, now()
FROM members m LEFT JOIN (
  SELECT member_id, min(day) AS first_day FROM analytics_member_days WHERE orders > 0
  GROUP BY member_id) f ON f.member_id = m.id
""",
    """
INSERT INTO analytics_daily (day, orders, revenue_minor, refunded_minor, points_earned,
    points_reversed, points_redeemed, points_expired, points_adjusted, new_members,
    active_members)
SELECT day, sum(orders), sum(revenue_minor), sum(refunded_minor), sum(points_earned),
       sum(points_reversed), sum(points_redeemed), sum(points_expired), sum(points_adjusted),
       sum(enrolled), count(*) FILTER (WHERE orders > 0)
FROM analytics_member_days GROUP BY day
""",
    """
INSERT INTO analytics_monthly (month, active_members, new_members, orders, revenue_minor)
SELECT date_trunc('month', day)::date, count(DISTINCT member_id) FILTER (WHERE orders > 0),
       sum(enrolled), sum(orders), sum(revenue_minor)
FROM analytics_member_days GROUP BY 1
""",
    """
INSERT INTO analytics_cohorts (cohort, month, active_members)
SELECT date_trunc('month', a.enrolled_day)::date, date_trunc('month', d.day)::date,
       count(DISTINCT d.member_id)
FROM analytics_member_days d JOIN analytics_members a ON a.member_id = d.member_id
WHERE d.orders > 0 GROUP BY 1, 2
""",
]

# The KPI figures of one period straight from the raw tables (%(start)s..%(end)s are the
# period's first and last instants, %(pstart)s the previous period's first).
RAW_SQL = [
    "SELECT count(*), coalesce(sum(total_minor), 0), coalesce(sum(refunded_minor), 0)"
    " FROM orders WHERE occurred_at >= %(start)s AND occurred_at < %(end)s",
    "SELECT entry_type, sum(points) FROM ledger_entries"
    " WHERE occurred_at >= %(start)s AND occurred_at < %(end)s GROUP BY entry_type",
    "SELECT entry_type, sum(points) FROM ledger_entries WHERE occurred_at < %(end)s"
    " GROUP BY entry_type",
    "SELECT count(*) FROM members WHERE enrolled_at < %(end)s",
    "SELECT count(*), count(*) FILTER (WHERE n >= 2) FROM (SELECT member_id, count(*) AS n"
    " FROM orders WHERE occurred_at >= %(start)s AND occurred_at < %(end)s"
    " GROUP BY member_id) AS t",
    "SELECT count(*), count(c.member_id) FROM (SELECT DISTINCT member_id FROM orders"
    " WHERE occurred_at >= %(pstart)s AND occurred_at < %(start)s) AS p LEFT JOIN"
    " (SELECT DISTINCT member_id FROM orders WHERE occurred_at >= %(start)s"
    " AND occurred_at < %(end)s) AS c ON c.member_id = p.member_id",
    "SELECT count(DISTINCT member_id), coalesce(sum(total_minor - refunded_minor), 0)"
    " FROM orders WHERE occurred_at < %(end)s",
]


def _secondary_indexes(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> list[Any]:
    return conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY(%s)"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        (list(tables),),
    ).fetchall()


def bulk_history(url: str, *, members: int, orders: int, ledger: int, now: datetime) -> float:
    """Members, orders and ledger entries, then the roll-ups. Returns the seconds it took."""
    started = time.perf_counter()
    members_bench.bulk_members(url, members)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        indexes = _secondary_indexes(conn, ("orders", "ledger_entries"))
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        common = {"members": members, "now": now, "days": DAYS}
        conn.execute(ORDERS_SQL, {**common, "n": orders})
        conn.execute(LEDGER_SQL, {**common, "n": ledger})
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE orders")
        conn.execute("VACUUM ANALYZE ledger_entries")
    return time.perf_counter() - started


def build_rollups(url: str) -> float:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        for statement in ROLLUP_SQL:
            conn.execute(statement)
        for table in ("analytics_member_days", "analytics_members", "analytics_daily"):
            conn.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    previous_start: datetime

    @property
    def params(self) -> dict[str, datetime]:
        return {"start": self.start, "end": self.end, "pstart": self.previous_start}


def window(now: datetime, days: int = 30) -> Window:
    """The last ``days`` whole UTC days up to today, as the API's default period."""
    end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    start = end - timedelta(days=days)
    return Window(start, end, start - timedelta(days=days))


def raw_load(url: str, w: Window, *, clients: int, seconds: float) -> LoadResult:
    """``clients`` threads on autocommit psycopg connections running :data:`RAW_SQL` back to
    back (prepared); one latency per full set. Each thread finishes at least one set."""
    result = LoadResult(clients=clients, elapsed=0.0)
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        mine: list[float] = []
        with psycopg.connect(url, autocommit=True) as conn:
            while not mine or time.perf_counter() < deadline:
                t0 = time.perf_counter()
                for sql in RAW_SQL:
                    with conn.cursor() as cur:
                        cur.execute(sql, w.params, prepare=True)
                        cur.fetchall()
                mine.append(time.perf_counter() - t0)
        with lock:
            result.latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - started
    return result


def dashboard_figure(run: Run, admin: str) -> None:
    """(xii) GET /v1/analytics/kpis over a large history against the raw-table SQL."""
    args, clients = run.args, run.args.clients
    members, orders, ledger = args.dashboard_members, args.dashboard_orders, args.dashboard_ledger
    seconds = args.dashboard_seconds
    now = datetime.now(UTC)
    w = window(now)
    with throwaway_database(admin, run.database("dashboard")) as url:
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        run.step(
            f"(xii) bulk-creating {members:,} members, {orders:,} orders and {ledger:,} ledger"
            " entries (generate_series)"
        )
        took = bulk_history(url, members=members, orders=orders, ledger=ledger, now=now)
        run.step(f"(xii) history in {took:.0f} s; filling the roll-ups (set-based SQL)")
        rolled = build_rollups(url)
        run.step(f"(xii) roll-ups in {rolled:.0f} s; starting `lealta run`")
        with running_server(url, workers=args.workers) as server:
            path = (
                f"/v1/analytics/kpis?from={w.start.date()}&to={(w.end - timedelta(days=1)).date()}"
            )
            run.step(f"(xii) GET {path}: {clients} clients, {seconds:.0f} s")
            get_load(server, lambda c, s: path, clients=clients, seconds=1.0)
            api = get_load(server, lambda c, s: path, clients=clients, seconds=seconds)
            answer = httpx.get(
                f"{server.base_url}{path}", headers=auth_headers(server), timeout=60
            ).json()["kpis"]
        run.step(f"(xii) the same figures from the raw tables: {clients} clients, {seconds:.0f} s")
        raw_load(url, w, clients=1, seconds=0.0)  # warm: one set, caches filled
        raw = raw_load(url, w, clients=clients, seconds=seconds)
        with psycopg.connect(url, autocommit=True) as conn:
            count, total, refunded = conn.execute(RAW_SQL[0], w.params).fetchone() or (0, 0, 0)
    net = f"{(total - refunded) / 100:.2f}"
    if (answer["orders"], answer["net_revenue"]) != (count, net):
        run.errors.append(
            f"dashboard KPIs disagree with the raw tables: API orders {answer['orders']}, net"
            f" {answer['net_revenue']}; raw orders {count}, net {net}"
        )
    if not run.check("dashboard KPIs", api):
        return
    label = f"{members:,} members, {orders:,} orders, {ledger:,} ledger rows"
    run.report.add(
        f"(xii) GET /v1/analytics/kpis (30 days vs previous 30) over {label}, {clients} clients",
        f"p50 {ms(api.p50)}, p99 {ms(api.p99)} ({api.rate:,.1f} req/s)",
        f"same figures from raw tables on psycopg ({len(RAW_SQL)} statements, {raw.count} sets):"
        f" p50 {ms(raw.p50)}, p99 {ms(raw.p99)}",
        f"{times(api.p99 / raw.p99)} p99",
    )
    run.report.add(
        f"(xii) roll-up fill over {label} (set-based SQL, once)",
        f"{rolled:,.1f} s",
        f"generating the raw history {took:,.1f} s",
        f"{times(rolled / took)}",
    )


NOTE = (
    "(xii) a throwaway database with --dashboard-members members (the members bench's rows),"
    " --dashboard-orders orders (1 in 20 half refunded) and --dashboard-ledger ledger entries"
    " (6 in 10 earn, 2 redeem, 1 expire, 1 adjust) spread over two years by INSERT … SELECT"
    " generate_series, secondary indexes rebuilt after; the roll-up tables filled by set-based"
    " SQL with the roll-ups' definitions. The API answer (KPIs of the last 30 days and of the"
    " 30 before, read from the roll-ups) runs for --dashboard-seconds after a 1 s warm-up;"
    " baseline: the same figures computed from members, orders and ledger_entries by"
    " 7 prepared statements on autocommit psycopg connections, the same number of threads"
    " (each finishes at least one set), after one warm-up set."
)
