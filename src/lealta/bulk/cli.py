"""``lealta bulk ...`` and ``lealta import members|balances``: each command opens its units of
work and calls a service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lealta.bulk import csvfile, inputs, service
from lealta.config import get_settings
from lealta.imports import migration
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.idempotency import request_hash
from lealta.models import BulkOperation
from lealta.programme import service as programmes

app = typer.Typer(
    help="Bulk operations on many members from a CSV (each one idempotent job).",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)
EXIT_CODES = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 413: 2, 422: 2}
SHOWN_REJECTIONS = 50

Reason = Annotated[str | None, typer.Option(help="Reason for rows without their own.")]
Key = Annotated[
    str | None,
    typer.Option(help="Idempotency key (default: the file's SHA-256, so the same file runs once)."),
]
Wait = Annotated[
    bool,
    typer.Option(help="Apply the rows now (default) or leave the job to `lealta worker`."),
]
ReportFile = Annotated[
    Path | None, typer.Option("--report", help="Write the per-row report (CSV) here.")
]


def _fail(exc: LealtaError) -> typer.Exit:
    err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}")
    return typer.Exit(EXIT_CODES.get(exc.status_code, 1))


def _database() -> Database:
    return Database(get_settings().database_url)


def _run(
    kind: str,
    file: Path,
    reason: str | None,
    key: str | None,
    wait: bool,
    report: Path | None,
) -> None:
    database = _database()
    clock = SystemClock()
    try:
        data = csvfile.read_bytes(file)
        sha = csvfile.digest(data)
        with database.unit_of_work() as session:
            now = clock.now()
            programme = programmes.current(session, now=now)
            rows = inputs.from_csv(data, kind, programme)
            created = service.create(
                session,
                kind=kind,
                key=key or f"file:{kind}:{sha}",
                request_hash=request_hash({"sha256": sha, "reason": reason}),
                rows=rows,
                actor="cli:bulk",
                reason=reason,
                source=file.name,
                now=now,
            )
            operation_id = created.operation.id
        if not created.created:
            console.print(
                f"This file (or key) is bulk operation {operation_id} already: nothing added."
            )
        if wait:
            operation = _apply(database, operation_id, clock)
        else:
            console.print(f"Queued as bulk operation {operation_id}; `lealta worker` applies it.")
            return
        _summary(operation)
        if report is not None:
            with report.open("w", encoding="utf-8", newline="") as out:
                out.writelines(service.report_lines(database, operation_id))
            console.print(f"report written to {report}")
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    if operation.rejected_rows:
        raise typer.Exit(1)


def _apply(database: Database, operation_id: int, clock: SystemClock) -> BulkOperation:
    progress = Progress(
        TextColumn("[bold]applying[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task("bulk", total=None)
        return service.run(
            database,
            operation_id,
            clock=clock,
            on_progress=lambda op: progress.update(
                task, completed=op.processed_rows, total=op.total_rows
            ),
        )


def _summary(op: BulkOperation) -> None:
    table = Table(
        "operation", "status", "rows", "applied", "rejected", "points", title=f"Bulk {op.kind}"
    )
    table.add_row(
        str(op.id),
        op.status,
        f"{op.total_rows:,}",
        f"{op.applied_rows:,}",
        f"[red]{op.rejected_rows:,}[/red]" if op.rejected_rows else "0",
        f"{op.points_applied:,}",
    )
    console.print(table)
    if op.rejected_rows:
        console.print(
            f"Rejected rows: `lealta bulk report {op.id} FILE.csv` or GET /v1/bulk/{op.id}/rows"
        )


@app.command("points")
def points(
    file: Annotated[Path, typer.Argument(help="CSV: external_id, points[, reason].")],
    reason: Reason = None,
    key: Key = None,
    wait: Wait = True,
    report: ReportFile = None,
) -> None:
    """Credit (positive) or debit (negative) points to each member in FILE.

    Running the same file again is a no-op. Exit code 0: all rows applied; 1: some rejected;
    2: the file cannot be read."""
    _run("points", file, reason, key, wait, report)


@app.command("tags")
def tags(
    file: Annotated[Path, typer.Argument(help="CSV: external_id, add, remove (tags a|b).")],
    key: Key = None,
    wait: Wait = True,
    report: ReportFile = None,
) -> None:
    """Add and remove tags on each member in FILE."""
    _run("tags", file, None, key, wait, report)


@app.command("attributes")
def attributes(
    file: Annotated[Path, typer.Argument(help="CSV: external_id and a column per attribute.")],
    key: Key = None,
    wait: Wait = True,
    report: ReportFile = None,
) -> None:
    """Set attributes on each member in FILE (an empty cell removes the attribute)."""
    _run("attributes", file, None, key, wait, report)


@app.command("tiers")
def tiers(
    file: Annotated[Path, typer.Argument(help="CSV: external_id, tier[, reason].")],
    reason: Annotated[str, typer.Option(help="Why these members move (audited).")],
    key: Key = None,
    wait: Wait = True,
    report: ReportFile = None,
) -> None:
    """Move each member in FILE to the tier named (up or down)."""
    _run("tier", file, reason, key, wait, report)


@app.command("status")
def status(operation_id: Annotated[int, typer.Argument()]) -> None:
    """Show a bulk operation's status and totals."""
    database = _database()
    try:
        with database.unit_of_work(write=False) as session:
            op = service.get(session, operation_id)
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    _summary(op)


