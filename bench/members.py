"""(x) ``GET /v1/members`` over a large member base: p99 of typical filter and sort
combinations through the running server, next to the same SQL run directly on psycopg.

The fixture is a bench fixture, not the product path: ``--members`` members and their
accounts are made by two ``INSERT … SELECT generate_series`` statements with the list's
secondary indexes dropped first and rebuilt after (as a bulk load would), then ANALYZE.
The baseline's SQL is the endpoint's own: each combination is run once through SQLAlchemy
in this process (the programme read and the list's statements), the statements and
parameters psycopg receives are captured, and the same are then replayed on plain
autocommit psycopg connections, prepared, by as many threads as the HTTP clients.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import psycopg
from sqlalchemy import event

from bench.load import LoadResult
from bench.pg import throwaway_database
from bench.report import ms, times
from bench.server import running_server
from bench.workload import auth_headers, get_load
from lealta.config import DEV_SECRET
from lealta.kit.db import Database
from lealta.kit.migrate import upgrade
from lealta.members import listing
from lealta.programme import service as programmes

if TYPE_CHECKING:
    from bench.runner import Run

PROGRAMME: dict[str, Any] = {
    "name": "Members bench",
    "tiers": {
        "levels": [
            {"id": "bronce", "name": {"es": "Bronce"}, "threshold": 0},
            {"id": "plata", "name": {"es": "Plata"}, "threshold": 500},
            {"id": "oro", "name": {"es": "Oro"}, "threshold": 2000},
        ]
    },
    "attributes": {"city": "string", "vip": "bool"},
}
FIRST = ("María", "José", "Ana", "Jordi", "Lucía", "Pablo", "Carmen", "Javier", "Elena",
         "Hugo", "Sofía", "Diego", "Laura", "Marc", "Paula", "Álvaro", "Irene", "Sergio", "Nuria",
         "Iker")  # fmt: skip
LAST = ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez",
        "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez",
        "Romero", "Alonso", "Gutiérrez", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos",
        "Gil", "Ramírez", "Serrano", "Blanco", "Molina", "Morales", "Suárez", "Ortega", "Delgado",
        "Castro", "Ortiz", "Rubio", "Marín", "Sanz", "Núñez", "Iglesias", "Medina", "Garrido",
        "Cortés", "Castillo", "Santos", "Lozano", "Guerrero", "Cano", "Prieto")  # fmt: skip


def combinations(members: int) -> list[tuple[str, dict[str, str]]]:
    """Typical requests: a first page, a tier by points, a common and a rare text search, a
    tag with an attribute and a points range, and a page deep into the name order."""
    rare = f"b-{members * 3 // 4:07d}"
    return [
        ("newest first (no filter)", {}),
        ("tier=oro, sort by points desc", {"tier": "oro", "sort": "points_available"}),
        ("q=iglesias (1 in 50 match)", {"q": "iglesias"}),
        (f"q={rare} (one external id)", {"q": rare}),
        (
            "tag=vip & attr.city=Sevilla & points_min=500, by lifetime earned",
            {"tag": "vip", "attr.city": "Sevilla", "points_min": "500", "sort": "lifetime_earned"},
        ),
        ("sort by name asc, page 20 (cursor)", {"sort": "name", "order": "asc", "page": "20"}),
    ]


MEMBERS_SQL = """
INSERT INTO members (external_id, email, name, language, timezone, attributes, tags,
                     enrolled_at, enrolment_channel, created_at, updated_at, session_generation)
SELECT 'b-' || lpad(g::text, 7, '0'),
       CASE WHEN g %% 10 = 9 THEN NULL ELSE 'user' || g || '@example.com' END,
       CASE WHEN g %% 20 = 19 THEN NULL
            ELSE (%(first)s::text[])[(1 + (g * 7919) %% 20)::int]
                 || ' ' || (%(last)s::text[])[(1 + (g * 104729) %% 50)::int]
       END,
       'es', 'Europe/Madrid',
       jsonb_build_object(
           'city', (ARRAY['Madrid','Sevilla','Bilbao','Valencia'])[(1 + g %% 4)::int],
           'vip', g %% 10 = 0),
       CASE g %% 5 WHEN 0 THEN '["vip"]'::jsonb WHEN 1 THEN '["newsletter","web"]'::jsonb
                  WHEN 2 THEN '["store"]'::jsonb ELSE '[]'::jsonb END,
       %(now)s - ((g * 15485863) %% 1500) * interval '1 day' - (g %% 86400) * interval '1 second',
       'import', %(now)s, %(now)s, 0
FROM generate_series(1::bigint, %(n)s::bigint) AS g
"""
ACCOUNTS_SQL = """
INSERT INTO accounts (member_id, points_available, points_pending, lifetime_earned,
                      lifetime_spent, points_expired, points_shortfall, qualifying_spend_minor,
                      spend_high_water_minor, orders_count, last_order_at, tier_id, updated_at)
SELECT id, (id * 7919) %% 5000, 0, (id * 7919) %% 5000 + (id %% 7) * 100, (id %% 7) * 100, 0, 0,
       (id * 104729) %% 500000, (id * 104729) %% 500000, id %% 12,
       CASE WHEN id %% 12 = 0 THEN NULL ELSE %(now)s - (id %% 700) * interval '1 day' END,
       CASE WHEN id %% 10 < 6 THEN NULL WHEN id %% 10 < 9 THEN 'plata' ELSE 'oro' END,
       %(now)s
