"""``lealta gamification …``: give a new badge to everyone who already qualifies, and look at
a leaderboard from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.gamification import service
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.programme import service as programmes
from lealta.programme.schema import name_in

app = typer.Typer(help="Badges, challenges, streaks and leaderboards.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _db() -> Database:
    return Database(get_settings().database_url)


@app.command("backfill-badges")
def backfill_badges(
    badge: Annotated[
        list[str] | None, typer.Option("--badge", help="Only this badge (repeatable).")
    ] = None,
) -> None:
    """Award each active badge to every member who already qualifies (one INSERT ... SELECT
    per badge; the hourly job does the same). Safe to run again: nobody gets a badge twice."""
    now = SystemClock().now()
    with _db().unit_of_work() as session:
        programme = programmes.current(session, now=now)
        counts = service.backfill_badges(session, programme, now=now, badge_ids=badge or ())
    table = Table("badge", "new awards")
    for badge_id, n in counts.items():
        table.add_row(badge_id, str(n))
    console.print(table)


@app.command("leaderboard")
def leaderboard(board_id: Annotated[str, typer.Argument(help="The leaderboard's id.")]) -> None:
    """Print the top of a leaderboard now (opted-in members, by their chosen names)."""
    now = SystemClock().now()
    try:
        with _db().unit_of_work(write=False) as session:
            programme = programmes.current(session, now=now)
            board = service.board(programme, board_id)
            top, _ = service.standings(session, programme, board, now=now)
    except LealtaError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(4) from None
    table = Table("#", "name", "score", title=name_in(board.name, "en"))
    for s in top:
        table.add_row(str(s.rank), s.display_name, str(s.score))
    console.print(table)
