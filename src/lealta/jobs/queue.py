"""The job queue: enqueue in the caller's transaction, claim, complete, fail, retry, discard.

Jobs are rows of ``jobs`` (:class:`~lealta.models.Job`). Every function takes the caller's
session and never commits: enqueueing inside the transaction of a change means a rolled-back
change leaves no job behind, and a committed one always has its job.

**Claiming** takes due jobs (``queued`` or ``retrying`` with ``run_at <= now``) in priority
order (higher first), then oldest ``run_at``, then id, and marks them ``running`` for a
worker until ``lease_until``. On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP
LOCKED``, so concurrent workers on any number of machines take disjoint jobs without waiting
on each other; on SQLite the claim runs under the database's single write lock (``BEGIN
IMMEDIATE``). Each claim counts an attempt.

**Leases**: a worker renews the lease of the jobs it runs (:func:`renew`). A job whose lease
ran out belongs to a worker that died or stalled; :func:`recover_expired` records that attempt
as failed and makes the job claimable again (or ``dead`` when it was the last attempt).
:func:`complete` and :func:`fail` only act while the caller still holds the job (same worker,
same attempt, still ``running``): a worker that lost its job cannot overwrite the outcome of
the worker that took it over.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import (
    CursorResult,
    Table,
    case,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from lealta.jobs import tasks
from lealta.jobs.tasks import Backoff
from lealta.kit.db import dialect_insert
from lealta.kit.errors import Conflict, InvalidInput, NotFound
from lealta.models import JOB_STATUSES, Job

_jobs = cast(Table, Job.__table__)
# Written out (not bound parameters) so that both planners can use the partial indexes.
_IS_CLAIMABLE = text("jobs.status IN ('queued', 'retrying')")
_IS_RUNNING = text("jobs.status = 'running'")

MAX_ERROR_CHARS = 8000
MAX_DEDUPE_KEY = 200
MAX_QUEUE_NAME = 50
ACTIVE = ("queued", "running", "retrying", "dead")
"""Statuses counted in full by :func:`stats` (finished ones are counted over a day)."""


class JobNotFound(NotFound):
    code = "job_not_found"


class JobStateConflict(Conflict):
    """The job's status does not allow the operation (``job_running``, ``job_finished``)."""

    code = "job_state_conflict"


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job to enqueue with :func:`enqueue_many`; ``None`` fields take the task defaults."""

    task: str
    args: dict[str, Any] = field(default_factory=dict)
    run_at: datetime | None = None
    dedupe_key: str | None = None
    max_attempts: int | None = None
    queue: str | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job a worker now holds: ``attempt`` (1-based) identifies this hold."""

    id: int
    task: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    queue: str
    lease_until: datetime


# --- enqueueing ----------------------------------------------------------------------------


def _values(job: NewJob, now: datetime) -> dict[str, Any]:
    registered = tasks.get(job.task)
    if not job.task or len(job.task) > tasks.MAX_NAME:
        raise InvalidInput(
            f"A task name has 1 to {tasks.MAX_NAME} characters.", code="invalid_task"
        )
    if not isinstance(job.args, dict):
        raise InvalidInput("Job arguments are a JSON object.", code="invalid_job_args")
    try:
        orjson.dumps(job.args)
    except TypeError as exc:
        raise InvalidInput(f"Job arguments must be JSON: {exc}", code="invalid_job_args") from None
    if job.dedupe_key is not None and not 0 < len(job.dedupe_key) <= MAX_DEDUPE_KEY:
        raise InvalidInput(
            f"A dedupe key has 1 to {MAX_DEDUPE_KEY} characters.", code="invalid_dedupe_key"
        )
    queue = job.queue or (registered.queue if registered else tasks.DEFAULT_QUEUE)
    if len(queue) > MAX_QUEUE_NAME:
        raise InvalidInput(
            f"A queue name has at most {MAX_QUEUE_NAME} characters.", code="invalid_queue"
        )
    max_attempts = job.max_attempts
    if max_attempts is None:
        max_attempts = registered.max_attempts if registered else tasks.DEFAULT_MAX_ATTEMPTS
    if max_attempts < 1:
        raise InvalidInput("max_attempts is at least 1.", code="invalid_max_attempts")
    return {
        "task": job.task,
        "args": job.args,
        "queue": queue,
        "priority": job.priority,
        "status": "queued",
        "run_at": job.run_at or now,
        "attempts": 0,
        "max_attempts": max_attempts,
        "dedupe_key": job.dedupe_key,
        "created_at": now,
    }


