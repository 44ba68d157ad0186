"""(workflow_triggers) Birthday and inactivity triggers over ``--workflow-members`` members:
time to find who is due and start their runs, next to hand-written SQL doing the same.

The fixture is a bench fixture, not the product path: members (birthdays spread over fifty
years, eight timezones from Auckland to Los Angeles, enrolled over four years) and their
accounts (nine in ten with a last order spread over 400 days) are made by ``INSERT … SELECT``
(``generate_series`` on PostgreSQL, a recursive CTE on SQLite), then ANALYZE. A programme with
two workflows (``birthday``; ``inactivity`` for 90 days, one step each) is applied.

Figures, per engine and trigger, each the median of ``REPEAT`` rounds (the three alternate
within a round), each call rolled back after timing:
- find: ``SELECT count(*)`` over :func:`lealta.workflows.finders.due`;
- find + enqueue: :func:`lealta.workflows.runs.start_many` (one ``INSERT … SELECT … ON
  CONFLICT DO NOTHING RETURNING id`` into ``workflow_runs``, skipping members with an active
  run), the product path;
- baseline: the equivalent hand-written ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (same
  columns, same exclusions, no RETURNING). On PostgreSQL it reads the member's local date
  with ``AT TIME ZONE``; SQLite has no timezone database, so its baseline joins the same small
  zone → date table the finder builds. Both list the month-days celebrated somewhere, so they
  use the month-day index of migration 0021 as the finder does. ``NOW`` is not 28 February,
  where the baselines (no 29 February rule) would find fewer members.
Then one committed pass, and a second pass that must start nothing (idempotency by
occurrence), timed.

Run alone: ``python -m bench --only workflow_triggers``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from bench.pg import throwaway_database
from bench.report import ms, times
from lealta.kit.db import Database
from lealta.kit.migrate import upgrade
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.workflows import finders, runs
from lealta.workflows import triggers as t

if TYPE_CHECKING:
    from bench.runner import Run

MEMBERS = 100_000
REPEAT = 5
INACTIVE_DAYS = 90
NOW = datetime(2027, 3, 15, 11, 30, tzinfo=UTC)  # 00:30 on 16 March in Auckland
ZONES = ("Europe/Madrid", "Pacific/Auckland", "America/Los_Angeles", "UTC", "Asia/Tokyo",
         "America/New_York", "Europe/London", "Australia/Sydney")  # fmt: skip
STEP = [{"type": "send_message", "template": "points_earned"}]
PROGRAMME: dict[str, Any] = {
    "name": "Workflow triggers bench",
    "timezone": "Europe/Madrid",
    "workflows": [
        {"id": "birthday", "name": "Birthday", "trigger": {"kind": "birthday"}, "steps": STEP},
        {"id": "inactivity", "name": "Reactivation", "steps": STEP,
         "trigger": {"kind": "inactivity", "days": INACTIVE_DAYS}},
    ],
}  # fmt: skip

_ZONE_CASE = (
    "CASE {x} % 8 " + " ".join(f"WHEN {i} THEN '{z}'" for i, z in enumerate(ZONES)) + " END"
)

PG_SEED = [
    f"""
INSERT INTO members (external_id, birthday, language, timezone, attributes, tags, enrolled_at,
                     enrolment_channel, created_at, updated_at)
SELECT 'w-' || lpad(g::text, 7, '0'), date '1950-01-01' + ((g * 7919) % 18262)::int, 'es',
       {_ZONE_CASE.format(x="g")}, '{{}}'::jsonb, '[]'::jsonb, e, 'import', e, e
FROM generate_series(1::bigint, CAST(:n AS bigint)) AS g,
     LATERAL (SELECT CAST(:now AS timestamptz) - ((g * 104729) % 1460) * interval '1 day'
                     - (g % 86400) * interval '1 second' AS e) AS at_
""",
    """
INSERT INTO accounts (member_id, points_available, points_pending, lifetime_earned,
                      lifetime_spent, points_expired, points_shortfall, qualifying_spend_minor,
                      spend_high_water_minor, orders_count, last_order_at, tier_id, updated_at)
SELECT id, 0, 0, 0, 0, 0, 0, 0, 0, CASE WHEN id % 10 = 0 THEN 0 ELSE 1 END,
       CASE WHEN id % 10 = 0 THEN NULL
            ELSE CAST(:now AS timestamptz) - ((id::bigint * 15485863) % 400) * interval '1 day'
                 - (id % 86400) * interval '1 second' END,
       NULL, CAST(:now AS timestamptz)
