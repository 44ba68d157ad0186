"""Replay an order history through a programme design, in memory, and project its dashboard.

:func:`simulate` replays the CSV (the format of ``lealta import orders``, streamed) through the
real engine with :func:`lealta.simulator.replay.replay`: the import's parser and checks, the
engine's :func:`~lealta.engine.core.apply` on each member's state, then the points job's
:func:`~lealta.engine.core.catch_up` to ``as_of``. No database is opened (members per
segment are counted by the segments' compiled SQL over an in-memory SQLite copy of the final
members, accounts, orders and lots).

The figures are those a fresh Lealta shows after importing the same file and running the
points job: the tests check every figure against a real import on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from lealta.imports import service as imports
from lealta.kit.errors import InvalidInput, LealtaError
from lealta.kit.money import DEFAULT_MAX_AMOUNT
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.simulator import figures, parallel, replay
from lealta.simulator.figures import Projection

DEFAULT_COST_PER_POINT = Decimal("0.01")
MAX_PROGRAMME_BYTES = 1_000_000
ACTOR = "simulator"

ProgressCallback = Callable[[int, int], None]
"""Called with ``(rows_read, bytes_read)`` as the replay advances."""


class SimulatorInputError(InvalidInput):
    """A design or order file the simulator cannot use."""

    code = "simulator_invalid_input"


def load_programme(text: str, *, source: str) -> Programme:
    """A design from YAML or JSON text; ``422 invalid_programme`` lists every problem."""
    if len(text.encode("utf-8")) > MAX_PROGRAMME_BYTES:
        raise SimulatorInputError(
            f"{source} is larger than {MAX_PROGRAMME_BYTES // 1000} kB.",
            code="programme_too_large",
        )
    return programmes.validate(programmes.parse_text(text, source=source))


def read_programme(path: Path) -> Programme:
    """:func:`load_programme` from a file, ``unreadable_file`` when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise imports.UnreadableFileError(
            f"Cannot read '{path}': {reason or exc}.", details={"path": str(path)}
        ) from None
    return load_programme(text, source=path.name)


def default_cost_per_point(programme: Programme) -> Decimal:
    """What one outstanding point costs the business: the value of a point in the design's
    ``pay_with_points`` rewards (the highest, if several), else :data:`DEFAULT_COST_PER_POINT`."""
    values = [r.value_per_point for r in programme.rewards if r.value_per_point is not None]
    return max(values) if values else DEFAULT_COST_PER_POINT


@dataclass(frozen=True, slots=True)
class Options:
    as_of: datetime
    cost_per_point: Decimal | None = None
    auto_enrol: bool = True
    max_amount: Decimal = DEFAULT_MAX_AMOUNT
    chunk_size: int = imports.DEFAULT_CHUNK_SIZE
    workers: int = 1
    """Processes replaying independent groups of customers (1: this process alone; the CLI
    uses :func:`lealta.simulator.parallel.auto_workers`); the figures are the same whatever
    the number."""


def simulate(
    programme: Programme,
    orders: Path,
    options: Options,
    *,
    on_progress: ProgressCallback | None = None,
    split: parallel.Split | None = None,
) -> Projection:
    """Replay ``orders`` through ``programme`` and return the projected dashboard (``split``:
    :func:`lealta.simulator.parallel.split` of ``orders`` for ``options.workers``, if read).

    Raises the import's file errors (``unreadable_file``, ``invalid_csv_header``,
    ``invalid_csv``); rows the engine or the parser refuse are counted in the projection."""
    started = time.perf_counter()
    cost = options.cost_per_point
    if cost is None:
        cost = default_cost_per_point(programme)
    if cost < 0:
        raise SimulatorInputError("cost_per_point must not be negative.", code="invalid_cost")
    final = replay.replay(
        programme,
        orders,
        as_of=options.as_of,
        actor=ACTOR,
        auto_enrol=options.auto_enrol,
        max_amount=options.max_amount,
        on_progress=on_progress,
        chunk_size=options.chunk_size,
        workers=options.workers,
        split=split,
    )
    projection = figures.start(
        programme, as_of=options.as_of, cost_per_point=cost, report=final.report
    )
    figures.finish(
        projection,
        programme,
        final.tally,
        accounts=final.accounts,
        coupons=final.coupons,
        coupon_face_minor=final.coupon_face_minor,
        segments=replay.segment_counts(final, programme, as_of=options.as_of),
    )
    projection.seconds = time.perf_counter() - started
    return projection


def check_currency(programme: Programme, other: Programme) -> None:
    """Two designs compared side by side must count money in one currency."""
    if programme.currency != other.currency:
        raise SimulatorInputError(
            f"The designs use different currencies ({programme.currency}, {other.currency}).",
            code="currency_mismatch",
        )


__all__ = [
    "LealtaError",
    "Options",
    "Projection",
    "SimulatorInputError",
    "check_currency",
    "default_cost_per_point",
    "load_programme",
    "read_programme",
    "simulate",
]
