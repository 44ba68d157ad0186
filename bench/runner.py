"""``python -m bench``: run every figure against a throwaway database and print the table."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from rich.console import Console

from bench import redemption
from bench.load import LoadResult
from bench.pg import pgbench_tpcb, server_version, throwaway_database
from bench.report import Report, ms, rate, times
from bench.rules import rule_evaluation
from bench.server import LEALTA, ROOT, lealta_env, running_server
from bench.workload import (
    Customers,
    batch_ingest,
    enrol_all,
    get_load,
    single_event_ingest,
    write_orders_csv,
)

RESULTS = Path(__file__).resolve().parent / "results.md"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--admin-url",
        default=os.environ.get("LEALTA_BENCH_PG_ADMIN_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE (env LEALTA_BENCH_PG_ADMIN_URL)",
    )
    p.add_argument("--workers", type=int, default=2, help="server worker processes (all figures)")
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    p.add_argument("--customers", type=int, default=500, help="distinct customers for ingest")
    p.add_argument("--seconds", type=float, default=10.0, help="single-event ingest duration")
    p.add_argument("--read-seconds", type=float, default=6.0, help="/health and balance duration")
    p.add_argument("--pgbench-seconds", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--batch-clients", type=int, default=2)
    p.add_argument("--batch-seconds", type=float, default=8.0)
    p.add_argument("--import-rows", type=int, default=20_000, help="CSV rows (upper bound)")
    p.add_argument(
        "--import-budget", type=float, default=60.0,
        help="shrink the CSV so the import should take about this long at the batch rate",
    )  # fmt: skip
    p.add_argument("--sqlite-seconds", type=float, default=8.0)
    p.add_argument("--no-sqlite", action="store_true", help="skip the SQLite figure")
    p.add_argument("--rules-rounds", type=int, default=1_000, help="rounds of the 8-event mix")
    p.add_argument("--rules-budget", type=float, default=5.0, help="cut (vi) short after this")
    p.add_argument("--redeem-seconds", type=float, default=8.0)
    p.add_argument("--redeem-members", type=int, default=200, help="members redeeming in (vii)")
    p.add_argument(
        "--redeem-order", default="10000.00",
        help="EUR each member spends first: 1 point per euro, so cost-500 coupons to spare",
    )  # fmt: skip
    p.add_argument("--output", type=Path, default=RESULTS, help="Markdown results file")
    return p.parse_args(argv)


@dataclass
class Run:
    args: argparse.Namespace
    console: Console
    report: Report
    started: float
    errors: list[str]

    def step(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        self.console.print(f"[dim]{elapsed:6.1f}s[/dim] {message}", highlight=False)

    def check(self, name: str, result: LoadResult) -> bool:
        if result.errors or not result.count:
            self.errors.append(
                f"{name}: {result.errors} failed requests, {result.count} ok;"
                f" first failure: {result.first_error or 'none'}"
            )
            return False
        return True


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def machine_info(pg_version: str, workers: int) -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{os.cpu_count()} cores, {cpu}; load average at start {load}"),
        ("software", f"Python {platform.python_version()}, PostgreSQL {pg_version},"
                     f" {platform.system()} {platform.release()}"),
        ("lealta", f"commit {commit or '?'}; `lealta run` with {workers} worker(s), loopback HTTP"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or redirected: don't squeeze the table into 80 columns
        console = Console(width=150)
    run = Run(args, console, Report("Lealta benchmark"), time.perf_counter(), [])
    try:
        pg_version = server_version(_psycopg_url(args.admin_url))
    except psycopg.Error as exc:
        console.print(f"[red]PostgreSQL not reachable at {args.admin_url}: {exc}[/red]")
        return 2
    run.report.header = machine_info(pg_version, args.workers)
    try:
        measure(run)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red] (throwaway databases dropped)")
        return 130
    except Exception:
        console.print_exception()
        console.print("[red]benchmark failed[/red] (throwaway databases dropped)")
        return 1
    total = time.perf_counter() - run.started
    run.report.notes += [
        f"Closed loop: each client (a thread with its own keep-alive httpx.Client) sends its"
        f" next request when the previous one answers; the load generator shares the"
        f" {os.cpu_count()} cores with the server and PostgreSQL. Whole run {total:.0f} s.",
        f"(i) distinct order.paid events over {args.customers} customers enrolled beforehand;"
        f" (ii) POST /v1/events/batch, each client on its own customers;"
        f" (iii) GET /v1/members/{{id}}/balance; (iv) `lealta import orders FILE.csv` as a"
        f" subprocess with the server stopped, new customers, wall time incl. process start;"
        f" (v) the same as (i) on a fresh SQLite file, compared with (i).",
        "(vi) `evaluate()` of the compiled demo programme in-process (no server, no database)"
        " over 8 events: orders of 120 € and 79.90 € with shoes, 155.60 € and 35.50 € without,"
        " a 210 € Black-Friday order with shoes, two reviews with stars (one over its daily"
        " cap) and a Platino referral; baseline: `EventIn.model_validate` of the same 8 JSON"
        " payloads in the same loop; ratio: rate (µs per event).",
        f"(vii) on its own throwaway database, so (i)-(v) still run under the default programme"
        f" exactly as before: the demo programme applied by PUT /v1/programme with"
        f" pending.days 0, {args.redeem_members} new members each earning on one"
        f" {args.redeem_order} € order (batch endpoint), then {args.clients} clients redeem"
        f" `{redemption.REWARD_ID}` each for its own members in turn, one Idempotency-Key per"
        f" request; afterwards each member's wallet must hold exactly the coupons returned with"
        f" 201 and its balance must be down by the cost once per 201.",
    ]
    console.print()
    run.report.print(console)
    args.output.write_text(run.report.markdown())
    console.print(f"[dim]written to {args.output}[/dim]")
    for error in run.errors:
        console.print(f"[red]error[/red] {error}", highlight=False)
    return 1 if run.errors else 0


def measure(run: Run) -> None:
    args, report = run.args, run.report
    pid = os.getpid()
    admin = _psycopg_url(args.admin_url)

    run.step(f"pgbench: init -s 1, then -c 8 -j 2 -T {args.pgbench_seconds}")
    with throwaway_database(admin, f"lealta_bench_pgbench_{pid}") as pgbench_url:
        tps = pgbench_tpcb(pgbench_url, clients=8, threads=2, seconds=args.pgbench_seconds).tps
    tps_text = f"pgbench {rate(tps, 'tps')}"
    report.add(f"pgbench TPC-B (-s 1 -c 8 -j 2 -T {args.pgbench_seconds})", rate(tps, "tps"))

    customers = Customers("cust", args.customers)
    clients = args.clients
    ingest_rate = 0.0
    batch_rate = 0.0
    with throwaway_database(admin, f"lealta_bench_{pid}") as url:
        run.step(f"starting `lealta run` ({args.workers} workers) on lealta_bench_{pid}")
        with running_server(url, workers=args.workers) as server:
            run.step(f"enrolling {customers.count} customers (warm-up batch)")
            enrol_all(server, customers, tag="warm")
            run.step(f"(i) single-event ingest: {clients} clients, {args.seconds:.0f} s")
            single_event_ingest(server, customers, tag="w", clients=clients, seconds=1.0)
            ingest = single_event_ingest(
                server, customers, tag="i", clients=clients, seconds=args.seconds
            )
            run.check("single-event ingest", ingest)
            ingest_rate = ingest.rate

            run.step(
                f"(ii) batch ingest: {args.batch_clients} clients x {args.batch_size} events,"
                f" {args.batch_seconds:.0f} s"
            )
            batch = batch_ingest(
                server, customers, tag="bt", clients=args.batch_clients, size=args.batch_size,
                seconds=args.batch_seconds,
            )  # fmt: skip
            run.check("batch ingest", batch)
            batch_rate = batch.rate * args.batch_size

            run.step(f"baseline GET /health: {clients} clients, {args.read_seconds:.0f} s")
            get_load(server, lambda w, s: "/health", clients=clients, seconds=1.0)
            health = get_load(server, lambda w, s: "/health", clients=clients,
                              seconds=args.read_seconds)  # fmt: skip
            run.check("GET /health", health)

            run.step(f"(iii) balance read: {clients} clients, {args.read_seconds:.0f} s")

            def balance_path(worker: int, seq: int) -> str:
                return f"/v1/members/{customers[seq * clients + worker]}/balance"

            get_load(server, balance_path, clients=clients, seconds=1.0)
            balance = get_load(server, balance_path, clients=clients, seconds=args.read_seconds)
            run.check("balance read", balance)

        health_lat = f"/health p50 {ms(health.p50)}, p99 {ms(health.p99)}"
        report.add(
            f"GET /health, {clients} clients (no database)",
            f"{rate(health.rate, 'req/s')}; p50 {ms(health.p50)}, p99 {ms(health.p99)}",
        )
        report.add(
            f"(i) ingest, POST /v1/events, {clients} clients",
            rate(ingest.rate, "events/s"), tps_text, times(ingest.rate / tps),
        )  # fmt: skip
        report.add(
            "(i) ingest latency",
            f"p50 {ms(ingest.p50)}, p99 {ms(ingest.p99)}", health_lat,
            f"{times(ingest.p50 / health.p50)} / {times(ingest.p99 / health.p99)}",
        )  # fmt: skip
        report.add(
            f"(ii) batch ingest, {args.batch_size} events/batch, {args.batch_clients} clients",
            f"{rate(batch_rate, 'events/s')} ({batch.count} batches, p50 {ms(batch.p50)} each)",
            tps_text, times(batch_rate / tps),
        )  # fmt: skip
        report.add(
            f"(iii) balance read latency, {clients} clients",
            f"p50 {ms(balance.p50)}, p99 {ms(balance.p99)}", health_lat,
            f"{times(balance.p50 / health.p50)} / {times(balance.p99 / health.p99)}",
        )  # fmt: skip
        report.add(
            "(iii) balance read throughput",
            rate(balance.rate, "req/s"), f"/health {rate(health.rate, 'req/s')}",
            times(balance.rate / health.rate),
        )  # fmt: skip

        import_figure(run, url, tps, batch_rate)

    if not args.no_sqlite:
        sqlite_figure(run, customers, ingest_rate)
    rules_figure(run)
    redemption_figure(run, admin, tps, health)


def sqlite_figure(run: Run, customers: Customers, ingest_rate: float) -> None:
    """(v) the same single-event ingest as (i) on a fresh SQLite file."""
    args, report, clients = run.args, run.report, run.args.clients
    run.step(f"(v) SQLite single-event ingest: {clients} clients, {args.sqlite_seconds:.0f} s")
    with tempfile.TemporaryDirectory(prefix="lealta-bench-") as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'lealta.db'}"
        with running_server(sqlite_url, workers=args.workers) as server:
            enrol_all(server, customers, tag="warm")
            single_event_ingest(server, customers, tag="w", clients=clients, seconds=1.0)
            lite = single_event_ingest(
                server, customers, tag="i", clients=clients, seconds=args.sqlite_seconds
            )
    if run.check("SQLite ingest", lite):
        report.add(
            f"(v) ingest on embedded SQLite, {clients} clients (information)",
            f"{rate(lite.rate, 'events/s')}; p50 {ms(lite.p50)}, p99 {ms(lite.p99)}",
            f"PostgreSQL ingest (i) {rate(ingest_rate, 'events/s')}",
            times(lite.rate / ingest_rate) if ingest_rate else "—",
        )  # fmt: skip


def rules_figure(run: Run) -> None:
    """(vi) rule evaluation in-process against Pydantic validation of the same events."""
    args = run.args
    run.step(f"(vi) rule evaluation: {args.rules_rounds:,} rounds of 8 events, in-process")
    result = rule_evaluation(rounds=args.rules_rounds, budget=args.rules_budget)
    run.errors += [f"rule evaluation: {m}" for m in result.mismatches]
    ev, va = result.evaluate, result.validate
    cut = " (cut short by --rules-budget)" if ev.count < args.rules_rounds * result.events else ""
    run.report.add(
        f"(vi) rule evaluation, demo programme, {result.events}-event mix, in-process",
        f"{rate(ev.rate, 'evaluations/s')}; {ev.micros:,.1f} µs/event ({ev.count:,} events{cut})",
        f"EventIn.model_validate {rate(va.rate, 'events/s')}; {va.micros:,.1f} µs/event",
        f"{times(ev.rate / va.rate)} ({times(ev.micros / va.micros)} µs)",
    )  # fmt: skip


def redemption_figure(run: Run, admin: str, tps: float, health: LoadResult) -> None:
    """(vii) redemptions under the demo programme, on a database of their own."""
    args, report, clients = run.args, run.report, run.args.clients
    members = Customers("rdm", args.redeem_members)
    document = redemption.demo_document(pending_days=0)
    cost = redemption.reward_cost(document)
    with throwaway_database(admin, f"lealta_bench_redeem_{os.getpid()}") as url:
        run.step(f"(vii) starting `lealta run` on lealta_bench_redeem_{os.getpid()}")
        with running_server(url, workers=args.workers) as server:
            version = redemption.apply_programme(server, document)
            run.step(
                f"(vii) demo programme applied (version {version}, pending.days 0);"
                f" {members.count} members earn on a {args.redeem_order} € order each"
            )
            earned = redemption.earn(server, members, total=args.redeem_order)
            if min(earned.values(), default=0) < cost:
                raise RuntimeError(f"members earned {min(earned.values())} points, need {cost}")
            run.step(f"(vii) redemption of {redemption.REWARD_ID}: {clients} clients,"
                     f" {args.redeem_seconds:.0f} s")  # fmt: skip
            tally = redemption.Tally()
            redemption.redeem_load(server, members, tally, tag="w", clients=clients, seconds=1.0)
            redeem = redemption.redeem_load(
                server, members, tally, tag="m", clients=clients, seconds=args.redeem_seconds
            )
            run.step(f"(vii) checking {tally.created:,} coupons and balances")
            problems = redemption.verify(server, members, tally, earned, cost)
    ok = run.check("redemption", redeem)
    if tally.server_errors:
        run.errors.append(f"redemption: {tally.server_errors} 5xx answers ({dict(tally.statuses)})")
    if problems:
        shown = "; ".join(problems[:5])
        run.errors.append(f"redemption check: {len(problems)} members wrong: {shown}")
    if not ok:
        return
    checked = "all checked" if not problems else f"{len(problems)} members WRONG"
    report.add(
        f"(vii) redemption, POST /v1/members/{{id}}/redemptions ({redemption.REWARD_ID}),"
        f" {clients} clients",
        f"{rate(redeem.rate, 'redemptions/s')} ({redeem.count:,} in {args.redeem_seconds:.0f} s;"
        f" {tally.created:,} coupons incl. warm-up, {checked})",
        f"pgbench {rate(tps, 'tps')}", times(redeem.rate / tps),
    )  # fmt: skip
    report.add(
        "(vii) redemption latency",
        f"p50 {ms(redeem.p50)}, p99 {ms(redeem.p99)}",
        f"/health p50 {ms(health.p50)}, p99 {ms(health.p99)}",
        f"{times(redeem.p50 / health.p50)} / {times(redeem.p99 / health.p99)}",
    )  # fmt: skip


def import_figure(run: Run, url: str, tps: float, batch_rate: float) -> None:
    """(iv) ``lealta import orders FILE.csv`` as a subprocess, with the server stopped."""
    args, report = run.args, run.report
    label = "(iv) CSV import"
    env = lealta_env(url)
    probe = subprocess.run(
        [str(LEALTA), "import", "orders", "--help"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if probe.returncode != 0:
        run.step("(iv) CSV import: `lealta import orders` not found, skipped")
        report.add(label, "n/a (import command missing)", f"pgbench {rate(tps, 'tps')}", "—")
        return
    rows = args.import_rows
    if batch_rate > 0:  # keep the run bounded if the import turns out as slow as batch ingest
        rows = min(rows, max(2_000, int(batch_rate * args.import_budget) // 1_000 * 1_000))
    timeout = max(120.0, 3 * rows / batch_rate) if batch_rate else 300.0
    customers = Customers("imp", max(1, rows // 10))
    with tempfile.TemporaryDirectory(prefix="lealta-bench-") as tmp:
        path = Path(tmp) / "orders.csv"
        write_orders_csv(path, rows=rows, customers=customers, tag="IMP")
        run.step(f"(iv) CSV import: {rows:,} rows, {customers.count:,} customers")
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [str(LEALTA), "import", "orders", str(path)], env=env, cwd=ROOT,
                capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            run.errors.append(f"CSV import: timed out after {timeout:.0f} s")
            report.add(label, f"n/a (timed out after {timeout:.0f} s)", "—", "—")
            return
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        run.errors.append(f"CSV import: exit {proc.returncode}\n{tail}")
        report.add(label, f"n/a (failed, exit {proc.returncode})", "—", "—")
        return
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM orders WHERE external_id LIKE 'IMP-%'").fetchone()
    imported = int(row[0]) if row else 0
    if imported != rows:
        run.errors.append(f"CSV import: {imported} of {rows} orders found in the database")
    speed = rows / elapsed
    report.add(
        f"{label}, {rows:,} rows",
        f"{rate(speed, 'rows/s')} ({elapsed:.1f} s wall)",
        f"pgbench {rate(tps, 'tps')}", times(speed / tps),
    )  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
