"""(iv) ``lealta import orders`` of a generated history against a raw bulk load of the same rows.

On one database (a throwaway PostgreSQL database or a fresh SQLite file): migrate, apply the
demo programme (in force since before the history starts), import an empty file (the cost of
starting) and a small probe history (its speed sizes the main file when no size was asked
for, its peak RSS is the baseline of "flat memory"), import the main history and check that
every order and refund landed, then load the same file into one plain table with
:mod:`bench.rawload`. Every step is a process of its own, timed from start to exit, its peak
RSS taken with ``wait4``.
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.orders import HistoryStats, write_history
from bench.pg import psycopg_url
from bench.proc import Measured, run_measured
from bench.server import LEALTA, ROOT, lealta_env

DEMO_PROGRAMME = ROOT / "examples" / "demo-programme.yaml"
IN_FORCE_FROM = "2000-01-01T00:00:00Z"  # before any generated history starts
MIN_PROBE_ORDERS = 500


class ImportFailed(RuntimeError):
    """A step of the import figure failed; the message says which and shows its output."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    engine: str
    stats: HistoryStats
    run: Measured
    raw: Measured
    probe: HistoryStats
    probe_run: Measured
    start: Measured
    asked: int

    @property
    def rows_per_second(self) -> float:
        return self.stats.rows / self.run.seconds


def _step(command: list[str], env: dict[str, str], what: str, timeout: float) -> Measured:
    done = run_measured(command, env=env, cwd=ROOT, timeout=timeout)
    if done.timed_out:
        raise ImportFailed(f"{what}: timed out after {timeout:.0f} s\n{done.tail()}")
    if done.returncode != 0:
        raise ImportFailed(f"{what}: exit {done.returncode}\n{done.tail()}")
    return done


def _count(url: str, query: str) -> int:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            row = conn.execute(query).fetchone()
        finally:
            conn.close()
    else:
        with psycopg.connect(psycopg_url(url)) as pg:
            row = pg.execute(query).fetchone()
    return int(row[0]) if row else 0


def check_landed(url: str, stats: HistoryStats, prefix: str) -> list[str]:
    """Every generated order is in ``orders`` and every refunded order shows a refund."""
    problems = []
    like = f"external_id LIKE '{prefix}O%'"
    orders = _count(url, f"SELECT count(*) FROM orders WHERE {like}")
    if orders != stats.orders:
        problems.append(f"{orders:,} of {stats.orders:,} orders in the database")
    refunded = _count(url, f"SELECT count(*) FROM orders WHERE {like} AND refunded_minor > 0")
    if refunded != stats.refunds:
        problems.append(f"{refunded:,} refunded orders, {stats.refunds:,} refunds in the file")
    return problems


def import_history(
    url: str, workdir: Path, *, orders: int, fixed: bool, budget: float
) -> tuple[ImportResult, list[str]]:
    """Measure the import of ``orders`` orders (fewer if not ``fixed`` and the probe's speed
    says it would take longer than ``budget`` seconds) into ``url``; return the result and
    the problems found when checking the database afterwards."""
    env = lealta_env(url, LEALTA_DATA_DIR=str(workdir / "data"))
    lealta = str(LEALTA)
    _step([lealta, "db", "upgrade"], env, "lealta db upgrade", 300)
    _step([lealta, "programme", "apply", str(DEMO_PROGRAMME), "--activate-at", IN_FORCE_FROM],
          env, "lealta programme apply", 120)  # fmt: skip

    empty_file = workdir / "empty.csv"
    write_history(empty_file, 0)
    empty_run = _step([lealta, "import", "orders", str(empty_file)], env, "empty import", 300)
    probe_file = workdir / "probe.csv"
    probe = write_history(probe_file, max(MIN_PROBE_ORDERS, orders // 100), prefix="P", seed=5)
    probe_run = _step([lealta, "import", "orders", str(probe_file)], env, "probe import", 600)
    # Rows per second once started: the empty file's wall time is the cost of starting.
    probe_rate = probe.rows / max(0.1, probe_run.seconds - empty_run.seconds)
    asked = orders
    if not fixed and empty_run.seconds + orders * 1.05 / probe_rate > budget:
        fits = (budget - empty_run.seconds) * probe_rate / 1.05
        orders = max(probe.orders, int(fits) // 1_000 * 1_000)

    history_file = workdir / "orders.csv"
    stats = write_history(history_file, orders, prefix="H")
    timeout = 120 + 4 * stats.rows / probe_rate
    run = _step([lealta, "import", "orders", str(history_file)], env, "import", timeout)
    problems = check_landed(url, stats, "H")
    raw = _step([sys.executable, "-m", "bench.rawload", url, str(history_file)], env,
                "raw bulk load", 600)  # fmt: skip
    engine = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    result = ImportResult(engine, stats, run, raw, probe, probe_run, empty_run, asked)
    return result, problems
