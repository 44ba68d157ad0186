"""``lealta analytics …``: the CLV fit on demand."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database

app = typer.Typer(help="Analytics: the predicted-CLV model.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@app.command("fit-clv")
def fit_clv(
    enqueue: Annotated[
        bool, typer.Option("--enqueue", help="Queue the fit for a worker instead of running it.")
    ] = False,
) -> None:
    """Fit the BG/NBD + Gamma-Gamma model on every member's history and store it (what the
    nightly job does). Exit 5 when the history is too small to fit (stored as a failed fit)."""
    # Imported here: the model brings NumPy and SciPy, which every other command does without.
    from lealta.analytics import clv_jobs, clv_store

    db = Database(get_settings().database_url)
    now = SystemClock().now()
    try:
        if enqueue:
            with db.unit_of_work() as session:
                job_id = clv_jobs.request_fit(session, now=now)
            console.print(f"CLV fit queued as job {job_id}.", highlight=False)
            return
        with console.status("fitting the CLV model"):
            row = clv_store.run_fit(db, now=now, actor="cli:analytics")
    finally:
        db.dispose()
    if row.status != "ok":
        err.print(f"[red]error[/red] [bold]{row.error_code}[/bold]: {row.error_message}")
        raise typer.Exit(5)
    console.print(
        f"CLV fit {row.id} stored: {row.customers:,} members with purchases,"
        f" r={row.bg_r:.4g} alpha={row.bg_alpha:.4g} a={row.bg_a:.4g} b={row.bg_b:.4g};"
        f" p={row.gg_p:.4g} q={row.gg_q:.4g} gamma={row.gg_gamma:.4g}",
        highlight=False,
    )