@app.command("report")
def report_cmd(
    operation_id: Annotated[int, typer.Argument()],
    file: Annotated[Path, typer.Argument(help="Where to write the per-row CSV.")],
) -> None:
    """Write a bulk operation's per-row report (line, status, code, message, entry)."""
    database = _database()
    try:
        lines = service.report_lines(database, operation_id)
        first = next(lines)
        with file.open("w", encoding="utf-8", newline="") as out:
            out.write(first)
            out.writelines(lines)
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    console.print(f"report written to {file}")


# --- lealta import members | balances ----------------------------------------------------------

Source = Annotated[
    str, typer.Option("--source-system", help="The system you are moving from (e.g. oldloyalty).")
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Report what would happen; write nothing.")]


def _migration_report(title: str, report: migration.MigrationReport) -> None:
    table = Table(
        "rows", "created", "updated", "already imported", "consents", "points", "tiers",
        "rejected", title=title + (" (dry run: nothing written)" if report.dry_run else ""),
    )  # fmt: skip
    table.add_row(
        f"{report.rows_read:,}",
        f"{report.created:,}",
        f"{report.updated:,}",
        f"{report.already_imported:,}",
        f"{report.consents:,}",
        f"{report.points:,}",
        f"{report.tiers:,}",
        f"[red]{report.rejected_count:,}[/red]" if report.rejected_count else "0",
    )
    console.print(table)
    if report.rejected_count:
        rejected = Table("line", "code", "reason", title="Rejected rows")
        for row in report.rejected[:SHOWN_REJECTIONS]:
            rejected.add_row(str(row.line), row.code, row.message)
        console.print(rejected)
        if report.rejected_count > SHOWN_REJECTIONS:
            console.print(f"... and {report.rejected_count - SHOWN_REJECTIONS:,} more.")
        raise typer.Exit(1)


def import_members(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV: external_id[, email, phone, name, birthday, language, timezone,"
            " enrolled_at, tags, attr.<name>, consent.<purpose>, consent.<purpose>.at]."
        ),
    ],
    source_system: Source = "import",
    dry_run: DryRun = False,
) -> None:
    """Create or update members (profile, attributes, tags, consents with their dates).

    Re-importing is safe. Exit code 0: all rows imported; 1: some rejected; 2: unreadable."""
    database = _database()
    try:
        with database.unit_of_work(write=False) as session:
            programme = programmes.current(session)
        report = migration.import_members(
            database,
            file,
            programme=programme,
            now=SystemClock().now(),
            actor="cli:import",
            source_system=source_system,
            dry_run=dry_run,
        )
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    _migration_report(f"Members from {file.name}", report)


def import_balances(
    file: Annotated[
        Path,
        typer.Argument(help="CSV: external_id, points[, expires_at, tier, tier_reached_at]."),
    ],
    source_system: Source,
    dry_run: DryRun = False,
) -> None:
    """Carry each member's balance and tier over from the source system, as one `migration`
    ledger entry each. Re-importing is safe (members already carried over are skipped)."""
    database = _database()
    try:
        with database.unit_of_work(write=False) as session:
            programme = programmes.current(session)
        report = migration.import_balances(
            database,
            file,
            programme=programme,
            now=SystemClock().now(),
            actor="cli:import",
            source_system=source_system,
            dry_run=dry_run,
        )
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    _migration_report(f"Balances from {file.name}", report)