FROM members
""",
    "ANALYZE members",
    "ANALYZE accounts",
]
_SQLITE_TS = "strftime('%Y-%m-%d %H:%M:%S', {x}) || '.000000'"
_SQLITE_ENROLLED = _SQLITE_TS.format(
    x="datetime(:now, '-' || ((x * 104729) % 1460) || ' days', '-' || (x % 86400) || ' seconds')"
)
_SQLITE_LAST_ORDER = _SQLITE_TS.format(
    x="datetime(:now, '-' || ((id * 15485863) % 400) || ' days', '-' || (id % 86400) || ' seconds')"
)
SQLITE_SEED = [
    f"""
INSERT INTO members (external_id, birthday, language, timezone, attributes, tags, enrolled_at,
                     enrolment_channel, created_at, updated_at, session_generation)
WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < :n),
     e(x, at) AS (SELECT x, {_SQLITE_ENROLLED} FROM g)
SELECT 'w-' || substr('0000000' || x, -7), date('1950-01-01', '+' || ((x * 7919) % 18262)
       || ' days'), 'es', {_ZONE_CASE.format(x="x")}, '{{}}', '[]', at, 'import', at, at, 0
FROM e
""",
    f"""
INSERT INTO accounts (member_id, points_available, points_pending, lifetime_earned,
                      lifetime_spent, points_expired, points_shortfall, qualifying_spend_minor,
                      spend_high_water_minor, orders_count, last_order_at, tier_id, updated_at)
SELECT id, 0, 0, 0, 0, 0, 0, 0, 0, CASE WHEN id % 10 = 0 THEN 0 ELSE 1 END,
       CASE WHEN id % 10 = 0 THEN NULL
            ELSE {_SQLITE_LAST_ORDER} END,
       NULL, :now
FROM members
""",
    "ANALYZE",
]

_RUN_COLUMNS = """workflow_id, member_id, programme_version, trigger, occurrence, payload, vars,
    status, exclusive, pc, next_at, converted, started_at, updated_at"""
_NO_ACTIVE_RUN = """NOT EXISTS (SELECT 1 FROM workflow_runs r
    WHERE r.workflow_id = CAST(:wf AS varchar) AND r.member_id = m.id
      AND r.status IN ('running', 'waiting'))
  AND NOT EXISTS (SELECT 1 FROM member_erasures x WHERE x.member_id = m.id)"""
_RUN_VALUES = """CAST(:wf AS varchar), m.id, :version, CAST(:kind AS varchar), {occurrence}, '{{}}',
    '{{}}', 'running', true, 0, {now}, false, {now}, {now}"""

_PG_NOW = "CAST(:now AS timestamptz)"
_PG_LAST = _RUN_VALUES.format(
    now=_PG_NOW,
    occurrence="to_char(coalesce(a.last_order_at, m.enrolled_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
)
_SQLITE_LAST = _RUN_VALUES.format(
    now=":now", occurrence="strftime('%Y-%m-%d', coalesce(a.last_order_at, m.enrolled_at))"
)
# The hand-written baselines: PostgreSQL reads local dates with AT TIME ZONE.
PG_BASELINE = {
    "birthday": f"""
INSERT INTO workflow_runs ({_RUN_COLUMNS})
SELECT {_RUN_VALUES.format(now=_PG_NOW, occurrence="to_char(d.local, 'YYYY-MM-DD')")}
FROM members m,
     LATERAL (SELECT (CAST(:now AS timestamptz) AT TIME ZONE m.timezone)::date AS local) d
WHERE CAST(date_part('month', m.birthday) * 100 + date_part('day', m.birthday) AS INTEGER)
      IN ({{candidates}})
  AND date_part('month', m.birthday) = date_part('month', d.local)
  AND date_part('day', m.birthday) = date_part('day', d.local)
  AND {_NO_ACTIVE_RUN}
ON CONFLICT DO NOTHING""",
    "inactivity": f"""
