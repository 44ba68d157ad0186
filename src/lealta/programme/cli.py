"""``lealta programme …``: the programme as code, from the command line."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.kit.clock import SystemClock, ensure_utc
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.programme import service
from lealta.programme.schema import Programme, json_schema

app = typer.Typer(help="The programme document: validate, apply, show, diff.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _load(file: Path) -> Programme:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]error[/red] cannot read {file}: {exc.strerror}")
        raise typer.Exit(2) from None
    try:
        return service.validate(service.parse_text(text, source=file.name))
    except LealtaError as exc:
        _problems(file, exc)
        raise typer.Exit(2) from None


def _problems(file: Path, exc: LealtaError) -> None:
    err.print(f"[red]{file}: invalid programme[/red]: {exc.message}", highlight=False)
    details = exc.details if isinstance(exc.details, list) else []
    for problem in details or [{"path": "", "message": exc.message}]:
        err.print(f"  [bold]{problem['path'] or '(document)'}[/bold]: {problem['message']}")


def _db() -> Database:
    return Database(get_settings().database_url)


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="YAML or JSON document.")]) -> None:
    """Check FILE: shape, references and every CEL expression. Exit 2 if invalid."""
    programme = _load(file)
    levels = len(programme.tiers.levels) if programme.tiers else 0
    console.print(
        f"[green]valid[/green]: {programme.name} ({programme.currency}), {levels} tiers, "
        f"{len(programme.rules)} rules, {len(programme.rewards)} rewards"
    )


@app.command("diff")
def diff_cmd(file: Path) -> None:
    """Show what applying FILE would change against the version in force."""
    programme = _load(file)
    with _db().unit_of_work(write=False) as session:
        changes = service.changes_from_latest(session, programme)
    for change in changes:
        console.print(change.describe(), highlight=False)
    console.print(f"{len(changes)} changes")


@app.command()
def apply(
    file: Path,
    activate_at: Annotated[
        datetime | None, typer.Option(help="When it takes effect (ISO 8601); default now.")
    ] = None,
) -> None:
    """Validate FILE and store it as the next version (versions are kept)."""
    programme = _load(file)
    now = SystemClock().now()
    with _db().unit_of_work() as session:
        applied = service.apply_with_diff(
            session,
            programme,
            actor="cli",
            now=now,
            activate_at=ensure_utc(activate_at) if activate_at else None,
        )
    for change in applied.changes:
        console.print(change.describe(), highlight=False)
    console.print(
        f"[green]applied version {applied.version}[/green], in force from "
        f"{applied.activated_at.isoformat(timespec='seconds')} ({len(applied.changes)} changes)"
    )
    if any(c.path.startswith("tiers") for c in applied.changes):
        console.print(
            "Tiers changed: run [bold]lealta tiers refresh[/bold] to upgrade members who now"
            " qualify (nobody is downgraded by an edit; reviews happen at period end)."
        )


@app.command()
def show(
    version: Annotated[int | None, typer.Option(help="A past version; default: in force.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Print the programme document."""
    with _db().unit_of_work(write=False) as session:
        try:
            programme = (
                Programme.model_validate(service.version(session, version).document)
                if version
                else service.current(session)
            )
        except LealtaError as exc:
            err.print(f"[red]error[/red] {exc.code}: {exc.message}")
            raise typer.Exit(4) from None
    print(service.dumps(programme, fmt))


@app.command()
def versions() -> None:
    """List applied versions."""
    with _db().unit_of_work(write=False) as session:
        rows = service.versions(session)
    table = Table("version", "activated", "applied by", "created")
    for row in rows:
        table.add_row(
            str(row.version),
            row.activated_at.isoformat(timespec="seconds"),
            row.applied_by,
            row.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
) -> None:
    """Print (or write) the JSON Schema of the programme document."""
    text = json.dumps(json_schema(), indent=2, ensure_ascii=False)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        print(text)
