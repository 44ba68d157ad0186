"""``lealta segments …``: list, show, recompute and export segments from the command line."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.programme import service as programmes
from lealta.programme.types import name_in
from lealta.segments import service

app = typer.Typer(
    help="Segments: member groups by conditions or uploaded lists.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)
EXIT = {404: 4, 409: 5, 422: 2, 400: 2}


def _db() -> Database:
    return Database(get_settings().database_url)


def _fail(exc: LealtaError) -> typer.Exit:
    err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
    return typer.Exit(EXIT.get(exc.status_code, 1))


@app.command("list")
def list_segments() -> None:
    """Every segment with its source, kind and member count."""
    table = Table("key", "name", "source", "kind", "members", "computed")
    with _db().unit_of_work(write=False) as session:
        for row in service.list_segments(session):
            data = service.definition(row)
            table.add_row(
                row.key,
                name_in(data.name, "en") if data.name else "",
                row.source,
                row.kind,
                str(row.member_count),
                row.computed_at.isoformat(timespec="seconds") if row.computed_at else "never",
            )
    console.print(table)


@app.command("show")
def show(key: Annotated[str, typer.Argument(help="The segment's key.")]) -> None:
    """A segment's definition (JSON) and its daily counts."""
    try:
        with _db().unit_of_work(write=False) as session:
            row = service.get(session, key)
            counts = service.counts_over_time(session, [row.id]).get(row.id, [])
            out = {
                "key": row.key, "source": row.source, "kind": row.kind,
                "members": row.member_count, "counts": counts,
                "definition": row.definition,
            }  # fmt: skip
    except LealtaError as exc:
        raise _fail(exc) from None
    console.print_json(json.dumps(out, default=str))


@app.command("recompute")
def recompute(
    keys: Annotated[list[str] | None, typer.Argument(help="Segment keys (default: all).")] = None,
) -> None:
    """Recompute segments now (set-wise; the programme's segments are synced first)."""
    db = _db()
    try:
        with db.unit_of_work() as session:
            programme = programmes.current(session, now=SystemClock().now())
            service.sync_programme(session, programme, now=SystemClock().now())
            wanted = keys or [r.key for r in service.list_segments(session)]
        for key in wanted:
            with db.unit_of_work() as session:
                done = service.recompute_all(session, now=SystemClock().now(), keys=[key])[0]
            console.print(
                f"{done.key}: {done.members} members (+{done.entered} -{done.left})",
                highlight=False,
            )
    except LealtaError as exc:
        raise _fail(exc) from None


@app.command("members")
def members(key: Annotated[str, typer.Argument(help="The segment's key.")]) -> None:
    """The segment's members as CSV on standard output."""
    db = _db()
    try:
        with db.unit_of_work(write=False) as session:
            service.get(session, key)
    except LealtaError as exc:
        raise _fail(exc) from None
    for chunk in service.export_csv(db, key):
        sys.stdout.write(chunk.decode())
