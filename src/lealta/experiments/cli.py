"""``lealta experiments results <campaign-id>``: a campaign's per-arm results and lift."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError

if TYPE_CHECKING:
    from lealta.experiments.schemas import DifferenceOut, ResultsOut

app = typer.Typer(help="Experiments: per-arm results and lift of campaigns.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT = {404: 4, 409: 5, 422: 2, 400: 2}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f} %"


def _diff(d: DifferenceOut | None, *, points: bool) -> str:
    if d is None or d.value is None:
        return "-"

    def fmt(v: float | str | None) -> str:
        if v is None:
            return "?"
        return f"{float(v) * 100:+.1f}" if points else str(v)

    if d.low is None:
        return f"{fmt(d.value)} (no interval: {d.reason})"
    mark = " *" if d.detectable else ""
    return f"{fmt(d.value)} [{fmt(d.low)}, {fmt(d.high)}]{mark}"


def table(out: ResultsOut) -> Table:
    """Figures as rows, arms as columns; ``*`` marks an interval that excludes 0."""
    t = Table(title=f"{out.campaign_id}: {out.status}, {out.currency}")
    t.add_column("figure")
    for a in out.arms:
        t.add_column(a.arm, justify="right")
    arms = out.arms
    rows: list[tuple[str, list[str]]] = [
        ("audience", [str(a.audience) for a in arms]),
        ("reached", [str(a.reached) for a in arms]),
        ("delivered", [str(a.delivered) for a in arms]),
        ("opened", [str(a.opened) for a in arms]),
        ("clicked", [str(a.clicked) for a in arms]),
        ("conversions", [str(a.conversions) for a in arms]),
        ("conversion rate", [_pct(a.conversion_rate) for a in arms]),
        ("net revenue", [a.revenue for a in arms]),
        ("revenue / member", [a.revenue_per_member or "-" for a in arms]),
        ("points", [str(a.points) for a in arms]),
        ("points cost", [a.points_cost for a in arms]),
        ("coupons used", [str(a.coupons_used) for a in arms]),
        ("coupon cost", [a.coupon_cost for a in arms]),
    ]
    if any(a.lift for a in arms):
        level = f"{out.confidence * 100:g} %"
        rows += [
            (
                f"conversion vs holdout (points, {level})",
                [_diff(a.lift.conversion_rate if a.lift else None, points=True) for a in arms],
            ),
            (
                "relative lift",
                [_pct(a.lift.relative_conversion) if a.lift else "-" for a in arms],
            ),
            (
                f"revenue / member vs holdout ({level})",
                [_diff(a.lift.revenue_per_member if a.lift else None, points=False) for a in arms],
            ),
        ]
    for name, values in rows:
        t.add_row(name, *values)
    return t


@app.command("results")
def show_results(
    campaign_id: Annotated[str, typer.Argument(help="The campaign's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Per-arm reach, delivery, conversions, revenue and cost, and each variant's lift over
    the holdout with its confidence interval (computed from stored data)."""
    # Imported here: the statistics bring SciPy, which every other command does without.
    from lealta.experiments import results
    from lealta.experiments.schemas import results_out

    settings = get_settings()
    now = SystemClock().now()
    try:
        with Database(settings.database_url).unit_of_work(write=False) as session:
            r = results.load(session, campaign_id, now=now, point_cost=settings.point_cost)
    except LealtaError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT.get(exc.status_code, 1)) from None
    out = results_out(r, now=now)
    if as_json:
        console.print_json(out.model_dump_json())
        return
    console.print(table(out))
    window = (
        "every conversion window has closed"
        if out.complete
        else f"windows open until {out.window_closes_at:%Y-%m-%d %H:%M} UTC"
        if out.window_closes_at
        else "nobody reached yet"
    )
    console.print(
        f"conversion: {out.conversion.event} within {out.conversion.days} days; {window}",
        highlight=False,
    )
