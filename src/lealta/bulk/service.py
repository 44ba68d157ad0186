"""Bulk operations: points, tags, attributes or tier moves for many members at once.

An operation is created with all its rows in one transaction (:func:`create`), under a
unique idempotency key: the same key (over the API) or the same file (from the CLI, keyed by
the file's SHA-256) is the same operation, so sending it again changes nothing. A job
(``bulk.run``) then works through the rows in chunks (:func:`run`), one transaction per chunk:
the operation row is locked, the chunk's members are loaded together (states through the
spine's batch loader), each row is applied in memory through the engine (:mod:`lealta.bulk.ops`)
and the chunk's effects written with one statement per table, together with the rows'
statuses and the operation's progress. A row that is refused (unknown member, not enough
points, unknown tier, bad attribute) is marked ``rejected`` with a code and a message and
changes nothing; a run stopped half-way resumes at the first pending row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.bulk import ops
from lealta.engine.outcome import Outcome
from lealta.events import store
from lealta.events.service import no_crossings
from lealta.jobs import queue
from lealta.kit.clock import Clock
from lealta.kit.db import Database
from lealta.kit.errors import Conflict, LealtaError, NotFound
from lealta.members import attributes as member_attributes
from lealta.members import service as members
from lealta.models import BulkOperation, BulkOperationRow, Member
from lealta.programme import service as programmes
from lealta.programme.schema import Programme

RUN_TASK = "bulk.run"
DEFAULT_CHUNK_SIZE = 2000
MAX_MESSAGE = 500

_ops = cast(Table, BulkOperation.__table__)
_rows = cast(Table, BulkOperationRow.__table__)
_members = cast(Table, Member.__table__)


class BulkOperationNotFound(NotFound):
    code = "bulk_operation_not_found"


@dataclass(slots=True)
class NewRow:
    """One input row: its line (or index), the member's external id, what to do, and the
    reason it cannot be done at all (a malformed row is recorded as rejected at once)."""

    line: int
    external_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    error: LealtaError | None = None


@dataclass(frozen=True, slots=True)
class Created:
    operation: BulkOperation
    created: bool
    """False when the key (or file) named an existing operation: nothing was added."""


def create(
    session: Session,
    *,
    kind: str,
    key: str,
    request_hash: str,
    rows: Sequence[NewRow],
    actor: str,
    reason: str | None,
    source: str,
    now: datetime,
) -> Created:
    """Record an operation and its rows, enqueue the job that applies them, audit it.

    The same ``key`` with the same ``request_hash`` returns the existing operation (nothing
    added); with another hash it is ``409 idempotency_key_reused``."""
    existing = _by_key(session, key)
    if existing is None:
        operation = BulkOperation(
            kind=kind,
            idempotency_key=key,
            request_hash=request_hash,
            status="queued",
            actor=actor,
            reason=reason,
            source=source[:200],
            total_rows=len(rows),
            processed_rows=sum(r.error is not None for r in rows),
            applied_rows=0,
            rejected_rows=sum(r.error is not None for r in rows),
            points_applied=0,
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(operation)
                session.flush()
        except IntegrityError:
            existing = _by_key(session, key)
            if existing is None:  # pragma: no cover - the row vanished in between
                raise
        else:
            _insert_rows(session, operation.id, rows)
            operation.job_id = queue.enqueue(
                session,
                RUN_TASK,
                {"operation_id": operation.id},
                now=now,
                dedupe_key=f"bulk:{operation.id}",
            )
            audit.record(
                session,
                actor=actor,
                action=f"bulk.{kind}",
                target_type="bulk_operation",
                target_id=str(operation.id),
                reason=reason,
                now=now,
                details={"rows": len(rows), "source": source[:200], "key": key},
            )
            return Created(operation, True)
    if existing.request_hash != request_hash or existing.kind != kind:
        raise Conflict(
            "This idempotency key was already used with a different request.",
            code="idempotency_key_reused",
            details={"key": key, "operation_id": existing.id},
        )
    return Created(existing, False)


def _by_key(session: Session, key: str) -> BulkOperation | None:
    return session.scalar(select(BulkOperation).where(BulkOperation.idempotency_key == key))


def _insert_rows(session: Session, operation_id: int, rows: Sequence[NewRow]) -> None:
    values = [
        {
            "operation_id": operation_id,
            "line": r.line,
            "external_id": r.external_id[:200],
            "payload": r.payload,
            "status": "pending" if r.error is None else "rejected",
            "code": None if r.error is None else r.error.code,
            "message": None if r.error is None else r.error.message[:MAX_MESSAGE],
            "entry_id": None,
        }
        for r in rows
    ]
    for start in range(0, len(values), 5000):
        store.insert_rows(session, _rows, values[start : start + 5000], bulk=True)


def get(session: Session, operation_id: int) -> BulkOperation:
    """The operation, or ``404 bulk_operation_not_found``."""
    operation = session.get(BulkOperation, operation_id) if 0 < operation_id < 2**63 else None
    if operation is None:
        raise BulkOperationNotFound(
            f"No bulk operation {operation_id}.", details={"operation_id": operation_id}
        )
    return operation


def rows_page(
    session: Session,
    operation_id: int,
    *,
    status: str | None = None,
    after_line: int | None = None,
    limit: int = 100,
) -> list[BulkOperationRow]:
    """Rows of an operation in line order, after ``after_line``, optionally of one status."""
    get(session, operation_id)
    stmt = select(BulkOperationRow).where(BulkOperationRow.operation_id == operation_id)
    if status is not None:
        stmt = stmt.where(BulkOperationRow.status == status)
    if after_line is not None:
        stmt = stmt.where(BulkOperationRow.line > after_line)
    return list(session.scalars(stmt.order_by(BulkOperationRow.line).limit(limit)))


REPORT_COLUMNS = ("line", "external_id", "status", "code", "message", "entry_id", "input")


def report_lines(db: Database, operation_id: int, *, batch: int = 1000) -> Iterator[str]:
    """The per-row report as CSV text, header first, streamed in line order (pages of
    ``batch`` rows, each its own short read)."""
    with db.unit_of_work(write=False) as session:
        get(session, operation_id)
    yield _csv_line(REPORT_COLUMNS)
    after = 0
    while True:
        with db.unit_of_work(write=False) as session:
            page = session.execute(
                select(
                    _rows.c.line,
                    _rows.c.external_id,
                    _rows.c.status,
                    _rows.c.code,
                    _rows.c.message,
                    _rows.c.entry_id,
                    _rows.c.payload,
                )
                .where(_rows.c.operation_id == operation_id, _rows.c.line > after)
                .order_by(_rows.c.line)
                .limit(batch)
            ).all()
        for line, ext, status, code, message, entry_id, payload in page:
            yield _csv_line(
                (line, ext, status, code or "", message or "", entry_id or "", _input(payload))
            )
        if len(page) < batch:
            return
        after = page[-1][0]


def _input(payload: dict[str, Any] | None) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted((payload or {}).items()))


def _csv_line(values: Sequence[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


# --- running -----------------------------------------------------------------------------------


ProgressCallback = Callable[[BulkOperation], None]


@dataclass(slots=True)
class _Result:
    row_id: int
    status: str
    code: str | None = None
    message: str | None = None
    entry_id: int | None = None
    points: int = 0


def run(
    db: Database,
    operation_id: int,
    *,
    clock: Clock,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_progress: ProgressCallback | None = None,
) -> BulkOperation:
    """Apply the pending rows of the operation, a chunk per transaction, until none is left.

    Safe to call again, or from two processes at once (the operation row is locked for each
    chunk): rows already applied or rejected are never touched again. Returns the operation
    as it ended (detached)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    while True:
        with db.unit_of_work() as session:
            operation = session.execute(
                select(BulkOperation).where(BulkOperation.id == operation_id).with_for_update()
            ).scalar_one_or_none()
            if operation is None:
                raise BulkOperationNotFound(
                    f"No bulk operation {operation_id}.", details={"operation_id": operation_id}
                )
            if operation.status in ("done", "failed"):
                return operation
            now = clock.now()
            if operation.status == "queued":
                operation.status = "running"
                operation.started_at = now
            pending = session.execute(
                select(_rows.c.id, _rows.c.line, _rows.c.external_id, _rows.c.payload)
                .where(_rows.c.operation_id == operation_id, _rows.c.status == "pending")
                .order_by(_rows.c.line)
                .limit(chunk_size)
            ).all()
            if not pending:
                _finish(session, operation, now)
                return operation
            programme = programmes.current(session, now=now)
            chunk = _APPLY[operation.kind](session, programme, operation, pending, now)
            _write(session, operation, chunk, now)
        if on_progress is not None:
            on_progress(operation)


