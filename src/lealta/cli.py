"""The ``lealta`` command. Each command opens a unit of work and calls a service, nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lealta.kit.lazycli import lazy_group, long_lived_imports

if TYPE_CHECKING:
    from lealta.config import Settings
    from lealta.demo.service import DemoReport
    from lealta.kit.db import Database
    from lealta.kit.errors import LealtaError

# Each command module is imported when its command runs (or --help lists it): a command
# pays only for what it uses (see lealta.kit.lazycli). The commands defined in this file
# import their services in their bodies for the same reason.
app = typer.Typer(
    help="Lealta: self-hosted, API-first customer loyalty.",
    no_args_is_help=True,
    cls=lazy_group(
        {
            "inbound": "lealta.inbound.cli:app",
            "programme": "lealta.programme.cli:app",
            "admin": "lealta.web.admin.cli:app",
            "bulk": "lealta.bulk.cli:app",
            "webhooks": "lealta.webhooks.cli:app",
            "simulate": "lealta.simulator.cli:simulate",
            "analytics": "lealta.analytics.cli:app",
            "report": "lealta.analytics.report_cli:app",
            "members": "lealta.privacy.cli:app",
            "surveys": "lealta.surveys.cli:app",
            "gamification": "lealta.gamification.cli:app",
            "segments": "lealta.segments.cli:app",
            "experiments": "lealta.experiments.cli:app",
            "campaigns": "lealta.campaigns.cli:app",
            "workflows": "lealta.workflows.cli:app",
            "referrals": "lealta.referrals.cli:app",
        }
    ),
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
apikey_app = typer.Typer(
    help="API keys.",
    no_args_is_help=True,
    cls=lazy_group({"origin": "lealta.inbound.cli:origin_app"}),
)
ledger_app = typer.Typer(help="Points ledger.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
app.add_typer(ledger_app, name="ledger")
import_app = typer.Typer(
    help="Import history from files.",
    no_args_is_help=True,
    cls=lazy_group(
        {
            "members": "lealta.bulk.cli:import_members",
            "balances": "lealta.bulk.cli:import_balances",
        }
    ),
)
export_app = typer.Typer(help="Export data to files.", no_args_is_help=True)
demo_app = typer.Typer(help="The demo programme and data.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
app.add_typer(demo_app, name="demo")
jobs_app = typer.Typer(
    help="Background jobs: the queue, and the points catch-up.", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")
tiers_app = typer.Typer(help="Tiers.", no_args_is_help=True)
app.add_typer(tiers_app, name="tiers")

console = Console()
err = Console(stderr=True)

EXIT_CODES = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 413: 2, 422: 2}


def _database() -> Database:
    from lealta.config import get_settings
    from lealta.kit.db import Database

    settings = get_settings()
    return Database(settings.database_url)


def fail(exc: LealtaError) -> typer.Exit:
    """Map a domain error to a message on stderr and a stable exit code."""
    err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}")
    return typer.Exit(EXIT_CODES.get(exc.status_code, 1))


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes (default: one per CPU up to 4 on PostgreSQL, 1 on SQLite).",
        ),
    ] = None,
    migrate: Annotated[bool, typer.Option(help="Upgrade the schema first.")] = True,
) -> None:
    """Serve the API (and its docs at /docs)."""
    import uvicorn

    from lealta.config import get_settings
    from lealta.kit.db import AUTOVACUUM_OFF_HINT, autovacuum_off
    from lealta.kit.logging import configure as configure_logging
    from lealta.kit.migrate import upgrade as migrate_upgrade
    from lealta.serve import serve_workers, worker_count

    settings = get_settings()
    if migrate:
        migrate_upgrade(settings.database_url)
    if autovacuum_off(settings.database_url):
        err.print(f"[yellow]warning[/yellow] {AUTOVACUUM_OFF_HINT}", soft_wrap=True)
    count = worker_count(workers, settings.workers, settings.database_url)
    if count <= 1:
        uvicorn.run(
            "lealta.app:serving_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            access_log=False,
            log_level="warning",
        )
        return
    # Several workers: our supervisor (lealta.serve) precompiles, waits longer, and logs.
    config = uvicorn.Config(
        "lealta.app:serving_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=count,
        access_log=False,
        log_level="warning",
        timeout_worker_healthcheck=settings.worker_healthcheck_timeout,
    )
    configure_logging(settings.log_level, settings.log_format)
    serve_workers(config, settings.data_dir / "pycache")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from lealta.config import get_settings
    from lealta.kit.migrate import upgrade as migrate_upgrade

    settings = get_settings()
    migrate_upgrade(settings.database_url, revision)
    console.print(f"[green]database at {revision}[/green] ({_redact(settings.database_url)})")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who uses the key, e.g. 'webshop'.")] = "default",
    scope: Annotated[
        str, typer.Option(help="'server' (read+write), 'read' or 'publishable' (browsers).")
    ] = "server",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the key.")] = False,
) -> None:
    """Create an API key. The secret is shown once; only its digest is stored."""
    from lealta.apikeys import service as apikeys
    from lealta.kit.clock import SystemClock
    from lealta.kit.errors import LealtaError

    if scope not in apikeys.SCOPES:
        raise fail(
            LealtaError(
                f"Unknown scope '{scope}'; use server, read or publishable.", code="invalid_scope"
            )
        )
    database = _database()
    with database.unit_of_work() as session:
        row, key = apikeys.create(session, name=name, scope=scope, now=SystemClock().now())
    if quiet:
        print(key)
        return
    console.print(f"API key [bold]{row.name}[/bold] ({row.scope}), prefix {row.prefix}:")
    console.print(key, soft_wrap=True, highlight=False)
    console.print("[dim]Store it now: it cannot be shown again.[/dim]")


@apikey_app.command("list")
def apikey_list() -> None:
    """List keys (prefixes only)."""
    from lealta.apikeys import service as apikeys

    database = _database()
    with database.unit_of_work(write=False) as session:
        rows = apikeys.list_keys(session)
    table = Table("prefix", "name", "scope", "created", "revoked")
    for r in rows:
        table.add_row(
            r.prefix,
            r.name,
            r.scope,
            r.created_at.isoformat(timespec="seconds"),
            r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "",
        )
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(prefix: str) -> None:
    """Revoke the key with PREFIX; it stops working at once."""
    from lealta.apikeys import service as apikeys
    from lealta.kit.clock import SystemClock
    from lealta.kit.errors import LealtaError

    database = _database()
    try:
        with database.unit_of_work() as session:
            apikeys.revoke(session, prefix, now=SystemClock().now())
    except LealtaError as exc:
        raise fail(exc) from None
    console.print(f"revoked {prefix}")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Check that every cached balance equals what the ledger and lots add up to."""
    from lealta.ledger import service as ledger

    database = _database()
    with database.unit_of_work(write=False) as session:
        checked, problems = ledger.verify(session)
    if problems:
        table = Table("member id", "figure", "cached", "from ledger", title="Ledger discrepancies")
        for p in problems[:200]:
            table.add_row(str(p.member_id), p.figure, str(p.cached), str(p.derived))
        console.print(table)
        err.print(f"[red]{len(problems)} discrepancies in {checked} accounts[/red]")
        raise typer.Exit(1)
    console.print(f"[green]ledger consistent[/green]: {checked} accounts checked")


