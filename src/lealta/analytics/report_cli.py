"""``lealta report …``: programme KPIs, the dashboard's tables, and the roll-up rebuild."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lealta.analytics import dashboard, rollups
from lealta.audit import service as audit
from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.programme import service as programmes

app = typer.Typer(help="Programme dashboard: KPIs, tables, roll-ups.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

From = Annotated[
    datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="First day (UTC).")
]
To = Annotated[datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day.")]
Compare = Annotated[str, typer.Option("--compare", help="previous (default), year or none.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _load(start: datetime | None, end: datetime | None, compare: str) -> dashboard.Dashboard:
    if compare not in ("previous", "year", "none"):
        err.print(
            "[red]error[/red] [bold]invalid_period[/bold]: --compare is previous, year or none."
        )
        raise typer.Exit(2)
    settings = get_settings()
    db = Database(settings.database_url)
    now = SystemClock().now()
    try:
        period, other = dashboard.resolve(
            now.date(),
            _day(start),
            _day(end),
            compare,  # type: ignore[arg-type]
        )
        with db.unit_of_work(write=False) as session:
            programme = programmes.current(session, now=now)
            return dashboard.load(
                session,
                programme,
                period,
                other,
                now=now,
                point_cost=settings.point_cost,
                language="en",
            )
    except LealtaError as exc:
        err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}")
        raise typer.Exit(2) from None
    finally:
        db.dispose()


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.command("kpis")
def kpis(
    start: From = None, end: To = None, compare: Compare = "previous", as_json: AsJson = False
) -> None:
    """The KPIs of a period (default: the last 30 days) against a comparison period."""
    d = _load(start, end, compare)
    c = d.comparison
    if as_json:
        body = {
            "currency": d.currency,
            "point_cost": str(d.point_cost),
            "period": dashboard.period_dict(c.period),
            "kpis": dashboard.kpis_dict(c.kpis),
            "compare_period": dashboard.period_dict(c.compare_period),
            "compare_kpis": dashboard.kpis_dict(c.compare_kpis) if c.compare_kpis else None,
            "changes": c.deltas,
        }
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    title = f"{c.period.start} → {c.period.end}"
    if c.compare_period is not None:
        title += f" (vs {c.compare_period.start} → {c.compare_period.end})"
    table = Table(title=title)
    for column in ("KPI", "value", "comparison", "change"):
        table.add_column(column, justify="left" if column == "KPI" else "right")
    _, rows = dashboard.tables(d)["kpis"]
    for name, value, before, change in rows:
        table.add_row(
            name, _show(value), _show(before), f"{change:+.1%}" if change is not None else "—"
        )
    console.print(table)


@app.command("table")
def show_table(
    name: Annotated[str, typer.Argument(help=", ".join(dashboard.TABLES))],
    start: From = None,
    end: To = None,
    compare: Compare = "previous",
    as_json: AsJson = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """One table of the dashboard (months, cohorts, expiring, tiers, kpis)."""
    if name not in dashboard.TABLES:
        names = ", ".join(dashboard.TABLES)
        err.print(f"[red]error[/red] [bold]unknown_table[/bold]: choose one of {names}.")
        raise typer.Exit(4)
    columns, rows = dashboard.tables(_load(start, end, compare))[name]
    if as_json:
        sys.stdout.write(json.dumps({"name": name, "columns": columns, "rows": rows}) + "\n")
    elif as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(title=name)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_show(v) for v in row))
        console.print(table)


@app.command("rebuild")
def rebuild() -> None:
    """Empty the roll-up tables and recompute them from members, orders and the ledger (the
    numbers equal the ones the subscribers keep; run it after a restore or a manual fix)."""
    db = Database(get_settings().database_url)
    now = SystemClock().now()
    try:
        with console.status("rebuilding the analytics roll-ups"), db.unit_of_work() as session:
            result = rollups.rebuild(session, now=now)
            audit.record(
                session,
                actor="cli:report",
                action="analytics.rebuilt",
                target_type="analytics",
                target_id="rollups",
                now=now,
                details={"members": result.members, "days": result.days},
            )
    finally:
        db.dispose()
    console.print(
        f"Roll-ups rebuilt: {result.members:,} members, {result.days:,} days,"
        f" {result.months:,} months.",
        highlight=False,
    )
