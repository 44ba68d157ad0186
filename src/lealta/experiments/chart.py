"""The results page's chart: conversion rate per arm as horizontal bars with the Wilson
interval of each arm as a whisker (server-side SVG: no script, escaped text).

Drawn in a fixed ``viewBox`` that scales to its container, so one drawing serves phone and
desktop; the holdout is grey, the variants in the brand colour; a ``<title>`` on the chart
and on each bar reads out the figures for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 400
ROW = 58
LEFT, RIGHT, TOP, BOTTOM = 12, 64, 6, 30
LABEL, BAR = 20, 22
DASH = "\u2013"
BRAND, HOLDOUT, INK, GRID, MUTED = "#0b5d51", "#9ca3af", "#111827", "#e5e7eb", "#4b5563"


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    rate: float | None
    low: float | None
    high: float | None
    holdout: bool


def _top(value: float) -> float:
    """A round axis maximum (a fraction) at or above ``value``: 1, 2, 2.5 or 5 x 10ⁿ."""
    if value <= 0:
        return 0.1
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude * (1 + 1e-12):
            return min(step * magnitude, 1.0)
    return 1.0


def _short(label: str, size: int = 44) -> str:
    return label if len(label) <= size else label[: size - 1] + "…"


def conversion(title: str, bars: Sequence[Bar], percent: Callable[[float], str]) -> str:
    """The SVG element; ``percent`` formats a fraction for the reader's language. Each arm
    is a row: its name on a line of its own (long names fit a phone), the bar below it with
    the whisker across and the rate at its right."""
    top = _top(max((b.high or b.rate or 0 for b in bars), default=0))
    plot_w = WIDTH - LEFT - RIGHT
    height = TOP + ROW * max(len(bars), 1) + BOTTOM

    def x(v: float) -> float:
        return LEFT + plot_w * max(0.0, min(v, top)) / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img"'
        f' class="chart" data-chart="conversion"><title>{escape(title)}</title>'
    ]
    axis_y = height - BOTTOM
    for i in range(5):
        v = top * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{TOP + LABEL}" y2="{axis_y}"'
            f' stroke="{GRID}"/>'
            f'<text x="{x(v):.1f}" y="{axis_y + 20}" text-anchor="{anchor}" font-size="13"'
            f' fill="{MUTED}">{escape(percent(v))}</text>'
        )
    for i, b in enumerate(bars):
        y = TOP + ROW * i
        bar_y = y + LABEL + 4
        mid = bar_y + BAR / 2
        parts.append(
            f'<text x="{LEFT}" y="{y + 15}" font-size="15" font-weight="600"'
            f' fill="{INK}">{escape(_short(b.label))}</text>'
        )
        if b.rate is None:
            parts.append(
                f'<text x="{LEFT + 4}" y="{mid + 5:.1f}" font-size="14"'
                f' fill="{MUTED}">{DASH}</text>'
            )
            continue
        spoken = f"{b.label}: {percent(b.rate)}"
        if b.low is not None and b.high is not None:
            spoken += f" ({percent(b.low)} {DASH} {percent(b.high)})"
        parts.append(
            f'<rect x="{LEFT}" y="{bar_y:.1f}" width="{x(b.rate) - LEFT:.1f}" height="{BAR}"'
            f' fill="{HOLDOUT if b.holdout else BRAND}" data-arm-bar="{escape(b.label)}">'
            f"<title>{escape(spoken)}</title></rect>"
        )
        end = x(b.rate)
        if b.low is not None and b.high is not None:
            lo, hi = x(b.low), x(b.high)
            end = max(end, hi)
            parts.append(
                f'<g stroke="{INK}" stroke-width="2" data-whisker="{escape(b.label)}">'
                f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{mid:.1f}" y2="{mid:.1f}"/>'
                f'<line x1="{lo:.1f}" x2="{lo:.1f}" y1="{mid - 8:.1f}" y2="{mid + 8:.1f}"/>'
                f'<line x1="{hi:.1f}" x2="{hi:.1f}" y1="{mid - 8:.1f}" y2="{mid + 8:.1f}"/></g>'
            )
        parts.append(
            f'<text x="{min(end + 6, WIDTH - 60):.1f}" y="{mid + 5:.1f}" font-size="14"'
            f' fill="{INK}">{escape(percent(b.rate))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