FROM members
"""


def bulk_members(url: str, count: int) -> float:
    """``count`` members with accounts; the secondary indexes of both tables are dropped
    before and rebuilt after the insert. Returns the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i"
            " WHERE i.tablename IN ('members', 'accounts') AND NOT EXISTS ("
            "   SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        params = {"first": list(FIRST), "last": list(LAST), "now": now, "n": count}
        conn.execute(MEMBERS_SQL, params)
        conn.execute(ACCOUNTS_SQL, {"now": now})
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE members")
        conn.execute("VACUUM ANALYZE accounts")
    return time.perf_counter() - started


@dataclass
class Captured:
    """The statements one request runs, as psycopg receives them."""

    statements: list[tuple[str, Any]]


def capture(database: Database, params: list[tuple[str, str]]) -> Captured:
    """Run the endpoint's reads once (programme, then the page) and keep their SQL."""
    seen: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    with database.unit_of_work(write=False, autocommit=True) as session:
        # Cached per process, as in the server after its first request: the search mode and
        # the programme document (the digest read stays in the captured statements).
        listing.search_mode(session)
        programmes.current(session, now=datetime.now(UTC))
        event.listen(database.read_engine, "before_cursor_execute", listen)
        try:
            programme = programmes.current(session, now=datetime.now(UTC))
            # The server runs with the default (development) secret: its cursors verify here.
            query = listing.parse(params, programme=programme, secret=DEV_SECRET)
            listing.page(session, query, secret=DEV_SECRET)
        finally:
            event.remove(database.read_engine, "before_cursor_execute", listen)
    return Captured(seen)


def raw_load(url: str, captured: Captured, *, clients: int, seconds: float) -> LoadResult:
    """``clients`` threads, each on its own autocommit psycopg connection, replaying the
    captured statements (prepared) back to back; one latency per replayed request."""
    result = LoadResult(clients=clients, elapsed=0.0)
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        mine: list[float] = []
        with psycopg.connect(url, autocommit=True) as conn:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                for sql, parameters in captured.statements:
                    with conn.cursor() as cur:
                        cur.execute(sql, parameters, prepare=True)
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


def resolve_pages(
    server_url: str, headers: dict[str, str], params: dict[str, str]
) -> dict[str, str]:
    """``page: N`` stands for the cursor of page N (followed through the API once)."""
    pages = int(params.pop("page", "1"))
    with httpx.Client(base_url=server_url, headers=headers, timeout=60) as client:
        for _ in range(pages - 1):
            body = client.get("/v1/members", params=params).json()
            params = {**params, "cursor": body["next_cursor"]}
    return params


def members_figure(run: Run, admin: str) -> None:
    """(x) the members list over ``--members`` members: API p99 against the same SQL."""
    args, clients = run.args, run.args.clients
    count, seconds = args.members, args.members_seconds
    with throwaway_database(admin, run.database("members")) as url:
        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        run.step(f"(x) bulk-creating {count:,} members with accounts (generate_series)")
        took = bulk_members(url, count)
        run.step(f"(x) {count:,} members in {took:.0f} s; starting `lealta run`")
        with running_server(url, workers=args.workers) as server:
            headers = auth_headers(server)
            r = httpx.put(f"{server.base_url}/v1/programme", json=PROGRAMME, headers=headers)
            r.raise_for_status()
            database = Database(url.replace("postgresql://", "postgresql+psycopg://", 1))
            try:
                for label, combo in combinations(count):
                    params = resolve_pages(server.base_url, headers, dict(combo))
                    path = f"/v1/members?{urlencode(params)}"
                    run.step(f"(x) GET /v1/members, {label}: {clients} clients, {seconds:.0f} s")
                    fixed: Callable[[int, int], str] = lambda w, s, p=path: p  # noqa: E731
                    get_load(server, fixed, clients=clients, seconds=1.0)
                    api = get_load(server, fixed, clients=clients, seconds=seconds)
                    captured = capture(database, list(params.items()))
                    raw_load(url, captured, clients=clients, seconds=1.0)
                    raw = raw_load(url, captured, clients=clients, seconds=seconds)
                    if not run.check(f"members list ({label})", api):
                        continue
                    run.report.add(
                        f"(x) GET /v1/members over {count:,} members: {label}, {clients} clients",
                        f"p50 {ms(api.p50)}, p99 {ms(api.p99)} ({api.rate:,.0f} req/s)",
                        f"same SQL on psycopg ({len(captured.statements)} statements):"
                        f" p50 {ms(raw.p50)}, p99 {ms(raw.p99)}",
                        f"{times(api.p99 / raw.p99)} p99",
                    )
            finally:
                database.dispose()


NOTE = (
    "(x) a throwaway database with --members members and accounts made by INSERT … SELECT"
    " generate_series (secondary indexes rebuilt after, then VACUUM ANALYZE; names from 20 x 50"
    " Spanish first and last names, 1 in 10 without email, 1 in 20 without name); the demo-like"
    " programme has tiers bronce/plata/oro and attributes city/vip. Each combination runs for"
    " --members-seconds after a 1 s warm-up; baseline: the statements the endpoint runs for it"
    " (programme read and list query, captured from SQLAlchemy) replayed prepared on plain"
    " autocommit psycopg connections by the same number of threads."
)