INSERT INTO workflow_runs ({_RUN_COLUMNS})
SELECT {_PG_LAST}
FROM members m LEFT JOIN accounts a ON a.member_id = m.id
WHERE coalesce(a.last_order_at, m.enrolled_at) <= :cutoff AND {_NO_ACTIVE_RUN}
ON CONFLICT DO NOTHING""",
}
# SQLite has no timezone database: the member's date comes from a zone → date table.
SQLITE_BASELINE = {
    "birthday": f"""
WITH z(zone, day) AS (VALUES {{zones}})
INSERT INTO workflow_runs ({_RUN_COLUMNS})
SELECT {_RUN_VALUES.format(now=":now", occurrence="coalesce(z.day, :base_day)")}
FROM members m LEFT JOIN z ON z.zone = m.timezone
WHERE CAST(substr(m.birthday, 6, 2) || substr(m.birthday, 9, 2) AS INTEGER) IN ({{candidates}})
  AND substr(m.birthday, 6, 5) = substr(coalesce(z.day, :base_day), 6, 5)
  AND {_NO_ACTIVE_RUN}
ON CONFLICT DO NOTHING""",
    "inactivity": f"""
INSERT INTO workflow_runs ({_RUN_COLUMNS})
SELECT {_SQLITE_LAST}
FROM members m LEFT JOIN accounts a ON a.member_id = m.id
WHERE coalesce(a.last_order_at, m.enrolled_at) <= :cutoff AND {_NO_ACTIVE_RUN}
ON CONFLICT DO NOTHING""",
}


@dataclass(frozen=True, slots=True)
class TriggerResult:
    engine: str
    trigger: str
    due: int
    find: float
    start: float
    baseline: float
    baseline_rows: int
    committed: float
    second_pass: float
    second_started: int


def _medians(fns: list[Callable[[Session], int]], database: Database) -> list[tuple[float, int]]:
    """Median time of each of ``fns`` over ``REPEAT`` rounds, each call in a transaction rolled
    back after timing; the calls alternate within a round, so a change in the machine's load
    (other processes share the two cores) weighs on all of them alike."""
    spans: list[list[float]] = [[] for _ in fns]
    counts: list[set[int]] = [set() for _ in fns]
    for _ in range(REPEAT):
        for i, fn in enumerate(fns):
            with database.unit_of_work() as session:
                session.connection()
                started = time.perf_counter()
                counts[i].add(fn(session))
                spans[i].append(time.perf_counter() - started)
                session.rollback()
    out = []
    for span, count in zip(spans, counts, strict=True):
        if len(count) != 1:
            raise AssertionError(f"runs disagree on how many rows: {sorted(count)}")
        out.append((statistics.median(span), count.pop()))
    return out


def _naive(at: datetime) -> str:
    """A UTC moment as SQLite stores it (naive text with microseconds)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_zone_rows(programme: Programme) -> tuple[str, str]:
    base, others = t.zone_days(NOW, fallback=programme.timezone)
    rows = ", ".join(f"('{z.zone}', '{z.day.isoformat()}')" for z in [base, *others])
    return rows, base.day.isoformat()