SHOWN_REJECTIONS = 50


@import_app.command("orders")
def import_orders(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with customer_id, order_id, occurred_at,"
            " amount, currency (and optional type, channel,"
            " store, email, name, items)."
        ),
    ],
    items: Annotated[
        Path | None,
        typer.Option(help="CSV of line items: order_id, sku, unit_price[, quantity, category]."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would happen; write nothing.")
    ] = False,
) -> None:
    """Import orders and refunds from FILE, oldest first, through the same path as the API.

    Re-importing a file is safe: rows already imported are replayed, not doubled.

    Exit code 0: all rows imported; 1: some rows rejected (listed with line numbers);
    2: the file cannot be read or its header lacks a required column.
    """
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    with long_lived_imports():
        from lealta.config import get_settings
        from lealta.imports import service as imports
        from lealta.kit.clock import SystemClock
        from lealta.kit.errors import LealtaError
        from lealta.programme import service as programmes

    settings = get_settings()
    database = _database()
    with database.unit_of_work(write=False) as session:
        programme = programmes.current(session)
    try:
        size: int | None = file.stat().st_size
    except OSError:
        size = None
    progress = Progress(
        TextColumn("[bold]importing[/bold] {task.fields[rows]:>9,} rows"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    try:
        with progress:
            task = progress.add_task("import", total=size, rows=0)
            report = imports.import_orders(
                database,
                file,
                programme=programme,
                now=SystemClock().now(),
                actor="cli:import",
                auto_enrol=settings.auto_enrol,
                max_amount=settings.max_order_amount,
                on_progress=lambda rows, done: progress.update(task, completed=done, rows=rows),
                items_path=items,
                dry_run=dry_run,
            )
    except LealtaError as exc:
        raise fail(exc) from None
    finally:
        database.dispose()
    summary = Table(
        "rows read",
        "imported",
        "already imported",
        "rejected",
        "seconds",
        title=f"Import of {file.name}" + (" (dry run: nothing written)" if dry_run else ""),
    )
    summary.add_row(
        f"{report.rows_read:,}",
        f"{report.imported:,}",
        f"{report.replayed:,}",
        f"[red]{report.rejected_count:,}[/red]" if report.rejected_count else "0",
        f"{report.elapsed_seconds:.1f}",
    )
    console.print(summary)
    if report.out_of_order:
        err.print(
            f"[yellow]warning[/yellow]: {report.out_of_order:,} rows go back in time; history"
            " files should be sorted oldest first (points are spent in processing order)."
        )
    if report.rejected_count:
        rejected = Table("line", "code", "reason", title="Rejected rows")
        for row in report.rejected[:SHOWN_REJECTIONS]:
            rejected.add_row(str(row.line), row.code, row.message)
        console.print(rejected)
        if report.rejected_count > SHOWN_REJECTIONS:
            console.print(f"... and {report.rejected_count - SHOWN_REJECTIONS:,} more.")
        raise typer.Exit(1)


@export_app.command("members")
def export_members(
    file: Annotated[Path, typer.Argument(help="Where to write the CSV (replaced if present).")],
) -> None:
    """Write every member's tier, balance buckets, qualifying spend and next expiry to FILE."""
    from lealta.exports import service as exports
    from lealta.kit.clock import SystemClock
    from lealta.kit.errors import LealtaError

    database = _database()
    try:
        count = exports.export_members(database, file, now=SystemClock().now())
    except LealtaError as exc:
        raise fail(exc) from None
    finally:
        database.dispose()
    console.print(f"exported {count:,} members to {file}")


@demo_app.command("up")
def demo_up() -> None:
    """Migrate, load the demo programme and a year of demo customers, and issue an API key.

    Safe to run again: data already there is kept; each run issues a new 'demo' API key and
    revokes the older ones.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lealta.config import get_settings
    from lealta.demo import service as demo
    from lealta.kit.clock import SystemClock
    from lealta.kit.errors import LealtaError
    from lealta.kit.migrate import upgrade as migrate_upgrade

    settings = get_settings()
    migrate_upgrade(settings.database_url)
    database = _database()
    progress = Progress(
        TextColumn("[bold]loading demo history[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    try:
        with progress:
            task = progress.add_task("demo", total=None)
            report = demo.up(
                database,
                now=SystemClock().now(),
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except LealtaError as exc:
        raise fail(exc) from None
    finally:
        database.dispose()
    _print_demo(report, settings)


def _print_demo(report: DemoReport, settings: Settings) -> None:
    if report.members_created:
        console.print(
            f"[green]demo loaded[/green]: {report.members_created:,} members,"
            f" {report.events_ingested:,} events in {report.elapsed_seconds:.1f} s"
        )
    else:
        console.print("[green]members already present[/green]: demo history not loaded again")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    base = f"http://{host}:{settings.port}"
    console.print(f"  API      {base}", highlight=False)
    console.print(f"  Docs     {base}/docs", highlight=False)
    console.print("  API key  ", end="")
    console.print(report.api_key, soft_wrap=True, highlight=False)
    if report.keys_revoked:
        console.print(f"[dim]  ({report.keys_revoked} older demo key(s) revoked)[/dim]")
    console.print(f"  Console  {base}/admin", highlight=False)
    console.print(f"           email {report.admin_email}", highlight=False)
    console.print("           password ", end="")
    console.print(report.admin_password, soft_wrap=True, highlight=False)
    console.print("[dim]  (a new console password is set on every run)[/dim]")
    console.print("Try:")
    console.print(
        f'  curl -H "Authorization: Bearer {report.api_key}" {base}/v1/members/cust-0001/balance',
        soft_wrap=True,
        highlight=False,
    )


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


def main() -> None:  # pragma: no cover
    app()


@jobs_app.command("run")
def jobs_run(
    at: Annotated[
        str | None, typer.Option(help="Process up to this ISO time instead of now (replays).")
    ] = None,
    every: Annotated[
        int | None,
        typer.Option(min=10, help="Keep running, once every this many seconds (a worker)."),
    ] = None,
) -> None:
    """Release pending points, expire due points and coupons, run due tier reviews, now.

    Safe to rerun and to run on several hosts at once. `lealta worker` (and `lealta run` on
    SQLite) already does this every minute; --every is kept for cron-style set-ups.
    """
    import time
    from datetime import datetime

    from lealta.jobs import service as jobs
    from lealta.kit.clock import SystemClock, ensure_utc
    from lealta.kit.errors import LealtaError

    try:
        fixed = ensure_utc(datetime.fromisoformat(at)) if at else None
    except ValueError:
        raise fail(LealtaError(f"'{at}' is not an ISO 8601 time.", code="invalid_time")) from None
    if fixed is not None and every is not None:
        raise fail(LealtaError("--at and --every do not go together.", code="invalid_options"))
    database = _database()
    while True:
        report = jobs.run_due(database, now=fixed or SystemClock().now())
        console.print(
            f"members {report.members}, released {report.released} pts, expired"
            f" {report.expired} pts, tier changes {report.tier_changes}, coupons expired"
            f" {report.coupons_expired}"
        )
        if every is None:
            return
        time.sleep(every)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Threads running jobs (default LEALTA_WORKER_CONCURRENCY)."
        ),
    ] = None,
    queues: Annotated[
        str | None, typer.Option(help="Only these queues, comma-separated (default: all).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run one round of due jobs, then exit.")
    ] = False,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit when no job is due and none runs.")
    ] = False,
    prefetch: Annotated[
        int, typer.Option(min=0, max=1000, help="Jobs claimed ahead of free threads.")
    ] = 0,
    modules: Annotated[
        list[str] | None,
        typer.Option("--import", help="Also import this module (registers its tasks)."),
    ] = None,
) -> None:
    """Run background jobs until stopped (SIGTERM or Ctrl-C stop gracefully).

    Run as many as you like, on as many machines, against one PostgreSQL database: they
    share the work and never run a job twice at once. Also enqueues periodic jobs (the
    points catch-up every minute) and hands outbox events to their subscribers.
    """
    import os
    import signal

    from lealta.config import get_settings
    from lealta.jobs.worker import Worker
    from lealta.kit.clock import SystemClock
    from lealta.kit.db import Database
    from lealta.kit.errors import LealtaError
    from lealta.kit.logging import configure as configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    database = Database(
        settings.database_url,
        pool_size=(concurrency or settings.worker_concurrency) + 2,
        max_overflow=2,
        connect_timeout=settings.db_connect_timeout,
        # Bounds every statement of every job (lock waits included).
        statement_timeout=settings.db_statement_timeout or None,
    )
    runner = Worker(
        database,
        clock=SystemClock(),
        settings=settings,
        concurrency=concurrency,
        queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
        prefetch=prefetch,
        modules=modules or (),
    )

    def _stop(signum: int, _frame: object) -> None:
        if runner.stopping:  # a second signal: leave now, leases bring the jobs back
            os._exit(130)
        err.print(f"[yellow]stopping[/yellow] (signal {signum}): finishing running jobs")
        runner.request_stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = runner.run(once=once, until_idle=until_idle)
    except ModuleNotFoundError as exc:
        raise fail(LealtaError(str(exc), code="module_not_found")) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        database.dispose()
    console.print(
        f"jobs succeeded {report.succeeded}, failed attempts {report.failed} (dead"
        f" {report.dead}), outbox rows dispatched {report.dispatched}"
    )


def _job_table(rows: list[Any], title: str) -> Table:
    table = Table(
        "id", "task", "status", "attempts", "run at", "finished", "last error", title=title
    )
    for job in rows:
        error = (job.last_error or "").splitlines()[0][:80] if job.last_error else ""
        table.add_row(
            str(job.id),
            job.task,
            job.status,
            f"{job.attempts}/{job.max_attempts}",
            job.run_at.isoformat(timespec="seconds"),
            job.finished_at.isoformat(timespec="seconds") if job.finished_at else "",
            error,
        )
    return table


@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        str | None, typer.Option(help="queued, running, retrying, succeeded, dead or discarded.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """Queue depth per status and per task, then the newest jobs (filtered)."""
    from lealta.jobs import queue as job_queue
    from lealta.kit.clock import SystemClock
    from lealta.kit.errors import LealtaError

    database = _database()
    try:
        with database.unit_of_work(write=False) as session:
            now = SystemClock().now()
            stats = job_queue.stats(session, now=now)
            rows, _ = job_queue.list_jobs(session, status=status, task=task, limit=limit)
    except LealtaError as exc:
        raise fail(exc) from None
    finally:
        database.dispose()
    depth = Table("status", "jobs", title="Queue (finished: last 24 h)")
    for name, count in stats.counts.items():
        depth.add_row(name, str(count))
    console.print(depth)
    if stats.by_task:
        tasks = Table("task", "status", "jobs", title="Waiting, running, retrying, dead")
        for row in stats.by_task:
            tasks.add_row(row.task, row.status, str(row.count))
        console.print(tasks)
    lag = stats.oldest_due_seconds
    console.print(
        f"due now {stats.due}, scheduled later {stats.scheduled}"
        + (f", oldest due waited {lag:.0f} s" if lag is not None else "")
    )
    console.print(_job_table(rows, "Jobs, newest first"))


def _job_action(job_id: int, action: str) -> None:
    from lealta.audit import service as audit
    from lealta.jobs import queue as job_queue
    from lealta.kit.clock import SystemClock
    from lealta.kit.errors import LealtaError

    database = _database()
    try:
        with database.unit_of_work() as session:
            now = SystemClock().now()
            operation = job_queue.retry if action == "retry" else job_queue.discard
            job = operation(session, job_id, now=now)
            audit.record(
                session,
                actor="cli",
                action=f"job.{action}",
                target_type="job",
                target_id=str(job.id),
                now=now,
                details={"task": job.task},
            )
            status = job.status
    except LealtaError as exc:
        raise fail(exc) from None
    finally:
        database.dispose()
    console.print(f"job {job_id}: {status}")


@jobs_app.command("retry")
def jobs_retry(job_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Run a dead, retrying or discarded job again now, with a fresh set of attempts."""
    _job_action(job_id, "retry")


@jobs_app.command("discard")
def jobs_discard(job_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Drop a waiting, retrying or dead job so that it never runs (again)."""
    _job_action(job_id, "discard")


@tiers_app.command("refresh")
def tiers_refresh() -> None:
    """After a programme edit: upgrade members who now qualify. Never downgrades."""
    from lealta.kit.clock import SystemClock
    from lealta.programme import service as programmes
    from lealta.tiers import service as tiers

    database = _database()
    now = SystemClock().now()
    with database.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
    upgraded = tiers.refresh_all(database, programme, now=now)
    console.print(f"{upgraded} members upgraded under '{programme.name}'")