def _finish(session: Session, operation: BulkOperation, now: datetime) -> None:
    counts: dict[str, int] = dict(
        session.execute(
            select(_rows.c.status, func.count())
            .where(_rows.c.operation_id == operation.id)
            .group_by(_rows.c.status)
        ).all()
    )
    operation.applied_rows = int(counts.get("applied", 0))
    operation.rejected_rows = int(counts.get("rejected", 0))
    operation.processed_rows = operation.applied_rows + operation.rejected_rows
    operation.status = "done"
    operation.finished_at = now
    audit.record(
        session,
        actor=operation.actor,
        action=f"bulk.{operation.kind}.done",
        target_type="bulk_operation",
        target_id=str(operation.id),
        reason=operation.reason,
        now=now,
        details={
            "applied": operation.applied_rows,
            "rejected": operation.rejected_rows,
            "points": operation.points_applied,
        },
    )


def _write(session: Session, operation: BulkOperation, chunk: _Chunk, now: datetime) -> None:
    """The chunk's outcomes and its rows' statuses: one statement per table."""
    written = store.assign_ids(session, chunk.done)
    for result, m, outcome in chunk.settled:
        if outcome.postings:
            result.entry_id = written.id(m, outcome.postings[0])
    statuses = store.Rows(
        _rows,
        [
            {
                "_id": r.row_id,
                "status": r.status,
                "code": r.code,
                "message": None if r.message is None else r.message[:MAX_MESSAGE],
                "entry_id": r.entry_id,
            }
            for r in chunk.results
        ],
        key="id",
    )
    store.write(
        session,
        chunk.done,
        written,
        now=now,
        backfill=False,
        on_crossing=no_crossings,
        bulk=True,
        updates=[*chunk.updates, statuses],
    )
    results = chunk.results
    applied = sum(r.status == "applied" for r in results)
    operation.processed_rows += len(results)
    operation.applied_rows += applied
    operation.rejected_rows += len(results) - applied
    operation.points_applied += sum(r.points for r in results)