def enqueue(
    session: Session,
    task: str,
    args: dict[str, Any] | None = None,
    *,
    now: datetime,
    run_at: datetime | None = None,
    dedupe_key: str | None = None,
    max_attempts: int | None = None,
    queue: str | None = None,
    priority: int = 0,
) -> int:
    """Add a job in the caller's transaction and return its id.

    ``run_at`` delays it (default: ``now``). With a ``dedupe_key`` already used, nothing is
    added and the existing job's id is returned (whatever its status). ``max_attempts`` and
    ``queue`` default to the task's registration (8 attempts, ``default``); a higher
    ``priority`` runs first.
    """
    values = _values(
        NewJob(task, args or {}, run_at, dedupe_key, max_attempts, queue, priority), now
    )
    if dedupe_key is None:
        return int(session.execute(insert(_jobs).values(values).returning(_jobs.c.id)).scalar_one())
    for _ in range(3):
        stmt = (
            dialect_insert(session, _jobs)
            .values(values)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(_jobs.c.id)
        )
        new_id = session.execute(stmt).scalar_one_or_none()
        if new_id is None:
            new_id = session.scalar(select(_jobs.c.id).where(_jobs.c.dedupe_key == dedupe_key))
        if new_id is not None:
            return int(new_id)
    raise Conflict(  # pragma: no cover - the existing job vanished three times in a row
        "A job with this dedupe key keeps vanishing; retry.", code="dedupe_retry"
    )


def enqueue_many(session: Session, jobs: Iterable[NewJob], *, now: datetime) -> int:
    """Add several jobs with one statement; jobs whose ``dedupe_key`` exists are skipped.
    Returns how many rows were sent (skipped duplicates included)."""
    rows = [_values(job, now) for job in jobs]
    if rows:
        session.execute(
            dialect_insert(session, _jobs).on_conflict_do_nothing(index_elements=["dedupe_key"]),
            rows,
        )
    return len(rows)


# --- workers: claim, renew, complete, fail -------------------------------------------------


def has_due(session: Session, *, now: datetime, queues: Sequence[str] | None = None) -> bool:
    """Whether any job could be claimed now (a read, to spare idle workers a write)."""
    stmt = select(_jobs.c.id).where(_IS_CLAIMABLE, _jobs.c.run_at <= now)
    if queues:
        stmt = stmt.where(_jobs.c.queue.in_(queues))
    return session.execute(stmt.limit(1)).first() is not None


