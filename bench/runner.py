"""``python -m bench``: run every figure against a throwaway database and print the table."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from rich.console import Console

from bench import bulk as bulk_bench
from bench import dashboard as dashboard_bench
from bench import jobs as jobs_bench
from bench import members as members_bench
from bench import redemption
from bench import segments as segments_bench
from bench import simulator as simulator_bench
from bench import webhooks as webhooks_bench
from bench import workflow_triggers as workflow_triggers_bench
from bench.importing import ImportFailed, ImportResult, import_history
from bench.load import LoadResult, merged
from bench.pg import (
    autovacuum,
    pgbench_tpcb,
    psycopg_url,
    server_version,
    throwaway_database,
    vacuum_analyze,
)
from bench.report import Report, ms, rate, times
from bench.rules import rule_evaluation
from bench.server import ROOT, Server, running_server
from bench.startup import TARGET_SECONDS, StartupFailed, time_to_serve
from bench.workload import Customers, batch_ingest, enrol_all, get_load, single_event_ingest

RESULTS = Path(__file__).resolve().parent / "results.md"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_ORDERS = 20_000
# Figures `--only` can pick; the baselines they need (pgbench, GET /health) come with them.
FIGURES = ("ingest", "batch", "balance", "import", "sqlite", "rules", "redemption", "workers",
           "serve", "members", "jobs", "webhooks", "bulk", "simulator",
           "dashboard", "workflow_triggers", "segments")  # fmt: skip
NEEDS_PGBENCH = frozenset({"ingest", "batch", "import", "redemption", "jobs"})
NEEDS_SERVER = frozenset({"ingest", "batch", "balance", "workers"})


def _figures(text: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(names - set(FIGURES))
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        raise argparse.ArgumentTypeError(
            f"unknown figure {given}; choose from {', '.join(FIGURES)}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--admin-url",
        default=os.environ.get("LEALTA_BENCH_PG_ADMIN_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL URL allowed to CREATE/DROP DATABASE (env LEALTA_BENCH_PG_ADMIN_URL)",
    )
    p.add_argument(
        "--db-prefix", default="lealta_bench",
        help="names of the throwaway databases start with this (then a kind and the pid)",
    )  # fmt: skip
    p.add_argument(
        "--only", type=_figures, default=frozenset(FIGURES), metavar="NAME[,NAME]",
        help=f"run only these figures (of {', '.join(FIGURES)}) and the baselines they need;"
        " no results file is written unless --output is given",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, default=2,
        help="server worker processes (all figures); (viii) compares them with one",
    )  # fmt: skip
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    p.add_argument("--customers", type=int, default=500, help="distinct customers for ingest")
    p.add_argument("--seconds", type=float, default=10.0, help="single-event ingest duration")
    p.add_argument("--read-seconds", type=float, default=6.0, help="/health and balance duration")
    p.add_argument(
        "--pairs", type=int, default=3,
        help="turns the loads compared with each other alternate in (ingest on each server;"
        " /health and the balance read)",
    )  # fmt: skip
    p.add_argument("--pgbench-seconds", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1_000)
    p.add_argument("--batch-clients", type=int, default=2)
    p.add_argument("--batch-seconds", type=float, default=10.0)
    p.add_argument(
        "--orders", type=int, default=None,
        help=f"orders in the generated history of (iv), over orders/5 customers (default"
        f" {DEFAULT_ORDERS:,}, fewer when the import is too slow for --import-budget);"
        " given, exactly that many: --orders 1000000",
    )  # fmt: skip
    p.add_argument(
        "--import-budget", type=float, default=60.0,
        help="without --orders: seconds (iv) may take per engine; the history shrinks to fit",
    )  # fmt: skip
    p.add_argument("--sqlite-seconds", type=float, default=8.0)
    p.add_argument("--no-sqlite", action="store_true", help="skip (v) and (iv) on SQLite")
    p.add_argument("--rules-rounds", type=int, default=1_000, help="rounds of the 8-event mix")
    p.add_argument("--rules-budget", type=float, default=5.0, help="cut (vi) short after this")
    p.add_argument("--redeem-seconds", type=float, default=8.0)
    p.add_argument("--redeem-members", type=int, default=200, help="members redeeming in (vii)")
    p.add_argument(
        "--redeem-order", default="10000.00",
        help="EUR each member spends first: 1 point per euro, so cost-500 coupons to spare",
    )  # fmt: skip
    p.add_argument("--members", type=int, default=1_000_000, help="members listed in (x)")
    p.add_argument("--members-seconds", type=float, default=4.0, help="(x) per combination")
    p.add_argument("--dashboard-members", type=int, default=1_000_000, help="(xii) members")
    p.add_argument("--dashboard-orders", type=int, default=3_000_000, help="(xii) orders")
    p.add_argument("--dashboard-ledger", type=int, default=10_000_000, help="(xii) ledger rows")
    p.add_argument(
        "--segment-members", type=int, default=segments_bench.MEMBERS, help="(segments) members"
    )
    p.add_argument("--dashboard-seconds", type=float, default=6.0, help="(xii) load duration")
    p.add_argument(
        "--workflow-members", type=int, default=workflow_triggers_bench.MEMBERS,
        help="(workflow_triggers) members",
    )  # fmt: skip
    p.add_argument(
        "--output", type=Path, default=None,
        help="Markdown results file (default bench/results.md, or none with --only)",
    )  # fmt: skip
    return p.parse_args(argv)


@dataclass
class Run:
    args: argparse.Namespace
    console: Console
    report: Report
    started: float
    errors: list[str]
    ingest_rate: float = 0.0  # (i), the baseline of (v)

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

    def wants(self, *figures: str) -> bool:
        """Whether ``--only`` selected any of ``figures`` (every figure when not given)."""
        return not self.args.only.isdisjoint(figures)

    def database(self, kind: str) -> str:
        """The name of a throwaway database of this run: prefix, kind, pid."""
        return "_".join(part for part in (self.args.db_prefix, kind, str(os.getpid())) if part)


@dataclass
class Loads:
    """What one server answered under load; a figure not asked for stays ``None``."""

    ingest: LoadResult | None = None
    batch: LoadResult | None = None
    health: LoadResult | None = None
    balance: LoadResult | None = None


def machine_info(pg_version: str, workers: int, vacuum: str = "?") -> list[tuple[str, str]]:
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
        ("postgresql autovacuum", f"{vacuum} (each server figure starts after VACUUM (ANALYZE)"
                                  " of its database, as autovacuum would have done)"),
        ("lealta", f"commit {commit or '?'}; `lealta run` with {workers} worker(s), loopback HTTP"),
    ]  # fmt: skip


def notes(args: argparse.Namespace, total: float) -> dict[str, str]:
    """What each figure measures, keyed by the ``--only`` names it belongs to ("": always)."""
    return {
        "": f"Closed loop: each client sends its next request when the previous one answers;"
        f" the load generator shares the {os.cpu_count()} cores with the server and PostgreSQL."
        f" (i), (iii), (v), (viii), (x), (xii) and /health use the lean generator (bench/load.py"
        f" raw_loop: one asyncio loop, a keep-alive connection per client, pre-serialised"
        f" HTTP/1.1, a minimal response parser; its own CPU per request is in the table), the"
        f" others a thread per client with its own keep-alive httpx.Client. Whole run"
        f" {total:.0f} s.",
        "ingest,batch,balance,workers": f"(i)-(iii) under the demo programme (PUT /v1/programme,"
        f" as shipped: tiers, CEL rules, thresholds, 14 days pending): (i) distinct order.paid"
        f" events over {args.customers} customers enrolled beforehand; (ii) POST"
        f" /v1/events/batch of {args.batch_size:,} events, each client on its own customers;"
        " (iii) GET /v1/members/{id}/balance.",
        "import": "(iv) on a fresh database per engine with the demo programme applied (in force"
        " since 2000): a generated history (bench/orders.py: orders over orders/5 customers,"
        " ~5% refunded 1-30 days later, half in full, half in part, oldest first) imported by"
        " `lealta import orders FILE.csv` as a process of its own, wall time from start to"
        " exit (starting: the same for a file with only its header row); baseline: the same"
        " file loaded into one plain table by bench/rawload.py, also a process of its own"
        " (PostgreSQL: COPY FROM STDIN via psycopg; SQLite: executemany in one transaction)."
        " Peak RSS of each process from wait4; its baseline is the import of a probe history"
        " of 1% of the orders (at least 500) run just before into the same database: about"
        " the same peak for many times the rows is flat memory.",
        "sqlite": "(v) the same as (i) (demo programme) on a fresh SQLite file, compared with (i).",
        "rules": "(vi) `evaluate()` of the compiled demo programme in-process (no server, no"
        " database) over 8 events: orders of 120 € and 79.90 € with shoes, 155.60 € and"
        " 35.50 € without, a 210 € Black-Friday order with shoes, two reviews with stars (one"
        " over its daily cap) and a Platino member at a store event; baseline:"
        " `EventIn.model_validate` of the same 8 JSON payloads in the same loop; ratio: rate"
        " (µs per event).",
        "redemption": f"(vii) on its own throwaway database: the demo programme applied by PUT"
        f" /v1/programme with pending.days 0, {args.redeem_members} new members each earning"
        f" on one {args.redeem_order} € order (batch endpoint), then {args.clients} clients"
        f" redeem `{redemption.REWARD_ID}` each for its own members in turn, one"
        f" Idempotency-Key per request; afterwards each member's wallet must hold exactly the"
        f" coupons returned with 201 and its balance must be down by the cost once per 201.",
        "workers": f"(viii) a second server with --workers 1 on the same database runs (i) and"
        f" (iii) in turns with the --workers {args.workers} one: throughput with"
        f" {args.workers} processes against one.",
        "ingest,balance,workers": f"(i), (iii), /health and (viii) are measured in"
        f" {args.pairs} turns: each load's time is split into {args.pairs} slices, and the"
        f" slices of the loads compared with each other alternate (ingest on each server; then"
        f" /health and the balance read on each server), each figure being its slices taken"
        f" together.",
        "serve": "(ix) what `make run` does after its setup step: `lealta demo up` then"
        " `lealta run` (defaults: embedded SQLite, one worker) with a fresh LEALTA_DATA_DIR,"
        " from the start of `demo up` to the first 200 from GET /health (polled every"
        " 50 ms); baseline: `lealta run` restarted on the loaded directory.",
        "members": members_bench.NOTE,
        "dashboard": dashboard_bench.NOTE,
        "jobs": jobs_bench.note(),
        "webhooks": webhooks_bench.NOTE,
        "workflow_triggers": workflow_triggers_bench.NOTE,
        "segments": segments_bench.NOTE,
        "bulk": bulk_bench.NOTE,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or redirected: don't squeeze the table into 80 columns
        console = Console(width=150)
    run = Run(args, console, Report("Lealta benchmark"), time.perf_counter(), [])
    try:
        pg_version = server_version(psycopg_url(args.admin_url))
    except psycopg.Error as exc:
        console.print(f"[red]PostgreSQL not reachable at {args.admin_url}: {exc}[/red]")
        return 2
    run.report.header = machine_info(
        pg_version, args.workers, autovacuum(psycopg_url(args.admin_url))
    )
    if args.only != frozenset(FIGURES):
        run.report.header.append(("figures", "only " + ", ".join(sorted(args.only))))
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
        text
        for figure, text in notes(args, total).items()
        if not figure or run.wants(*figure.split(","))
    ]
    console.print()
    run.report.print(console)
    output = args.output or (RESULTS if args.only == frozenset(FIGURES) else None)
    if output is not None:
        output.write_text(run.report.markdown())
        console.print(f"[dim]written to {output}[/dim]")
    for error in run.errors:
        console.print(f"[red]error[/red] {error}", highlight=False)
    return 1 if run.errors else 0


def measure(run: Run) -> None:
    """Every figure ``--only`` asks for, each with the baselines it is compared with."""
    args = run.args
    admin = psycopg_url(args.admin_url)
    tps = pgbench_figure(run, admin) if run.wants(*NEEDS_PGBENCH) else 0.0
    health = server_figures(run, admin, tps) if run.wants(*NEEDS_SERVER) else None
    if run.wants("import"):
        import_figures(run, admin, tps)
    if run.wants("sqlite") and not args.no_sqlite:
        sqlite_figure(run)
    if run.wants("rules"):
        rules_figure(run)
    if run.wants("redemption"):
        redemption_figure(run, admin, tps, health)
    if run.wants("serve"):
        serve_figure(run)
    if run.wants("members"):
        members_bench.members_figure(run, admin)
    if run.wants("dashboard"):
        dashboard_bench.dashboard_figure(run, admin)
    if run.wants("jobs"):
        jobs_bench.jobs_figure(run, admin, tps)
    if run.wants("simulator"):
        simulator_bench.simulator_figure(run)
    if run.wants("webhooks"):
        webhooks_bench.webhooks_figure(run, admin)
    if run.wants("segments"):
        segments_bench.segments_figure(run, admin)
    if run.wants("workflow_triggers"):
        workflow_triggers_bench.workflow_triggers_figure(run, admin)
    if run.wants("bulk"):
        bulk_bench.bulk_figure(run, admin)


def _vs_tps(value: float, tps: float) -> tuple[str, str]:
    """The pgbench baseline cell and the ratio cell for a rate ``value``."""
    if not tps:
        return "—", "—"
    return f"pgbench {rate(tps, 'tps')}", times(value / tps)


def pgbench_figure(run: Run, admin: str) -> float:
    """The write baseline: pgbench TPC-B on a throwaway database of its own."""
    seconds = run.args.pgbench_seconds
    run.step(f"pgbench: init -s 1, then -c 8 -j 2 -T {seconds}")
    with throwaway_database(admin, run.database("pgbench")) as pgbench_url:
        tps = pgbench_tpcb(pgbench_url, clients=8, threads=2, seconds=seconds).tps
    run.report.add(f"pgbench TPC-B (-s 1 -c 8 -j 2 -T {seconds})", rate(tps, "tps"))
    return tps


def server_loads(
    run: Run, servers: Sequence[Server], customers: Customers, *, figures: set[str]
) -> list[Loads]:
    """Put the loads named in ``figures`` (ingest, batch, health, balance) on ``servers`` (one
    server, or the server and its one-worker twin of (viii), on one database); a
    :class:`Loads` per server.

    The figures compared with each other are measured in turns: each load's time is split
    into ``--pairs`` slices, and the slices of ingest on each server, then of /health and
    the balance read, alternate, each figure being its slices taken together. Other tenants
    of a shared machine come and go within seconds, and a figure measured whole after
    another met a different machine (the ratios moved by half between runs)."""
    args, clients = run.args, run.args.clients
    loads = [Loads() for _ in servers]
    pairs = max(1, args.pairs)
    at = " and ".join(f"{s.workers} worker(s)" for s in servers)
    vacuum_analyze(servers[0].database_url)
    if "ingest" in figures:
        run.step(f"(i) single-event ingest, {at}: {clients} clients, {args.seconds:.0f} s"
                 f" each in {pairs} turns")  # fmt: skip
        slices: list[list[LoadResult]] = [[] for _ in servers]
        for n, server in enumerate(servers):
            single_event_ingest(server, customers, tag=f"w{n}", clients=clients, seconds=1.0)
        for turn in range(pairs):
            for n, server in enumerate(servers):
                slices[n].append(single_event_ingest(
                    server, customers, tag=f"i{n}t{turn}", clients=clients,
                    seconds=args.seconds / pairs,
                ))  # fmt: skip
        for n, server in enumerate(servers):
            loads[n].ingest = ingest = merged(slices[n])
            run.check(f"single-event ingest, {server.workers} worker(s)", ingest)
        vacuum_analyze(servers[0].database_url)
    if "batch" in figures:
        server = servers[0]
        run.step(
            f"(ii) batch ingest, {server.workers} worker(s): {args.batch_clients} clients x"
            f" {args.batch_size} events, {args.batch_seconds:.0f} s"
        )
        loads[0].batch = batch_ingest(
            server, customers, tag="bt", clients=args.batch_clients, size=args.batch_size,
            seconds=args.batch_seconds,
        )  # fmt: skip
        run.check(f"batch ingest, {server.workers} worker(s)", loads[0].batch)
        vacuum_analyze(server.database_url)

    def balance_path(worker: int, seq: int) -> str:
        return f"/v1/members/{customers[seq * clients + worker]}/balance"

    reads: list[tuple[str, int, Callable[[int, int], str]]] = []
    if "health" in figures:
        reads.append(("health", 0, lambda w, s: "/health"))
    if "balance" in figures:
        reads += [("balance", n, balance_path) for n in range(len(servers))]
    if reads:
        names = ", ".join(sorted({name for name, _, _ in reads}))
        run.step(f"baseline GET /health and (iii) balance read ({names}), {at}: {clients}"
                 f" clients, {args.read_seconds:.0f} s each in {pairs} turns")  # fmt: skip
        taken: dict[tuple[str, int], list[LoadResult]] = {(r[0], r[1]): [] for r in reads}
        for _name, n, path in reads:
            get_load(servers[n], path, clients=clients, seconds=1.0)
        for _ in range(pairs):
            for name, n, path in reads:
                taken[name, n].append(
                    get_load(servers[n], path, clients=clients, seconds=args.read_seconds / pairs)
                )
        for (name, n), results in taken.items():
            result = merged(results)
            setattr(loads[n], name, result)
            label = "GET /health" if name == "health" else "balance read"
            run.check(f"{label}, {servers[n].workers} worker(s)", result)
    return loads


def server_figures(run: Run, admin: str, tps: float) -> LoadResult:
    """(i)-(iii) and (viii) on one throwaway database; returns the ``GET /health`` baseline."""
    args = run.args
    customers = Customers("cust", args.customers)
    wanted = {"health"}
    wanted |= {"ingest"} if run.wants("ingest", "workers") else set()
    wanted |= {"batch"} if run.wants("batch") else set()
    wanted |= {"balance"} if run.wants("balance", "workers") else set()
    twin = run.wants("workers") and args.workers > 1
    if run.wants("workers") and not twin:
        run.step("(viii) skipped: --workers 1 has nothing to compare with")
    name = run.database("")
    with throwaway_database(admin, name) as url:
        run.step(f"starting `lealta run` ({args.workers} workers) on {name}")
        with running_server(url, workers=args.workers) as server:
            run.step(f"demo programme; enrolling {customers.count} customers (warm-up batch)")
            redemption.apply_programme(server, redemption.demo_document(pending_days=14))
            enrol_all(server, customers, tag="warm")
            with contextlib.ExitStack() as stack:
                servers = [server]
                if twin:
                    run.step("(viii) starting its twin with 1 worker on the same database")
                    servers.append(stack.enter_context(running_server(url, workers=1)))
                loads = server_loads(run, servers, customers, figures=wanted)
        health = loads[0].health
        assert health is not None
        report_server(run, loads[0], health, tps)
        if twin:
            workers_figure(run, loads[0], loads[1])
    return health


def report_server(run: Run, loads: Loads, health: LoadResult, tps: float) -> None:
    report, clients, args = run.report, run.args.clients, run.args
    health_lat = f"/health p50 {ms(health.p50)}, p99 {ms(health.p99)}"
    report.add(
        f"GET /health, {clients} clients (no database)",
        f"{rate(health.rate, 'req/s')}; p50 {ms(health.p50)}, p99 {ms(health.p99)}",
    )
    if (ingest := loads.ingest) is not None and ingest.count:
        run.ingest_rate = ingest.rate
        report.add(
            f"(i) ingest, POST /v1/events, {clients} clients",
            rate(ingest.rate, "events/s"), *_vs_tps(ingest.rate, tps),
        )  # fmt: skip
        report.add(
            "(i) ingest latency",
            f"p50 {ms(ingest.p50)}, p99 {ms(ingest.p99)}", health_lat,
            f"{times(ingest.p50 / health.p50)} / {times(ingest.p99 / health.p99)}",
        )  # fmt: skip
    if (batch := loads.batch) is not None and batch.count:
        events = batch.rate * args.batch_size
        report.add(
            f"(ii) batch ingest, {args.batch_size:,} events/batch, {args.batch_clients} clients",
            f"{rate(events, 'events/s')} ({batch.count} batches, p50 {ms(batch.p50)} each)",
            *_vs_tps(events, tps),
        )  # fmt: skip
    generator = [
        f"{name} {result.cpu_per_request * 1e6:,.0f} µs"
        for name, result in (("(i)", loads.ingest), ("/health", health), ("(iii)", loads.balance))
        if result is not None and result.count
    ]
    report.add(
        "load generator's own CPU per request (information)",
        ", ".join(generator),
        "httpx thread per client: about 1,200 µs per POST",
    )
    if (balance := loads.balance) is not None and balance.count:
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


def workers_figure(run: Run, many: Loads, one: Loads) -> None:
    """(viii) ingest and balance throughput of ``--workers N`` against one worker."""
    args = run.args
    pairs = (("ingest, POST /v1/events", many.ingest, one.ingest, "events/s"),
             ("balance read", many.balance, one.balance, "req/s"))  # fmt: skip
    for name, with_many, with_one, unit in pairs:
        if with_many is None or with_one is None or not (with_many.count and with_one.count):
            continue
        run.report.add(
            f"(viii) {name}, --workers {args.workers} vs 1, {args.clients} clients",
            f"{rate(with_many.rate, unit)} with {args.workers}",
            f"{rate(with_one.rate, unit)} with 1",
            times(with_many.rate / with_one.rate),
        )


def sqlite_figure(run: Run) -> None:
    """(v) the same single-event ingest as (i) on a fresh SQLite file."""
    args, report, clients = run.args, run.report, run.args.clients
    customers = Customers("cust", args.customers)
    run.step(f"(v) SQLite single-event ingest: {clients} clients, {args.sqlite_seconds:.0f} s")
    with tempfile.TemporaryDirectory(prefix="lealta-bench-") as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'lealta.db'}"
        with running_server(sqlite_url, workers=args.workers) as server:
            redemption.apply_programme(server, redemption.demo_document(pending_days=14))
            enrol_all(server, customers, tag="warm")
            single_event_ingest(server, customers, tag="w", clients=clients, seconds=1.0)
            lite = single_event_ingest(
                server, customers, tag="i", clients=clients, seconds=args.sqlite_seconds
            )
    if run.check("SQLite ingest", lite):
        baseline = run.ingest_rate
        report.add(
            f"(v) ingest on embedded SQLite, {clients} clients (information)",
            f"{rate(lite.rate, 'events/s')}; p50 {ms(lite.p50)}, p99 {ms(lite.p99)}",
            f"PostgreSQL ingest (i) {rate(baseline, 'events/s')}" if baseline else "—",
            times(lite.rate / baseline) if baseline else "—",
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


def redemption_figure(run: Run, admin: str, tps: float, health: LoadResult | None) -> None:
    """(vii) redemptions under the demo programme, on a database of their own."""
    args, report, clients = run.args, run.report, run.args.clients
    members = Customers("rdm", args.redeem_members)
    document = redemption.demo_document(pending_days=0)
    cost = redemption.reward_cost(document)
    name = run.database("redeem")
    with throwaway_database(admin, name) as url:
        run.step(f"(vii) starting `lealta run` on {name}")
        with running_server(url, workers=args.workers) as server:
            if health is None:  # --only without the server figures: measure it here
                health = server_loads(run, [server], members, figures={"health"})[0].health
                assert health is not None
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
        *_vs_tps(redeem.rate, tps),
    )  # fmt: skip
    report.add(
        "(vii) redemption latency",
        f"p50 {ms(redeem.p50)}, p99 {ms(redeem.p99)}",
        f"/health p50 {ms(health.p50)}, p99 {ms(health.p99)}",
        f"{times(redeem.p50 / health.p50)} / {times(redeem.p99 / health.p99)}",
    )  # fmt: skip


def import_figures(run: Run, admin: str, tps: float) -> None:
    """(iv) ``lealta import orders`` of a generated history on PostgreSQL, then on SQLite."""
    args = run.args
    orders = args.orders or DEFAULT_ORDERS
    for engine in ("PostgreSQL",) + (() if args.no_sqlite else ("SQLite",)):
        run.step(f"(iv) import on {engine}: migrate, demo programme, probe, {orders:,} orders")
        try:
            with tempfile.TemporaryDirectory(prefix="lealta-bench-import-") as tmp:
                if engine == "SQLite":
                    url = f"sqlite:///{Path(tmp) / 'lealta.db'}"
                    result, problems = import_history(
                        url, Path(tmp), orders=orders, fixed=args.orders is not None,
                        budget=args.import_budget,
                    )  # fmt: skip
                else:
                    with throwaway_database(admin, run.database("import")) as url:
                        result, problems = import_history(
                            url, Path(tmp), orders=orders, fixed=args.orders is not None,
                            budget=args.import_budget,
                        )  # fmt: skip
        except ImportFailed as exc:
            run.errors.append(f"(iv) import on {engine}: {exc}")
            run.report.add(f"(iv) import orders, {engine}", "n/a (failed)")
            continue
        run.errors += [f"(iv) import on {engine}: {problem}" for problem in problems]
        report_import(run, result, tps)


def report_import(run: Run, result: ImportResult, tps: float) -> None:
    stats, imported, raw = result.stats, result.run, result.raw
    shrunk = (
        f"; {result.asked:,} asked, cut by --import-budget" if stats.orders < result.asked else ""
    )
    loader = "COPY" if result.engine == "PostgreSQL" else "executemany"
    rss_ratio = imported.max_rss_mb / result.probe_run.max_rss_mb
    run.report.add(
        f"(iv) import orders, {result.engine}: {stats.orders:,} orders + {stats.refunds:,}"
        f" refunds, {stats.customers:,} customers, demo programme",
        f"{imported.seconds:.1f} s wall, of which {result.start.seconds:.1f} s starting"
        f" ({rate(result.rows_per_second, 'rows/s')});"
        f" peak RSS {imported.max_rss_mb:.0f} MB{shrunk}",
        f"{loader} of the same rows {raw.seconds:.2f} s wall; peak RSS of a"
        f" {result.probe.orders:,}-order import {result.probe_run.max_rss_mb:.0f} MB",
        f"{times(imported.seconds / raw.seconds)} time; {times(rss_ratio)} RSS",
    )  # fmt: skip
    if result.engine == "PostgreSQL" and tps:
        run.report.add(
            "(iv) import throughput, PostgreSQL",
            rate(result.rows_per_second, "rows/s"), *_vs_tps(result.rows_per_second, tps),
        )  # fmt: skip


def serve_figure(run: Run) -> None:
    """(ix) ``make run`` from a fresh data directory to the first 200 from ``GET /health``."""
    run.step("(ix) `lealta demo up` then `lealta run` on a fresh data directory, to /health 200")
    try:
        startup = time_to_serve()
    except (StartupFailed, subprocess.TimeoutExpired) as exc:
        run.errors.append(f"(ix) make run: {exc}")
        run.report.add("(ix) `make run` time to serve", "n/a (failed)")
        return
    run.report.add(
        "(ix) `make run` time to serve: demo up + run, fresh data dir (SQLite)",
        f"{startup.total:.1f} s (demo up {startup.demo_seconds:.1f} s, then"
        f" {startup.serve_seconds:.1f} s to the first 200)",
        f"`lealta run` alone, demo loaded: {startup.restart_seconds:.1f} s;"
        f" target {TARGET_SECONDS:.0f} s",
        f"{times(startup.total / TARGET_SECONDS)} target",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