def _rejected(row_id: int, exc: LealtaError) -> _Result:
    return _Result(row_id, "rejected", exc.code, exc.message)


def _not_found(row_id: int, external_id: str) -> _Result:
    return _Result(
        row_id, "rejected", "member_not_found", f"No member with external id '{external_id}'."
    )


Pending = Sequence[Row[Any, Any, Any, Any]]
Apply = Callable[[Session, Programme, BulkOperation, Pending, datetime], "_Chunk"]


@dataclass(slots=True)
class _Chunk:
    """What applying a chunk decided: every row's result, and the engine's outcomes to write
    (with, for each applied row, the outcome that holds its entry)."""

    results: list[_Result] = field(default_factory=list)
    done: list[tuple[int, Outcome]] = field(default_factory=list)
    settled: list[tuple[_Result, int, Outcome]] = field(default_factory=list)
    updates: list[store.Rows] = field(default_factory=list)


def _through_engine(
    session: Session,
    programme: Programme,
    pending: Pending,
    now: datetime,
    step: Callable[[Any, Any], Outcome],
) -> _Chunk:
    """Apply ``step(state, row)`` to each row in line order, threading each member's state,
    then write every outcome at once; a refused row is rejected alone."""
    ids = members.member_ids(session, sorted({row.external_id for row in pending}))
    states = store.load_many(session, programme, {m: (now, now) for m in set(ids.values())})
    chunk = _Chunk()
    results, done, settled = chunk.results, chunk.done, chunk.settled
    for row in pending:
        m = ids.get(row.external_id)
        if m is None:
            results.append(_not_found(row.id, row.external_id))
            continue
        try:
            outcome = step(states[m], row)
        except LealtaError as exc:
            results.append(_rejected(row.id, exc))
            continue
        states[m] = outcome.state
        done.append((m, outcome))
        result = _Result(row.id, "applied", points=outcome.points_delta)
        settled.append((result, m, outcome))
        results.append(result)
    return chunk


