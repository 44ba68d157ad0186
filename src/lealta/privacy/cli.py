"""``lealta members erase | export-data | retention``: GDPR from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import InvalidInput, LealtaError
from lealta.members import data_export
from lealta.members import service as members
from lealta.privacy import service
from lealta.programme import service as programmes

app = typer.Typer(help="Members' personal data (GDPR).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

EXIT_CODES = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 410: 4, 413: 2, 422: 2}


def _fail(exc: LealtaError) -> typer.Exit:
    err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
    return typer.Exit(EXIT_CODES.get(exc.status_code, 1))


@app.command("erase")
def erase(
    external_id: Annotated[str, typer.Argument(help="The member's external id.")],
    mode: Annotated[
        str,
        typer.Option(help="erase (default) or pseudonymise (keeps attributes, tags, consents)."),
    ] = "erase",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a member's personal data; the ledger, orders and totals stay exact.

    Exit code 0: erased (or scheduled as a job for a large history); 4: no such member or
    already erased.
    """
    if not yes:
        typer.confirm(
            f"Erase the personal data of {external_id}? This cannot be undone", abort=True
        )
    settings = get_settings()
    database = Database(settings.database_url)
    try:
        with database.unit_of_work() as session:
            member = service.member_to_erase(session, external_id, secret=settings.secret_key)
            record = service.request_erasure(
                session,
                member,
                secret=settings.secret_key,
                channel="cli",
                actor="cli",
                now=SystemClock().now(),
                mode=mode,
                data_dir=settings.data_dir,
            )
            result = service.view(record)
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    word = "erased" if result.status == "completed" else "scheduled (a job finishes it)"
    console.print(f"[green]{word}[/green]: the member is now [bold]{result.pseudonym}[/bold]")
    for table, rows in sorted(result.summary.items()):
        console.print(f"  {table}: {rows} rows")


@app.command("export-data")
def export_data(
    external_id: Annotated[str, typer.Argument(help="The member's external id.")],
) -> None:
    """Print one member's data as JSON (the document of the API and the cockpit)."""
    settings = get_settings()
    database = Database(settings.database_url)
    now = SystemClock().now()
    try:
        with database.unit_of_work(write=False) as session:
            member = members.get(session, external_id)
            programme = programmes.current(session, now=now)
            data = data_export.export(session, member, currency=programme.currency, now=now)
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


@app.command("retention")
def retention(
    months: Annotated[
        int | None,
        typer.Option(
            help="Inactive for this many months (default LEALTA_RETENTION_INACTIVE_MONTHS)."
        ),
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="erase or pseudonymise (default LEALTA_RETENTION_ACTION).")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="At most this many members.")
    ] = 1000,
    apply: Annotated[
        bool, typer.Option("--apply", help="Apply the policy; without it, only list (dry run).")
    ] = False,
) -> None:
    """List the members the retention policy would erase or pseudonymise (dry run), or apply
    it with ``--apply``."""
    settings = get_settings()
    months = months if months is not None else settings.retention_inactive_months
    chosen = action or settings.retention_action
    try:
        if months < 1:
            raise InvalidInput(
                "No retention period: pass --months or set LEALTA_RETENTION_INACTIVE_MONTHS.",
                code="retention_off",
            )
        if chosen not in ("erase", "pseudonymise"):
            raise InvalidInput("--action is erase or pseudonymise.", code="invalid_erasure_mode")
        database = Database(settings.database_url)
        try:
            report = service.run_retention(
                database,
                now=SystemClock().now(),
                months=months,
                action=chosen,
                secret=settings.secret_key,
                data_dir=settings.data_dir,
                limit=limit,
                dry_run=not apply,
            )
        finally:
            database.dispose()
    except LealtaError as exc:
        raise _fail(exc) from None
    table = Table(
        "external id", "enrolled", "last order", title=f"Inactive since {report.cutoff:%Y-%m-%d}"
    )
    for c in report.candidates:
        table.add_row(
            c.external_id,
            f"{c.enrolled_at:%Y-%m-%d}",
            f"{c.last_order_at:%Y-%m-%d}" if c.last_order_at else "—",
        )
    console.print(table)
    if apply:
        console.print(f"[green]{report.action}[/green]: {report.applied} members")
    else:
        console.print(
            f"dry run: {len(report.candidates)} members would be {report.action}d"
            " (run again with --apply)"
        )
