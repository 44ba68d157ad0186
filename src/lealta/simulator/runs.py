"""Simulations started from the console: stored with their upload, run by a job.

:func:`start` stores the designs and the uploaded order file in ``simulator_runs`` and
enqueues ``simulator.run`` in the same transaction; the job (:func:`run_job`) writes the
file to a temporary directory, runs :func:`lealta.simulator.service.simulate` for each
design (progress saved every :data:`PROGRESS_SECONDS`), stores the projections as JSON and
clears the upload. A run that ends is never run again (a job delivered twice is a no-op).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lealta.jobs import queue
from lealta.jobs.tasks import JobContext, task
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError, NotFound
from lealta.models import SimulatorRun
from lealta.programme.schema import Programme
from lealta.simulator import report, service
from lealta.simulator.figures import Projection

TASK = "simulator.run"
PROGRESS_SECONDS = 1.0
MAX_ORDERS_BYTES = 64 * 1024 * 1024
RECENT = 20


class RunNotFound(NotFound):
    code = "simulator_run_not_found"


@dataclass(frozen=True, slots=True)
class Design:
    label: str
    programme: Programme


def start(
    session: Session,
    *,
    designs: Sequence[Design],
    orders_name: str,
    orders: bytes,
    actor: str,
    now: datetime,
) -> SimulatorRun:
    """Store a run and enqueue its job (the caller's transaction)."""
    if not 1 <= len(designs) <= 2:
        raise ValueError("a simulation compares one or two designs")
    if len(designs) == 2:
        service.check_currency(designs[0].programme, designs[1].programme)
    run = SimulatorRun(
        status="queued",
        created_by=actor,
        created_at=now,
        as_of=now,
        orders_name=orders_name[:255],
        orders_bytes=len(orders),
        orders_csv=orders,
        designs=[
            {"label": d.label[:200], "document": d.programme.model_dump(mode="json")}
            for d in designs
        ],
        bytes_read=0,
        rows_read=0,
    )
    session.add(run)
    session.flush()
    queue.enqueue(session, TASK, {"run_id": run.id}, now=now, dedupe_key=f"{TASK}:{run.id}")
    return run


def get(session: Session, run_id: int) -> SimulatorRun:
    run = session.get(SimulatorRun, run_id)
    if run is None:
        raise RunNotFound(f"No simulation {run_id}.", details={"run_id": run_id})
    return run


def recent(session: Session, limit: int = RECENT) -> list[Any]:
    """The latest runs, without their uploads or results (listing columns only)."""
    return list(
        session.execute(
            select(
                SimulatorRun.id,
                SimulatorRun.status,
                SimulatorRun.created_at,
                SimulatorRun.created_by,
                SimulatorRun.orders_name,
                SimulatorRun.designs,
            )
            .order_by(SimulatorRun.id.desc())
            .limit(limit)
        )
    )


def projections(run: SimulatorRun) -> list[Projection]:
    if not run.result:
        return []
    return [Projection.from_json(d) for d in run.result.get("designs", [])]


def _set(db: Database, run_id: int, **values: Any) -> None:
    with db.unit_of_work() as session:
        session.execute(update(SimulatorRun).where(SimulatorRun.id == run_id).values(**values))


@task(TASK, transactional=False, timeout=3600.0, max_attempts=2)
def run_job(ctx: JobContext, *, run_id: int) -> None:
    """Run a stored simulation (see the module's docstring)."""
    with ctx.db.unit_of_work(write=False) as session:
        run = session.get(SimulatorRun, run_id)
        if run is None or run.status in ("done", "failed"):
            return
        data = run.orders_csv or b""
        designs = [dict(d) for d in run.designs]
        as_of = run.as_of
    _set(ctx.db, run_id, status="running", started_at=ctx.now, rows_read=0, bytes_read=0)
    total = max(len(data), 1) * len(designs)
    done_before = 0
    last = 0.0

    def progress(rows: int, read: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_SECONDS:
            last = time.monotonic()
            _set(ctx.db, run_id, rows_read=rows, bytes_read=min(done_before + read, total))

    try:
        results: list[Projection] = []
        with tempfile.TemporaryDirectory(prefix="lealta-sim-upload-") as tmp:
            path = Path(tmp) / "orders.csv"
            path.write_bytes(data)
            for d in designs:
                programme = Programme.model_validate(d["document"])
                results.append(
                    service.simulate(
                        programme, path, service.Options(as_of=as_of), on_progress=progress
                    )
                )
                done_before += len(data)
        for label, p in zip((d["label"] for d in designs), results, strict=True):
            p.programme = str(label)
    except LealtaError as exc:
        _set(
            ctx.db,
            run_id,
            status="failed",
            finished_at=ctx.clock.now(),
            error_code=exc.code,
            error_message=exc.message[:1000],
            orders_csv=None,
        )
        return
    _set(
        ctx.db,
        run_id,
        status="done",
        finished_at=ctx.clock.now(),
        result=report.to_json(results),
        bytes_read=total,
        rows_read=results[0].rows_read,
        orders_csv=None,
    )
