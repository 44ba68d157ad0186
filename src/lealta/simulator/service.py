"""Replay an order history through a programme design in a throwaway database.

:func:`simulate` creates a fresh SQLite file in a temporary directory (never the live
database), applies the design (in force since :data:`~lealta.kit.timestamps.EARLIEST`),
imports the CSV with :func:`lealta.imports.service.import_orders` (the CSV format of
``lealta import orders``, streamed in chunks through the batch driver and the real engine),
catches up pending points, expiries and tier reviews to ``as_of``, then reads the projected
dashboard from it (:mod:`lealta.simulator.figures`) and deletes the file.

Because the replay *is* an import, the figures are those a fresh Lealta shows after importing
the same file (the tests check it against a real import).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event

from lealta import models  # noqa: F401  (registers every table on Base.metadata)
from lealta.imports import service as imports
from lealta.jobs import service as jobs
from lealta.kit.db import Base, Database
from lealta.kit.errors import InvalidInput, LealtaError
from lealta.kit.money import DEFAULT_MAX_AMOUNT
from lealta.kit.timestamps import EARLIEST
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.simulator import figures
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


def _fast_sqlite(db: Database) -> None:
    """A throwaway file needs no durability: skip the fsyncs (the data dies with the run)."""

    @event.listens_for(db.engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()


@dataclass(frozen=True, slots=True)
class Options:
    as_of: datetime
    cost_per_point: Decimal | None = None
    auto_enrol: bool = True
    max_amount: Decimal = DEFAULT_MAX_AMOUNT
    chunk_size: int = imports.DEFAULT_CHUNK_SIZE


def simulate(
    programme: Programme,
    orders: Path,
    options: Options,
    *,
    on_progress: ProgressCallback | None = None,
    workdir: Path | None = None,
) -> Projection:
    """Replay ``orders`` through ``programme`` and return the projected dashboard.

    Raises the import's file errors (``unreadable_file``, ``invalid_csv_header``,
    ``invalid_csv``); rows the engine or the parser refuse are counted in the projection."""
    started = time.perf_counter()
    cost = options.cost_per_point
    if cost is None:
        cost = default_cost_per_point(programme)
    if cost < 0:
        raise SimulatorInputError("cost_per_point must not be negative.", code="invalid_cost")
    with tempfile.TemporaryDirectory(prefix="lealta-sim-", dir=workdir) as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'simulation.db'}", pool_size=1, max_overflow=0)
        try:
            _fast_sqlite(db)
            Base.metadata.create_all(db.engine)
            with db.unit_of_work() as session:
                programmes.apply(
                    session, programme, actor=ACTOR, now=options.as_of, activate_at=EARLIEST
                )
            report = imports.import_orders(
                db,
                orders,
                programme=programme,
                now=options.as_of,
                actor=ACTOR,
                on_progress=on_progress,
                auto_enrol=options.auto_enrol,
                chunk_size=options.chunk_size,
                max_amount=options.max_amount,
            )
            jobs.run_due(db, now=options.as_of, backfill=True)
            projection = figures.read(
                db,
                programme,
                as_of=options.as_of,
                cost_per_point=cost,
                report=report,
            )
        finally:
            db.dispose()
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