def _apply_points(
    session: Session, programme: Programme, op: BulkOperation, pending: Pending, now: datetime
) -> _Chunk:
    return _through_engine(
        session,
        programme,
        pending,
        now,
        lambda state, row: ops.points(
            programme,
            state,
            points=int(row.payload["points"]),
            reason=str(row.payload.get("reason") or op.reason or "Bulk operation"),
            actor=op.actor,
            at=now,
            operation_id=op.id,
            line=row.line,
        ),
    )


def _apply_tier(
    session: Session, programme: Programme, op: BulkOperation, pending: Pending, now: datetime
) -> _Chunk:
    return _through_engine(
        session,
        programme,
        pending,
        now,
        lambda state, row: ops.move_tier(
            programme,
            state,
            tier_id=str(row.payload["tier"]),
            reason=str(row.payload.get("reason") or op.reason or "Bulk tier move"),
            at=now,
        ),
    )


def _apply_profile(
    session: Session, programme: Programme, op: BulkOperation, pending: Pending, now: datetime
) -> _Chunk:
    """Tags or attributes: the chunk's members read with one query, changed in memory, and
    written with one executemany."""
    wanted = sorted({row.external_id for row in pending})
    found: dict[str, list[Any]] = {}
    for start in range(0, len(wanted), 1000):
        for member_id, ext, tags, attrs in session.execute(
            select(_members.c.id, _members.c.external_id, _members.c.tags, _members.c.attributes)
            .where(_members.c.external_id.in_(wanted[start : start + 1000]))
            .order_by(_members.c.id)
            .with_for_update()
        ):
            found[ext] = [member_id, list(tags or []), dict(attrs or {})]
    results: list[_Result] = []
    changed: set[str] = set()
    for row in pending:
        member = found.get(row.external_id)
        if member is None:
            results.append(_not_found(row.id, row.external_id))
            continue
        try:
            if op.kind == "tags":
                tags = set(member[1])
                tags |= set(row.payload.get("add") or [])
                tags -= set(row.payload.get("remove") or [])
                if len(tags) > 100:
                    raise LealtaError("A member has at most 100 tags.", code="too_many_tags")
                member[1] = sorted(tags)
            else:
                values = dict(row.payload.get("attributes") or {})
                member_attributes.check(programme, values)
                merged = {**member[2], **values}
                member[2] = {k: v for k, v in merged.items() if v is not None}
        except LealtaError as exc:
            results.append(_rejected(row.id, exc))
            continue
        changed.add(row.external_id)
        results.append(_Result(row.id, "applied"))
    column = "tags" if op.kind == "tags" else "attributes"
    changes = [
        {"_id": found[ext][0], column: found[ext][1 if op.kind == "tags" else 2], "updated_at": now}
        for ext in sorted(changed)
    ]
    return _Chunk(results, updates=[store.Rows(_members, changes, key="id")] if changes else [])


_APPLY: dict[str, Apply] = {
    "points": _apply_points,
    "tier": _apply_tier,
    "tags": _apply_profile,
    "attributes": _apply_profile,
}
