"""``lealta campaigns …``: list, show, launch, pause, resume and cancel campaigns."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.campaigns import service
from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.programme.types import name_in

app = typer.Typer(
    help="Campaigns: a segment, a window, channels and content, sent throttled.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)
EXIT = {404: 4, 409: 5, 422: 2, 400: 2}
ACTOR = "cli"
CampaignId = Annotated[str, typer.Argument(help="The campaign's id.")]


def _db() -> Database:
    return Database(get_settings().database_url)


def _fail(exc: LealtaError) -> typer.Exit:
    err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
    return typer.Exit(EXIT.get(exc.status_code, 1))


@app.command("list")
def list_campaigns() -> None:
    """Every campaign with its status, window, priority, audience and recipients by status."""
    table = Table("id", "name", "source", "status", "starts", "priority", "audience", "by status")
    with _db().unit_of_work() as session:
        service.sync(session, now=SystemClock().now())
        rows = service.list_campaigns(session)
        counts = service.counts(session, [r.campaign_id for r in rows])
        for row in rows:
            data = service.definition(row)
            status = row.status + ("" if data.enabled or row.status != "scheduled" else " (draft)")
            table.add_row(
                row.campaign_id, name_in(data.name, "en"), row.source, status,
                data.starts_at.isoformat(timespec="minutes"), str(data.priority),
                "" if row.audience_size is None else str(row.audience_size),
                " ".join(f"{k}={v}" for k, v in sorted(counts[row.campaign_id]["status"].items())),
            )  # fmt: skip
    console.print(table)


@app.command("show")
def show(campaign_id: CampaignId) -> None:
    """A campaign's state, definition and recipients by status and arm (JSON)."""
    try:
        with _db().unit_of_work(write=False) as session:
            row = service.get(session, campaign_id)
            counts = service.counts(session, [campaign_id])[campaign_id]
            out = {
                "id": row.campaign_id, "source": row.source, "status": row.status,
                "audience_size": row.audience_size, "launched_at": row.launched_at,
                "finished_at": row.finished_at, "counts": counts["status"],
                "arms": counts["arms"], "definition": row.definition,
            }  # fmt: skip
    except LealtaError as exc:
        raise _fail(exc) from None
    console.print_json(json.dumps(out, default=str))


def _act(action: str, campaign_id: str) -> None:
    operations = {
        "launch": service.request_launch, "pause": service.pause, "resume": service.resume,
        "cancel": service.cancel,
    }  # fmt: skip
    try:
        with _db().unit_of_work() as session:
            now = SystemClock().now()
            service.sync(session, now=now)
            row = operations[action](session, campaign_id, actor=ACTOR, now=now)
            status = row.status
    except LealtaError as exc:
        raise _fail(exc) from None
    console.print(f"{campaign_id}: {status}" + (" (launching)" if action == "launch" else ""))


@app.command("launch")
def launch(campaign_id: CampaignId) -> None:
    """Launch a scheduled campaign (a draft too) now: a worker draws its audience."""
    _act("launch", campaign_id)


@app.command("pause")
def pause(campaign_id: CampaignId) -> None:
    """Stop sending a running campaign."""
    _act("pause", campaign_id)


@app.command("resume")
def resume(campaign_id: CampaignId) -> None:
    """Continue a paused campaign."""
    _act("resume", campaign_id)


@app.command("cancel")
def cancel(campaign_id: CampaignId) -> None:
    """End a campaign for good: its pending recipients are cancelled."""
    _act("cancel", campaign_id)
