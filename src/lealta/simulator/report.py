"""The simulator's report: a terminal table, JSON, and a self-contained HTML page with charts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from rich.table import Table

from lealta.simulator import charts
from lealta.simulator.figures import Difference, Projection, comparison_json, differences

TEMPLATES = Path(__file__).parent / "templates"

LABELS = {
    "members": "Members",
    "orders": "Orders",
    "revenue": "Net revenue",
    "points_issued": "Points issued",
    "points_redeemed": "Points redeemed",
    "points_expired": "Points expired",
    "points_outstanding": "Points outstanding",
    "points_pending": "Points pending",
    "liability": "Liability",
    "coupons_issued": "Coupons issued",
    "coupon_cost": "Coupon cost (fixed amounts)",
}
MONEY = {"revenue", "liability", "coupon_cost"}
# A rise in these costs the business: shown red in a comparison (the others green).
COSTS = {
    "points_issued",
    "points_outstanding",
    "points_pending",
    "liability",
    "coupons_issued",
    "coupon_cost",
}


def label(figure: str, segments: dict[str, str] | None = None) -> str:
    """The English name of a figure (``segments``: segment id -> name)."""
    if figure.startswith("tier:"):
        return f"Members in tier {figure[5:]}"
    if figure.startswith("segment:"):
        key = figure[8:]
        return f"Members in segment {(segments or {}).get(key, key)}"
    return LABELS.get(figure, figure)


def _names(projections: Sequence[Projection]) -> dict[str, str]:
    names: dict[str, str] = {}
    for p in projections:
        names.update(p.segment_names)
    return names


def value_text(figure: str, value: Decimal, currency: str) -> str:
    if figure in MONEY:
        return f"{value:,.2f} {currency}"
    return f"{int(value):,}"


def to_json(projections: Sequence[Projection]) -> dict[str, Any]:
    if len(projections) == 2:
        return comparison_json(projections[0], projections[1])
    return {"designs": [p.to_json() for p in projections], "differences": []}


def terminal(projections: Sequence[Projection]) -> Table:
    """The headline figures side by side; with two designs, the change, highlighted."""
    first = projections[0]
    table = Table(title=f"Simulation as of {first.as_of:%Y-%m-%d}", show_lines=False)
    table.add_column("figure")
    for p in projections:
        table.add_column(p.programme, justify="right")
    two = len(projections) == 2
    if two:
        table.add_column("change", justify="right")
    rows: list[Difference] = (
        differences(projections[0], projections[1])
        if two
        else differences(projections[0], projections[0])
    )
    names = _names(projections)
    for d in rows:
        cells = [label(d.figure, names), value_text(d.figure, d.first, first.currency)]
        if two:
            cells.append(value_text(d.figure, d.second, first.currency))
            cells.append(_change_markup(d, first.currency))
        table.add_row(*cells)
    return table


def _change_markup(d: Difference, currency: str) -> str:
    if d.change == 0:
        return "[dim]=[/dim]"
    worse = (d.change > 0) == (d.figure in COSTS)
    style = "red" if worse else "green"
    sign = "+" if d.change > 0 else "-"
    text = f"{sign}{value_text(d.figure, abs(d.change), currency)}"
    if d.percent is not None:
        text += f" ({sign}{abs(d.percent)} %)"
    return f"[bold {style}]{text}[/bold {style}]"


def _trusted(svg: str) -> Markup:
    """Markup built by :mod:`lealta.simulator.charts`, which escapes every text it holds."""
    return Markup(svg)  # noqa: S704


def _same(text: str) -> str:
    return text


def chart_block(p: Projection, gettext: Callable[[str], str] = _same) -> dict[str, Markup]:
    """The SVG charts of one design (trusted markup: every text in them is escaped); titles
    and series names through ``gettext`` (the console's language)."""
    _ = gettext
    labels = [m.month for m in p.months]
    mix = {t: [m.tier_mix.get(t, 0) for m in p.months] for t in p.tiers}
    flows = {
        _("issued"): [m.points_issued for m in p.months],
        _("redeemed"): [m.points_redeemed for m in p.months],
        _("expired"): [m.points_expired for m in p.months],
    }
    outstanding = {_("outstanding"): [m.points_outstanding for m in p.months]}
    return {
        "tier_mix": _trusted(charts.stacked(_("Tier mix by month"), labels, mix, share=True)),
        "tier_legend": _trusted(charts.legend(list(mix))),
        "points": _trusted(charts.lines(_("Points issued, redeemed, expired"), labels, flows)),
        "points_legend": _trusted(charts.legend(list(flows))),
        "outstanding": _trusted(charts.lines(_("Points outstanding"), labels, outstanding)),
    }


def comparison_rows(projections: Sequence[Projection]) -> list[dict[str, Any]]:
    first = projections[0]
    two = len(projections) == 2
    rows = differences(projections[0], projections[1] if two else projections[0])
    names = _names(projections)
    out = []
    for d in rows:
        worse = (d.change > 0) == (d.figure in COSTS)
        out.append(
            {
                "figure": d.figure,
                "label": label(d.figure, names),
                "cells": [value_text(d.figure, d.first, first.currency)]
                + ([value_text(d.figure, d.second, first.currency)] if two else []),
                "change": (
                    ("+" if d.change > 0 else "-")
                    + value_text(d.figure, abs(d.change), first.currency)
                    + (f" ({d.percent:+} %)" if d.percent is not None else "")
                    if two and d.change != 0
                    else ""
                ),
                "tone": "" if not two or d.change == 0 else ("worse" if worse else "better"),
            }
        )
    return out


_env = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True
)


def html(projections: Sequence[Projection]) -> str:
    """A standalone page: the headline table (differences highlighted) and each design's
    charts and monthly table."""
    return _env.get_template("report.html").render(
        projections=projections,
        rows=comparison_rows(projections),
        charts=[chart_block(p) for p in projections],
    )
