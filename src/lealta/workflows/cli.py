"""``lealta workflows …``: list, show, runs, dry-run, pause and resume from the command line.

Workflows are edited in the programme document (``lealta programme apply``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.members import service as members
from lealta.programme.schema import name_in
from lealta.workflows import service
from lealta.workflows.schemas import DryRunOut, RunOut, StepOut, WorkflowOut

app = typer.Typer(help="Workflows: runs, dry runs, pause and resume.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT = {404: 4, 409: 5, 422: 2, 400: 2}


def _db() -> Database:
    return Database(get_settings().database_url)


def _fail(exc: LealtaError) -> typer.Exit:
    err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
    return typer.Exit(EXIT.get(exc.status_code, 1))


@app.command("list")
def list_workflows() -> None:
    """Every workflow in force: on/off, paused, runs per day and conversions (30 days)."""
    table = Table("id", "name", "trigger", "on", "paused", "runs/day", "active", "converted")
    with _db().unit_of_work(write=False) as session:
        version, listed = service.listing(session, now=SystemClock().now())
    for item in listed:
        w, f = item.workflow, item.figures
        trigger = getattr(w.trigger, "event", None) or w.trigger.kind
        table.add_row(
            w.id,
            name_in(w.name, "es"),
            trigger,
            "yes" if w.enabled else "no",
            "yes" if item.paused else "no",
            f"{f.per_day:g}",
            str(f.active),
            str(f.converted),
        )
    console.print(f"programme version {version}")
    console.print(table)


@app.command("show")
def show(workflow_id: str) -> None:
    """The workflow as in force, as JSON (with its switch and figures)."""
    try:
        with _db().unit_of_work(write=False) as session:
            now = SystemClock().now()
            service.find(session, workflow_id, now=now)
            _, listed = service.listing(session, now=now)
    except LealtaError as exc:
        raise _fail(exc) from None
    found = next(w for w in listed if w.workflow.id == workflow_id)
    console.print_json(WorkflowOut.of(found).model_dump_json())


@app.command("runs")
def runs_cmd(
    workflow_id: Annotated[str | None, typer.Argument(help="A workflow id.")] = None,
    member: Annotated[str | None, typer.Option(help="A member's external id.")] = None,
    run: Annotated[int | None, typer.Option(help="One run, with its steps.")] = None,
    limit: int = 50,
) -> None:
    """Runs of a workflow, of a member, or one run with its steps."""
    try:
        with _db().unit_of_work(write=False) as session:
            if run is not None:
                found, customer, steps = service.get_run(session, run)
                out = RunOut.of(found, customer)
                console.print_json(
                    json.dumps(
                        {
                            **out.model_dump(mode="json"),
                            "steps": [StepOut.of(s).model_dump(mode="json") for s in steps],
                        }
                    )
                )
                return
            member_id = members.get(session, member).id if member else None
            if workflow_id is not None:
                service.find(session, workflow_id, now=SystemClock().now())
            rows = service.list_runs(
                session, workflow_id=workflow_id, member_id=member_id, limit=limit
            )
    except LealtaError as exc:
        raise _fail(exc) from None
    table = Table("run", "workflow", "member", "version", "status", "started", "reason")
    for r, customer in rows:
        table.add_row(
            str(r.id),
            r.workflow_id,
            customer,
            str(r.programme_version),
            r.status,
            r.started_at.isoformat(timespec="minutes"),
            r.exit_reason or "",
        )
    console.print(table)


@app.command("dry-run")
def dry_run(
    workflow_id: str,
    member: Annotated[str, typer.Argument(help="The member's external id.")],
    payload: Annotated[str, typer.Option(help="The trigger payload to assume, as JSON.")] = "{}",
    waited: Annotated[bool, typer.Option(help="Assume awaited events arrive.")] = False,
) -> None:
    """What the workflow would do to MEMBER now, without any effect."""
    try:
        given = json.loads(payload)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error[/red] --payload is not JSON: {exc}")
        raise typer.Exit(2) from None
    try:
        with _db().unit_of_work(write=False) as session:
            dry = service.dry_run(
                session,
                get_settings(),
                workflow_id,
                member,
                payload=given,
                waited=waited,
                now=SystemClock().now(),
            )
    except LealtaError as exc:
        raise _fail(exc) from None
    console.print_json(DryRunOut.of(dry).model_dump_json())


def _switch(workflow_id: str, paused: bool) -> None:
    try:
        with _db().unit_of_work() as session:
            service.set_paused(
                session, workflow_id, paused=paused, actor="cli", now=SystemClock().now()
            )
    except LealtaError as exc:
        raise _fail(exc) from None
    console.print(f"[green]{'paused' if paused else 'resumed'}[/green] {workflow_id}")


@app.command("pause")
def pause(workflow_id: str) -> None:
    """Start no new runs (runs in flight go on)."""
    _switch(workflow_id, True)


@app.command("resume")
def resume(workflow_id: str) -> None:
    """Start runs again."""
    _switch(workflow_id, False)
