"""The results table: printed with Rich and written as Markdown to ``bench/results.md``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    value: str
    baseline: str
    ratio: str


@dataclass
class Report:
    title: str
    header: list[tuple[str, str]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: str, value: str, baseline: str = "—", ratio: str = "—") -> None:
        self.rows.append(Row(figure, value, baseline, ratio))

    def print(self, console: Console) -> None:
        console.print(f"[bold]{self.title}[/bold]")
        for key, value in self.header:
            console.print(f"  [dim]{key}:[/dim] {value}", highlight=False)
        table = Table("figure", "value", "baseline (same run)", "ratio", show_lines=False)
        for row in self.rows:
            table.add_row(row.figure, row.value, row.baseline, row.ratio)
        console.print(table)
        for note in self.notes:
            console.print(f"  [dim]{note}[/dim]", highlight=False)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines += [f"- **{key}**: {value}" for key, value in self.header]
        lines += ["", "| figure | value | baseline (same run) | ratio |", "|---|---|---|---|"]
        for row in self.rows:
            cells = (row.figure, row.value, row.baseline, row.ratio)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if self.notes:
            lines.append("")
            lines += [f"{note}  " for note in self.notes]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        path.write_text(self.markdown())


def ms(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


def rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def times(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"
