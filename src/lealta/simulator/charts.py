"""Server-side SVG charts for the simulator's report: no script, no library, escaped text.

Each function returns one ``<svg>`` element sized by its ``viewBox`` (it scales to the width
of its container) with a ``<title>`` for screen readers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#84cc16", "#64748b")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _short(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _frame(title: str, top: float, labels: Sequence[str]) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' class="chart"><title>{escape(title)}</title>',
    ]
    for i in range(5):
        y = TOP + plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11"'
            f' fill="#4b5563">{_short(top * (4 - i) / 4)}</text>'
        )
    n = len(labels)
    step = max(1, n // 8)
    for i in range(0, n, step):
        x = LEFT + plot_w * (i + 0.5) / max(n, 1)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11"'
            f' fill="#4b5563">{escape(labels[i])}</text>'
        )
    return parts


def lines(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> str:
    """One polyline per series over the months in ``labels``."""
    top = _nice_max(max((max(v, default=0) for v in series.values()), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(title, top, labels)
    n = max(len(labels), 1)
    for k, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{LEFT + plot_w * (i + 0.5) / n:.1f},{TOP + plot_h * (1 - max(v, 0) / top):.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour(k)}" stroke-width="2" points="{points}">'
            f"<title>{escape(name)}</title></polyline>"
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], *, share: bool = False
) -> str:
    """Stacked bars per month; ``share`` scales each bar to 100 %."""
    n = max(len(labels), 1)
    totals = [sum(v[i] for v in series.values()) for i in range(len(labels))]
    top = 100.0 if share else _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(title, top, labels)
    bar = plot_w / n * 0.8
    for i, label in enumerate(labels):
        x = LEFT + plot_w * i / n + plot_w / n * 0.1
        base = 0.0
        for k, (name, values) in enumerate(series.items()):
            value = values[i]
            if share:
                value = 100.0 * value / totals[i] if totals[i] else 0.0
            if value <= 0:
                continue
            h = plot_h * value / top
            y = TOP + plot_h - base - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                f' fill="{colour(k)}"><title>{escape(label)} {escape(name)}: '
                f"{values[i]:,.0f}</title></rect>"
            )
            base += h
    parts.append("</svg>")
    return "".join(parts)


def legend(names: Sequence[str]) -> str:
    """An HTML legend matching the colours of the series in order."""
    items = "".join(
        f'<li style="display:inline-flex;align-items:center;gap:.3rem;margin-right:.9rem">'
        f'<span aria-hidden="true" style="display:inline-block;width:.8rem;height:.8rem;'
        f'background:{colour(k)}"></span>{escape(name)}</li>'
        for k, name in enumerate(names)
    )
    return f'<ul class="legend" style="list-style:none;padding:0;margin:.25rem 0">{items}</ul>'
