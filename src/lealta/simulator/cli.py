"""``lealta simulate``: replay an order file through one or two programme designs."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from lealta.kit.lazycli import long_lived_imports
from lealta.simulator import parallel

if TYPE_CHECKING:
    from lealta.kit.errors import LealtaError
    from lealta.programme.schema import Programme
    from lealta.simulator.figures import Projection
    from lealta.simulator.service import Options

# This module imports the application only once the command runs (see ``simulate``): the
# file is being split over the replaying processes meanwhile.

console = Console()
err = Console(stderr=True)


def _fail(exc: LealtaError, what: str) -> typer.Exit:
    err.print(f"[red]error[/red] [bold]{exc.code}[/bold] ({what}): {exc.message}", highlight=False)
    details = exc.details if isinstance(exc.details, list) else []
    for problem in details[:20]:
        if isinstance(problem, dict) and "message" in problem:
            err.print(f"  [bold]{problem.get('path') or '(document)'}[/bold]: {problem['message']}")
    return typer.Exit(2)


def _design(path: Path) -> Programme:
    from lealta.kit.errors import LealtaError
    from lealta.simulator import service

    try:
        return service.read_programme(path)
    except LealtaError as exc:
        raise _fail(exc, str(path)) from None


def _run(
    programme: Programme,
    orders: Path,
    options: Options,
    size: int | None,
    split: parallel.Split | None,
) -> Projection:
    from lealta.simulator import service

    progress = Progress(
        TextColumn(f"[bold]{programme.name[:30]}[/bold] " + "{task.fields[rows]:>9,} rows"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task("simulate", total=size, rows=0)
        return service.simulate(
            programme,
            orders,
            options,
            on_progress=lambda rows, done: progress.update(task, completed=done, rows=rows),
            split=split,
        )


def simulate(
    programme: Annotated[
        Path, typer.Option("--programme", "-p", help="The design: a programme YAML/JSON file.")
    ],
    orders: Annotated[
        Path,
        typer.Option(
            "--orders", "-o", help="Order history CSV, in the format of `lealta import orders`."
        ),
    ],
    compare: Annotated[
        Path | None, typer.Option("--compare", "-c", help="A second design, side by side.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures as JSON to this file.")
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML report with charts to this file.")
    ] = None,
    cost_per_point: Annotated[
        str | None,
        typer.Option(
            help="Cost of one point in the currency (default: the design's pay-with-points"
            " value, else 0.01)."
        ),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(help="End of the simulation (ISO 8601, default now): expiries up to it."),
    ] = None,
) -> None:
    """Replay ORDERS through the design(s) in memory and report the projected
    dashboard: tier mix by month, points issued/redeemed/outstanding, liability, coupon cost,
    members per tier and per segment. Never touches the configured database.

    Exit 0: done; 1: some rows were rejected (counted in the report); 2: a design or the file
    cannot be used.
    """
    try:
        size: int | None = orders.stat().st_size
    except OSError:
        size = None
    workers = parallel.auto_workers(size or 0)
    # A child splits the file over the replaying processes (which customer goes to which,
    # and each one's rows in a file of its own) while this one imports the application, on
    # a core that would otherwise wait.
    with parallel.Splitting(orders, workers) as splitting:
        with long_lived_imports():
            from lealta.config import get_settings
            from lealta.kit.clock import SystemClock, ensure_utc
            from lealta.kit.errors import LealtaError
            from lealta.simulator import report, service
        designs = [_design(programme)] + ([_design(compare)] if compare is not None else [])
        try:
            if len(designs) == 2:
                service.check_currency(designs[0], designs[1])
            cost = Decimal(cost_per_point) if cost_per_point is not None else None
        except LealtaError as exc:
            raise _fail(exc, "designs") from None
        except InvalidOperation:
            err.print(f"[red]error[/red] [bold]invalid_cost[/bold]: not a number: {cost_per_point}")
            raise typer.Exit(2) from None
        settings = get_settings()
        options = service.Options(
            as_of=ensure_utc(as_of) if as_of is not None else SystemClock().now(),
            cost_per_point=cost,
            auto_enrol=True,
            max_amount=settings.max_order_amount,
            workers=workers,
        )
        split = splitting.result()
        projections: list[Projection] = []
        for design in designs:
            try:
                projections.append(_run(design, orders, options, size, split))
            except LealtaError as exc:
                raise _fail(exc, str(orders)) from None
    console.print(report.terminal(projections))
    for p in projections:
        console.print(
            f"{p.programme}: {p.rows_read:,} rows, {p.imported:,} replayed,"
            f" {p.rejected:,} rejected in {p.seconds:.1f} s",
            highlight=False,
        )
    if json_out is not None:
        json_out.write_text(
            json.dumps(report.to_json(projections), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        console.print(f"JSON written to {json_out}", highlight=False)
    if html_out is not None:
        html_out.write_text(report.html(projections), encoding="utf-8")
        console.print(f"HTML report written to {html_out}", highlight=False)
    if any(p.rejected for p in projections):
        for row in projections[0].rejections[:5]:
            err.print(f"  line {row['line']}: {row['code']}: {row['message']}", highlight=False)
        raise typer.Exit(1)