def measure(url: str, engine: str, members: int) -> list[TriggerResult]:
    """Seed ``members`` on the migrated database at ``url``, then time both triggers."""
    database = Database(url, pool_size=2, max_overflow=0)
    try:
        programme = programmes.validate(PROGRAMME)
        with database.unit_of_work() as session:
            pg = engine == "postgresql"
            for statement in PG_SEED if pg else SQLITE_SEED:
                session.execute(text(statement), {"n": members, "now": NOW if pg else _naive(NOW)})
            version = programmes.apply(
                session, programme, actor="bench", now=NOW - timedelta(days=1)
            )
        results = []
        for workflow in programme.workflows:
            trigger: Any = workflow.trigger
            params: dict[str, Any] = {
                "wf": workflow.id,
                "version": version,
                "kind": trigger.kind,
                "now": NOW,
                "cutoff": NOW - timedelta(days=INACTIVE_DAYS),
            }
            # Hand-written SQL would list the month-days celebrated somewhere too (the index).
            base, others = t.zone_days(NOW, fallback=programme.timezone)
            candidates = ", ".join(str(z.month_day) for z in [base, *others])
            if engine == "postgresql":
                baseline_sql = PG_BASELINE[workflow.id]
            else:
                zone_rows, params["base_day"] = _sqlite_zone_rows(programme)
                baseline_sql = SQLITE_BASELINE[workflow.id].replace("{zones}", zone_rows)
                params["now"] = _naive(NOW)
                params["cutoff"] = _naive(params["cutoff"])
            baseline_sql = baseline_sql.replace("{candidates}", candidates)

            def due(trigger: Any = trigger) -> Any:
                return finders.due(trigger, programme=programme, now=NOW)

            def find(session: Session, due: Any = due) -> int:
                return int(session.scalar(select(func.count()).select_from(due().subquery())) or 0)

            def start(session: Session, workflow_id: str = workflow.id, due: Any = due) -> int:
                return runs.start_many(
                    session, workflow_id=workflow_id, version=version, due=due(), now=NOW
                )

            def baseline(session: Session, sql: str = baseline_sql, p: Any = params) -> int:
                result: Any = session.execute(text(sql), p)
                if engine == "sqlite":  # Python's sqlite3 gives no rowcount after WITH …
                    return int(session.scalar(text("SELECT changes()")) or 0)
                return int(result.rowcount)

            (find_s, count), (start_s, started), (base_s, base_rows) = _medians(
                [find, start, baseline], database
            )
            if started != count or base_rows != count:
                raise AssertionError(
                    f"{engine} {workflow.id}: {count} due, start_many started {started},"
                    f" the baseline inserted {base_rows}"
                )
            passes = []
            for _ in range(2):
                with database.unit_of_work() as session:
                    session.connection()
                    began = time.perf_counter()
                    n = start(session)
                    session.commit()
                    passes.append((time.perf_counter() - began, n))
            results.append(
                TriggerResult(
                    engine,
                    workflow.id,
                    count,
                    find_s,
                    start_s,
                    base_s,
                    base_rows,
                    passes[0][0],
                    passes[1][0],
                    passes[1][1],
                )
            )
        return results
    finally:
        database.dispose()


def _report(run: Run, results: list[TriggerResult], members: int) -> None:
    for r in results:
        label = f"(workflow_triggers) {r.trigger}, {members:,} members, {r.engine}"
        run.report.add(
            f"{label}: find + start runs ({r.due:,} due)",
            ms(r.start),
            f"hand-written INSERT … SELECT {ms(r.baseline)}",
            times(r.start / r.baseline) if r.baseline else "—",
        )
        run.report.add(f"{label}: find only (count of due)", ms(r.find))
        run.report.add(
            f"{label}: committed pass, then a second pass (started {r.second_started})",
            f"{ms(r.committed)} / {ms(r.second_pass)}",
        )
        if r.second_started:
            run.errors.append(
                f"(workflow_triggers) {r.engine} {r.trigger}: the second pass started"
                f" {r.second_started} runs again"
            )


def workflow_triggers_figure(run: Run, admin: str) -> None:
    """(workflow_triggers) on PostgreSQL (a throwaway database) and SQLite (a temp file)."""
    members = run.args.workflow_members
    name = run.database("wftrig")
    run.step(f"(workflow_triggers) {members:,} members on PostgreSQL ({name})")
    with throwaway_database(admin, name) as url:
        sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        upgrade(sqlalchemy_url)
        _report(run, measure(sqlalchemy_url, "postgresql", members), members)
    if run.args.no_sqlite:
        return
    run.step(f"(workflow_triggers) {members:,} members on SQLite")
    with tempfile.TemporaryDirectory(prefix="lealta-wftrig-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        _report(run, measure(url, "sqlite", members), members)


NOTE = (
    "(workflow_triggers) a throwaway PostgreSQL database and a SQLite file, each seeded by"
    " INSERT … SELECT with the members (birthdays over fifty years, eight timezones from"
    f" Auckland to Los Angeles) and accounts (a last order in the past 400 days for nine in"
    f" ten), at {NOW.isoformat()}; workflows `birthday` and `inactivity` ({INACTIVE_DAYS}"
    f" days). Each figure is the median of {REPEAT} transactions rolled back after timing:"
    " `finders.due` counted; `runs.start_many` (finder + INSERT … SELECT into workflow_runs,"
    " ON CONFLICT DO NOTHING RETURNING id); baseline: the equivalent hand-written INSERT …"
    " SELECT without RETURNING (PostgreSQL: AT TIME ZONE per member; SQLite: the same zone →"
    " date table; both list the month-days celebrated somewhere, so they use migration"
    " 0021's month-day index as the finder does). Then one committed pass and a second that"
    " must start nothing."
)
