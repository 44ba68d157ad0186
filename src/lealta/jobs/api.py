"""``/v1/jobs``: the queue seen from outside — list, depth, retry, discard.

Jobs carry arguments and errors that may name people, so every operation here needs a
``server`` key (``read`` keys get ``403 insufficient_scope``). Retry and discard are audited
and idempotent by state: retrying a queued job or discarding a discarded one changes nothing
(no ``Idempotency-Key`` needed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from lealta.apikeys.deps import get_principal
from lealta.apikeys.service import Principal
from lealta.audit import service as audit
from lealta.jobs import queue
from lealta.kit.errors import Forbidden
from lealta.kit.http import ERROR_RESPONSES, ClockDep, DbDep
from lealta.kit.pagination import decode_cursor, encode_cursor
from lealta.models import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

JobStatus = Literal["queued", "running", "retrying", "succeeded", "dead", "discarded"]
MAX_ID = 2**63 - 1


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.scope != "server":
        raise Forbidden(
            "The job queue is administration: it needs a 'server' key.",
            code="insufficient_scope",
        )
    return principal


Admin = Annotated[Principal, Depends(get_admin)]
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="The job's id.")]


class JobOut(BaseModel):
    """One job. ``attempts`` counts the attempts made; ``last_error`` is the newest failure
    (kept after a later success); ``worker`` and ``lease_until`` name who holds a running job."""

    id: int
    task: str
    args: dict[str, Any]
    queue: str
    priority: int
    status: JobStatus
    run_at: datetime
    attempts: int
    max_attempts: int
    lease_until: datetime | None
    worker: str | None
    last_error: str | None
    dedupe_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass back as `cursor` for older jobs.")


class TaskDepthOut(BaseModel):
    task: str
    status: JobStatus
    count: int


class StatsOut(BaseModel):
    """Queue depth: ``counts`` per status (succeeded and discarded over the last 24 hours),
    ``by_task`` for jobs waiting, running, retrying or dead; ``due`` jobs could run now and
    the oldest of them has waited ``oldest_due_seconds`` (the queue's lag)."""

    counts: dict[str, int]
    by_task: list[TaskDepthOut]
    due: int
    scheduled: int
    oldest_due_seconds: float | None
    at: datetime


def job_out(job: Job) -> JobOut:
    return JobOut.model_validate(job, from_attributes=True)


@router.get("", response_model=JobPage, summary="List jobs")
def list_jobs(
    principal: Admin,
    db: DbDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    task: Annotated[str | None, Query(max_length=100, description="Only this task.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """Jobs newest first; pass `next_cursor` back as `cursor` for the next page."""
    before = decode_cursor(cursor)[1] if cursor else None
    with db.unit_of_work(write=False) as session:
        rows, last = queue.list_jobs(
            session, status=status, task=task, limit=limit, before_id=before
        )
        items = [job_out(r) for r in rows]
    next_cursor = encode_cursor(rows[-1].created_at, last) if last is not None else None
    return JobPage(items=items, next_cursor=next_cursor)


@router.get("/stats", response_model=StatsOut, summary="Queue depth and lag")
def job_stats(principal: Admin, db: DbDep, clock: ClockDep) -> StatsOut:
    """Jobs per status and task, how many are due now and how long the oldest has waited."""
    with db.unit_of_work(write=False) as session:
        found = queue.stats(session, now=clock.now())
    return StatsOut(
        counts=found.counts,
        by_task=[TaskDepthOut.model_validate(d, from_attributes=True) for d in found.by_task],
        due=found.due,
        scheduled=found.scheduled,
        oldest_due_seconds=found.oldest_due_seconds,
        at=found.at,
    )


@router.get("/{job_id}", response_model=JobOut, summary="One job")
def get_job(job_id: JobId, principal: Admin, db: DbDep) -> JobOut:
    with db.unit_of_work(write=False) as session:
        return job_out(queue.get(session, job_id))


@router.post("/{job_id}/retry", response_model=JobOut, summary="Retry (replay) a job now")
def retry_job(job_id: JobId, principal: Admin, db: DbDep, clock: ClockDep) -> JobOut:
    """Queue a dead, retrying, discarded or queued job to run now with a fresh set of
    attempts. `409 job_running` while it runs; `409 job_finished` once it succeeded."""
    with db.unit_of_work() as session:
        now = clock.now()
        job = queue.retry(session, job_id, now=now)
        audit.record(
            session,
            actor=principal.actor,
            action="job.retry",
            target_type="job",
            target_id=str(job.id),
            now=now,
            details={"task": job.task},
        )
        return job_out(job)


@router.post("/{job_id}/discard", response_model=JobOut, summary="Discard a job")
def discard_job(job_id: JobId, principal: Admin, db: DbDep, clock: ClockDep) -> JobOut:
    """Drop a waiting, retrying or dead job so it never runs (again). `409 job_running`
    while it runs; `409 job_finished` once it succeeded."""
    with db.unit_of_work() as session:
        now = clock.now()
        job = queue.discard(session, job_id, now=now)
        audit.record(
            session,
            actor=principal.actor,
            action="job.discard",
            target_type="job",
            target_id=str(job.id),
            now=now,
            details={"task": job.task},
        )
        return job_out(job)
