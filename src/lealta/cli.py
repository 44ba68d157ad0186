"""The ``lealta`` command. Each command opens a unit of work and calls a service, nothing more."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.apikeys import service as apikeys
from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.migrate import upgrade as migrate_upgrade
from lealta.ledger import service as ledger

app = typer.Typer(help="Lealta: self-hosted, API-first customer loyalty.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
ledger_app = typer.Typer(help="Points ledger.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
app.add_typer(ledger_app, name="ledger")

console = Console()
err = Console(stderr=True)

EXIT_CODES = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 413: 2, 422: 2}


def _database() -> Database:
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
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    migrate: Annotated[bool, typer.Option(help="Upgrade the schema first.")] = True,
) -> None:
    """Serve the API (and its docs at /docs)."""
    import uvicorn

    settings = get_settings()
    if migrate:
        migrate_upgrade(settings.database_url)
    uvicorn.run(
        "lealta.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        access_log=False,
        log_level="warning",
    )


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    settings = get_settings()
    migrate_upgrade(settings.database_url, revision)
    console.print(f"[green]database at {revision}[/green] ({_redact(settings.database_url)})")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who uses the key, e.g. 'webshop'.")] = "default",
    scope: Annotated[str, typer.Option(help="'server' (read+write) or 'read'.")] = "server",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the key.")] = False,
) -> None:
    """Create an API key. The secret is shown once; only its digest is stored."""
    if scope not in apikeys.SCOPES:
        raise fail(
            LealtaError(f"Unknown scope '{scope}'; use server or read.", code="invalid_scope")
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


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


def main() -> None:  # pragma: no cover
    app()