def claim(
    session: Session,
    worker: str,
    *,
    now: datetime,
    limit: int,
    lease: timedelta,
    queues: Sequence[str] | None = None,
) -> list[Claimed]:
    """Take up to ``limit`` due jobs for ``worker`` until ``now + lease``; one statement."""
    if limit <= 0:
        return []
    candidates = (
        select(_jobs.c.id)
        .where(_IS_CLAIMABLE, _jobs.c.run_at <= now)
        .order_by(_jobs.c.priority.desc(), _jobs.c.run_at, _jobs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if queues:
        candidates = candidates.where(_jobs.c.queue.in_(queues))
    chosen = candidates.cte("candidates")
    until = now + lease
    stmt = (
        update(_jobs)
        .where(_jobs.c.id.in_(select(chosen.c.id)))
        .values(
            status="running",
            worker=worker,
            attempts=_jobs.c.attempts + 1,
            lease_until=until,
            started_at=now,
        )
        .returning(
            _jobs.c.id,
            _jobs.c.task,
            _jobs.c.args,
            _jobs.c.attempts,
            _jobs.c.max_attempts,
            _jobs.c.queue,
            _jobs.c.priority,
            _jobs.c.run_at,
        )
    )
    rows = list(session.execute(stmt).all())
    # RETURNING comes in no particular order: hand jobs out in the order they were chosen.
    rows.sort(key=lambda r: (-r.priority, r.run_at, r.id))
    return [
        Claimed(r.id, r.task, dict(r.args or {}), r.attempts, r.max_attempts, r.queue, until)
        for r in rows
    ]


def _count(result: object) -> int:
    """Rows an UPDATE or DELETE touched."""
    return int(cast(CursorResult[Any], result).rowcount)


def _held(job_id: int, worker: str, attempt: int) -> Any:
    return (
        (_jobs.c.id == job_id)
        & (_jobs.c.status == "running")
        & (_jobs.c.worker == worker)
        & (_jobs.c.attempts == attempt)
    )


def complete(session: Session, job_id: int, *, worker: str, attempt: int, now: datetime) -> bool:
    """Mark a held job ``succeeded``; ``False`` if the worker no longer holds it."""
    done = session.execute(
        update(_jobs)
        .where(_held(job_id, worker, attempt))
        .values(status="succeeded", finished_at=now, lease_until=None)
    )
    return _count(done) > 0


def complete_many(
    session: Session, held: Sequence[tuple[int, int]], *, worker: str, now: datetime
) -> set[int]:
    """Mark several held ``(job id, attempt)`` pairs ``succeeded`` with one statement; returns
    the ids completed (the others were lost meanwhile)."""
    if not held:
        return set()
    rows = session.execute(
        update(_jobs)
        .where(
            tuple_(_jobs.c.id, _jobs.c.attempts).in_(list(held)),
            _jobs.c.status == "running",
            _jobs.c.worker == worker,
        )
        .values(status="succeeded", finished_at=now, lease_until=None)
        .returning(_jobs.c.id)
    ).all()
    return {r.id for r in rows}


def _error_text(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def fail(
    session: Session,
    job_id: int,
    *,
    worker: str,
    attempt: int,
    now: datetime,
    error: str,
    backoff: Backoff,
    give_up: bool = False,
    rand: Callable[[], float] = random.random,
) -> str | None:
    """Record a failed attempt of a held job: ``retrying`` after a backoff delay, or ``dead``
    when it was the last attempt (or ``give_up``). Returns the new status, ``None`` if the
    worker no longer holds the job."""
    row = session.execute(
        select(_jobs.c.max_attempts).where(_held(job_id, worker, attempt)).with_for_update()
    ).first()
    if row is None:
        return None
    dead = give_up or attempt >= row.max_attempts
    values: dict[str, Any] = {"last_error": _error_text(error), "lease_until": None}
    if dead:
        values.update(status="dead", finished_at=now)
    else:
        values.update(status="retrying", run_at=now + backoff.delay(attempt, rand))
    session.execute(update(_jobs).where(_held(job_id, worker, attempt)).values(**values))
    return "dead" if dead else "retrying"


def renew(
    session: Session, held: Sequence[int], *, worker: str, now: datetime, lease: timedelta
) -> set[int]:
    """Extend the leases of jobs ``worker`` still runs; returns the ids it still holds."""
    if not held:
        return set()
    rows = session.execute(
        update(_jobs)
        .where(_jobs.c.id.in_(held), _jobs.c.status == "running", _jobs.c.worker == worker)
        .values(lease_until=now + lease)
        .returning(_jobs.c.id)
    ).all()
    return {r.id for r in rows}


def release(session: Session, job_ids: Sequence[int], *, worker: str) -> int:
    """Give back claimed jobs that never started (a stopping worker): queued again, the
    attempt not counted."""
    if not job_ids:
        return 0
    done = session.execute(
        update(_jobs)
        .where(_jobs.c.id.in_(job_ids), _jobs.c.status == "running", _jobs.c.worker == worker)
        .values(
            status="queued",
            attempts=_jobs.c.attempts - 1,
            worker=None,
            lease_until=None,
            started_at=None,
        )
    )
    return _count(done)


def has_expired(session: Session, *, now: datetime) -> bool:
    """Whether a running job's lease ran out (a read, before :func:`recover_expired`)."""
    stmt = select(_jobs.c.id).where(_IS_RUNNING, _jobs.c.lease_until < now)
    return session.execute(stmt.limit(1)).first() is not None


def recover_expired(
    session: Session, *, now: datetime, exclude_worker: str | None = None, limit: int = 100
) -> int:
    """Take back jobs whose lease ran out: that attempt failed (its worker died or stalled);
    the job is claimable at once, or ``dead`` if it was the last attempt. A worker passes its
    own name as ``exclude_worker``: it watches its own jobs' time limits itself."""
    expired = select(_jobs.c.id).where(_IS_RUNNING, _jobs.c.lease_until < now)
    if exclude_worker is not None:
        expired = expired.where(_jobs.c.worker != exclude_worker)
    chosen = expired.order_by(_jobs.c.id).limit(limit).with_for_update(skip_locked=True)
    last = _jobs.c.attempts >= _jobs.c.max_attempts
    message = (
        literal("lease expired: worker ")
        + func.coalesce(_jobs.c.worker, "?")
        + literal(" stopped or stalled")
    )
    done = session.execute(
        update(_jobs)
        .where(_jobs.c.id.in_(select(chosen.cte("expired").c.id)))
        .values(
            status=case((last, "dead"), else_="retrying"),
            finished_at=case((last, now), else_=None),
            run_at=now,
            worker=None,
            lease_until=None,
            last_error=message,
        )
        # Counted from RETURNING: SQLite reports no rowcount for a statement with a CTE.
        .returning(_jobs.c.id)
    )
    return len(done.all())


# --- people: look, retry, discard, prune ---------------------------------------------------


def get(session: Session, job_id: int) -> Job:
    """The job or ``404 job_not_found``."""
    job = session.get(Job, job_id) if 0 < job_id < 2**63 else None
    if job is None:
        raise JobNotFound(f"No job with id {job_id}.")
    return job


def retry(session: Session, job_id: int, *, now: datetime) -> Job:
    """Run a ``dead``, ``retrying``, ``discarded`` or ``queued`` job now, with a fresh set of
    attempts (a replay). A running job is ``409 job_running``; a succeeded one
    ``409 job_finished`` (enqueue a new job to do the work again)."""
    job = _locked(session, job_id)
    if job.status == "running":
        raise JobStateConflict(
            "The job is running; wait for it to finish or fail.", code="job_running"
        )
    if job.status == "succeeded":
        raise JobStateConflict(
            "The job already succeeded; enqueue a new job to run it again.", code="job_finished"
        )
    job.status = "queued"
    job.run_at = now
    job.attempts = 0
    job.worker = None
    job.lease_until = None
    job.finished_at = None
    session.flush()
    return job


def discard(session: Session, job_id: int, *, now: datetime) -> Job:
    """Drop a job that is waiting or dead: it will not run (again). Discarding a discarded
    job changes nothing; a running one is ``409 job_running``, a succeeded one
    ``409 job_finished``."""
    job = _locked(session, job_id)
    if job.status == "discarded":
        return job
    if job.status == "running":
        raise JobStateConflict(
            "The job is running; wait for it to finish or fail.", code="job_running"
        )
    if job.status == "succeeded":
        raise JobStateConflict("The job already succeeded.", code="job_finished")
    job.status = "discarded"
    job.finished_at = now
    job.lease_until = None
    session.flush()
    return job


def _locked(session: Session, job_id: int) -> Job:
    if not 0 < job_id < 2**63:
        raise JobNotFound(f"No job with id {job_id}.")
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None:
        raise JobNotFound(f"No job with id {job_id}.")
    return job


def list_jobs(
    session: Session,
    *,
    status: str | None = None,
    task: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> tuple[list[Job], int | None]:
    """A page of jobs, newest first, and the id to pass as ``before_id`` for the next page."""
    if status is not None and status not in JOB_STATUSES:
        raise InvalidInput(f"Unknown job status '{status}'.", code="invalid_status")
    stmt = select(Job)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if task is not None:
        stmt = stmt.where(Job.task == task)
    if before_id is not None:
        stmt = stmt.where(Job.id < before_id)
    rows = list(session.scalars(stmt.order_by(Job.id.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, rows[-1].id


@dataclass(frozen=True, slots=True)
class TaskDepth:
    task: str
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Queue depth and health at ``now``.

    ``counts`` has every status: waiting, running, retrying and dead jobs in full, succeeded
    and discarded ones finished over the last 24 hours. ``due`` jobs could run now;
    ``oldest_due_seconds`` is how long the oldest of them has waited (the queue's lag).
    """

    counts: dict[str, int]
    by_task: list[TaskDepth]
    due: int
    scheduled: int
    oldest_due_seconds: float | None
    at: datetime


def stats(session: Session, *, now: datetime) -> QueueStats:
    """Depth per status and task, the due backlog and its age."""
    by_task = [
        TaskDepth(r.task, r.status, int(r.n))
        for r in session.execute(
            select(_jobs.c.task, _jobs.c.status, func.count().label("n"))
            .where(_jobs.c.status.in_(ACTIVE))
            .group_by(_jobs.c.task, _jobs.c.status)
            .order_by(_jobs.c.task, _jobs.c.status)
        )
    ]
    counts = dict.fromkeys(JOB_STATUSES, 0)
    for depth in by_task:
        counts[depth.status] += depth.count
    day_ago = now - timedelta(days=1)
    for r in session.execute(
        select(_jobs.c.status, func.count().label("n"))
        .where(_jobs.c.status.in_(("succeeded", "discarded")), _jobs.c.finished_at >= day_ago)
        .group_by(_jobs.c.status)
    ):
        counts[r.status] = int(r.n)
    due_row = session.execute(
        select(func.count().label("n"), func.min(_jobs.c.run_at).label("oldest")).where(
            _IS_CLAIMABLE, _jobs.c.run_at <= now
        )
    ).one()
    waiting = counts["queued"] + counts["retrying"]
    oldest = due_row.oldest
    return QueueStats(
        counts=counts,
        by_task=by_task,
        due=int(due_row.n),
        scheduled=waiting - int(due_row.n),
        oldest_due_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else None,
        at=now,
    )


def prune(session: Session, *, now: datetime, older_than: timedelta, limit: int = 5000) -> int:
    """Delete up to ``limit`` succeeded or discarded jobs finished before ``now - older_than``.

    Dead jobs stay until someone retries or discards them. The newest job of each periodic
    schedule is kept, so a worker starting later does not run that tick again.
    """
    newest_ticks = (
        select(func.max(_jobs.c.id))
        .where(_jobs.c.dedupe_key.like("periodic:%"))
        .group_by(_jobs.c.task)
    )
    doomed = (
        select(_jobs.c.id)
        .where(
            _jobs.c.status.in_(("succeeded", "discarded")),
            _jobs.c.finished_at < now - older_than,
            _jobs.c.id.not_in(newest_ticks),
        )
        .order_by(_jobs.c.id)
        .limit(limit)
    )
    done = session.execute(_jobs.delete().where(_jobs.c.id.in_(doomed)))
    return _count(done)
