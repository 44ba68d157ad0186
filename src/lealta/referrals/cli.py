"""``lealta referrals …``: the funnel, the list (the review queue with ``--status flagged``)
and the reviewer's approve / reject."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.programme import service as programmes
from lealta.referrals import service

app = typer.Typer(help="Referrals: funnel, list and review queue.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT = {404: 4, 409: 5, 422: 2, 400: 2}


def _db() -> Database:
    return Database(get_settings().database_url)


def _fail(exc: LealtaError) -> typer.Exit:
    err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
    return typer.Exit(EXIT.get(exc.status_code, 1))


@app.command("stats")
def stats() -> None:
    """The funnel: links handed out, visits, sign-ups, qualified, rewarded, flagged."""
    with _db().unit_of_work(write=False) as session:
        f = service.funnel(session)
    table = Table("step", "count")
    for label, value in (
        ("links", f.links),
        ("visits", f.visits),
        ("sign-ups", f.signups),
        ("waiting", f.waiting),
        ("qualified", f.qualified),
        ("rewarded", f.rewarded),
        ("flagged", f.flagged),
        ("refused", f.refused),
        ("rejected", f.rejected),
        ("reversed", f.reversed),
    ):
        table.add_row(label, str(value))
    console.print(table)


@app.command("list")
def list_referrals(
    status: Annotated[str | None, typer.Option(help="Only this status (e.g. flagged).")] = None,
) -> None:
    """Referrals newest first (at most 200)."""
    try:
        with _db().unit_of_work(write=False) as session:
            rows = service.list_referrals(session, status=service.check_status(status))
    except LealtaError as exc:
        raise _fail(exc) from None
    table = Table("id", "referrer", "friend", "status", "flags", "order", "created")
    for row in rows:
        r = row.referral
        table.add_row(
            str(r.id),
            row.referrer,
            row.friend,
            r.status,
            ", ".join(r.flags or []),
            r.order_external_id or "",
            r.created_at.strftime("%Y-%m-%d"),
        )
    console.print(table)


def _review(referral_id: int, approve: bool, reason: str | None) -> None:
    now = SystemClock().now()
    try:
        with _db().unit_of_work() as session:
            programme = programmes.current(session, now=now)
            if approve:
                done = service.approve(
                    session, referral_id, actor="cli", programme=programme, now=now
                )
            else:
                done = service.reject(
                    session, referral_id, actor="cli", programme=programme, now=now, reason=reason
                )
            status = done.status
    except LealtaError as exc:
        raise _fail(exc) from None
    console.print(f"[green]referral {referral_id}[/green]: {status}")


@app.command("approve")
def approve(referral_id: Annotated[int, typer.Argument(help="The referral id.")]) -> None:
    """Let a flagged referral go on."""
    _review(referral_id, True, None)


@app.command("reject")
def reject(
    referral_id: Annotated[int, typer.Argument(help="The referral id.")],
    reason: Annotated[str | None, typer.Option(help="Why (audited).")] = None,
) -> None:
    """Stop a referral; rewards given for its qualification are reversed."""
    _review(referral_id, False, reason)
