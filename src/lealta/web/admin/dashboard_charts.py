"""Geometry of the dashboard's server-side SVG charts (pure; the template draws them).

Every chart is drawn in a fixed ``viewBox`` (``WIDTH`` x ``HEIGHT`` user units) and scales to
its container, so one drawing serves phone and desktop widths without JavaScript.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH = 600
HEIGHT = 220
PAD_LEFT = 72
PAD_RIGHT = 28
PAD_BOTTOM = 30
PAD_TOP = 12


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int | float
    label: str
    series: int = 0


@dataclass(frozen=True, slots=True)
class Axis:
    maximum: float
    ticks: list[tuple[float, float]]
    """(y, value) of the horizontal grid lines."""


def nice_max(value: float) -> tuple[float, int]:
    """The smallest of 1, 2, 2.5, 5 x 10ⁿ at or above ``value`` (1 for nothing to show), and
    the number of equal steps that divide it into round numbers."""
    if value <= 0:
        return 1, 4
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step, divisions in ((1, 4), (2, 4), (2.5, 5), (5, 5), (10, 4)):
        if value <= step * magnitude * (1 + 1e-12):
            return step * magnitude, divisions
    return 10 * magnitude, 4


def _axis(maximum: float) -> Axis:
    top, divisions = nice_max(max(maximum, 0))
    plot = HEIGHT - PAD_BOTTOM - PAD_TOP
    ticks = [
        (round(HEIGHT - PAD_BOTTOM - plot * i / divisions, 2), top * i / divisions)
        for i in range(divisions + 1)
    ]
    return Axis(top, ticks)


def bars(labels: list[str], *series: list[int]) -> tuple[list[Bar], Axis]:
    """Grouped vertical bars, one group per label and one bar per series (values ≥ 0)."""
    values = [v for s in series for v in s]
    axis = _axis(max(values, default=0))
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    groups = max(len(labels), 1)
    slot = plot_w / groups
    width = slot * 0.8 / max(len(series), 1)
    out = []
    for g, label in enumerate(labels):
        for s, data in enumerate(series):
            v = max(data[g], 0)
            h = plot_h * v / axis.maximum
            out.append(
                Bar(
                    x=round(PAD_LEFT + g * slot + slot * 0.1 + s * width, 2),
                    y=round(HEIGHT - PAD_BOTTOM - h, 2),
                    width=round(width, 2),
                    height=round(h, 2),
                    value=data[g],
                    label=label,
                    series=s,
                )
            )
    return out, axis


def line(labels: list[str], values: list[int | float]) -> tuple[str, list[Bar], Axis]:
    """A polyline (its ``points`` attribute) and its dots, for values ≥ 0."""
    axis = _axis(max(values, default=0))
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT - 8
    step = plot_w / max(len(values) - 1, 1)
    dots = []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        x = PAD_LEFT + 8 + i * step
        y = HEIGHT - PAD_BOTTOM - plot_h * max(v, 0) / axis.maximum
        dots.append(Bar(round(x, 2), round(y, 2), 0, 0, v, label))
    points = " ".join(f"{d.x},{d.y}" for d in dots)
    return points, dots, axis


def heat(rate: float | None) -> str:
    """Fill colour of a cohort cell: pale to the brand green as retention goes 0 → 100 %."""
    if rate is None:
        return "#f3f4f6"
    r = max(0.0, min(rate, 1.0))
    start, end = (236, 246, 243), (11, 93, 81)
    rgb = [round(a + (b - a) * r) for a, b in zip(start, end, strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def ink(rate: float | None) -> str:
    """Text colour readable on :func:`heat`'s fill."""
    return "#ffffff" if rate is not None and rate >= 0.5 else "#111827"
