"""``lealta surveys …``: add, list, close and summarise surveys from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.programme.schema import name_in
from lealta.surveys import service
from lealta.surveys.schemas import QuestionSummaryOut

app = typer.Typer(help="Surveys and NPS.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT = {404: 4, 409: 5, 422: 2, 400: 2}


def _db() -> Database:
    return Database(get_settings().database_url)


def _fail(exc: LealtaError) -> typer.Exit:
    err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
    for problem in exc.details if isinstance(exc.details, list) else []:
        if isinstance(problem, dict) and "path" in problem:
            err.print(f"  [bold]{problem['path'] or '(survey)'}[/bold]: {problem['message']}")
    return typer.Exit(EXIT.get(exc.status_code, 1))


@app.command("add")
def add(file: Annotated[Path, typer.Argument(help="The survey as YAML or JSON.")]) -> None:
    """Add the survey defined in FILE (exit 2 with every problem's path if invalid)."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]error[/red] cannot read {file}: {exc.strerror}")
        raise typer.Exit(2) from None
    try:
        data = service.parse(text)
        with _db().unit_of_work() as session:
            service.create(session, data, actor="cli", now=SystemClock().now())
    except LealtaError as exc:
        raise _fail(exc) from None
    console.print(f"[green]added[/green] {data.key}: {len(data.questions)} questions")


@app.command("list")
def list_surveys() -> None:
    """Every survey with its status and number of responses."""
    now = SystemClock().now()
    table = Table("key", "name", "status", "questions", "points", "responses")
    with _db().unit_of_work(write=False) as session:
        rows = service.list_surveys(session)
        counts = service.response_counts(session, [s.id for s in rows])
        for s in rows:
            data = service.definition(s)
            status = "open" if service.is_open(s, data, now) else s.status
            table.add_row(
                s.key, name_in(data.name, "en"), status, str(len(data.questions)),
                str(s.points), str(counts.get(s.id, 0)),
            )  # fmt: skip
    console.print(table)


@app.command("close")
def close(key: str) -> None:
    """Stop taking answers for KEY."""
    try:
        with _db().unit_of_work() as session:
            service.set_status(session, key, "closed", actor="cli", now=SystemClock().now())
    except LealtaError as exc:
        raise _fail(exc) from None
    console.print(f"{key}: closed")


@app.command("summary")
def summary(
    key: str,
    by: Annotated[str, typer.Option(help="all, tier or month")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables")] = False,
) -> None:
    """NPS and answer summaries of KEY, for everyone, per tier or per month."""
    if by not in ("all", "tier", "month"):
        err.print("[red]error[/red] --by is all, tier or month")
        raise typer.Exit(2)
    group: Literal["all", "tier", "month"] = by  # type: ignore[assignment]
    try:
        with _db().unit_of_work(write=False) as session:
            survey = service.get(session, key)
            groups = service.summary(session, survey, by=group)
    except LealtaError as exc:
        raise _fail(exc) from None
    out = {
        (name or "all"): [QuestionSummaryOut.of(s).model_dump(mode="json") for s in summaries]
        for name, summaries in sorted(groups.items(), key=lambda kv: kv[0] or "")
    }
    if as_json:
        typer.echo(json.dumps({"survey": key, "by": by, "groups": out}, indent=2))
        return
    for name, summaries in out.items():
        table = Table("question", "kind", "answers", "NPS", "mean", "distribution", title=name)
        for s in summaries:
            nps = s["nps"]["score"] if s["nps"] else ""
            spread = ", ".join(f"{k}: {v}" for k, v in s["distribution"].items())
            table.add_row(
                s["question"], s["kind"], str(s["answers"]), str(nps or ""),
                str(s["mean"] or ""), spread,
            )  # fmt: skip
        console.print(table)
