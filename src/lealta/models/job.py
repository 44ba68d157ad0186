from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

JOB_STATUSES = ("queued", "running", "retrying", "succeeded", "dead", "discarded")
"""``queued``: waiting for ``run_at``; ``running``: held by a worker until ``lease_until``;
``retrying``: an attempt failed, the next one waits for ``run_at``; ``succeeded``; ``dead``:
out of attempts (or given up), kept with its error until someone retries or discards it;
``discarded``: dropped by a person."""

CLAIMABLE = ("queued", "retrying")
_CLAIMABLE_SQL = "status IN ('queued', 'retrying')"


class Job(Base):
    """One unit of background work: a registered task's name and its JSON arguments.

    Jobs are rows enqueued in the caller's transaction (they commit or vanish with the change
    that asked for them) and claimed by workers with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
    (under the single write lock on SQLite). A claim sets ``worker`` and ``lease_until``;
    a job whose lease ran out is taken back (its worker died). ``dedupe_key`` is unique:
    enqueueing the same key again is a no-op. See :mod:`lealta.jobs.queue`.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'retrying', 'succeeded', 'dead', 'discarded')",
            name="ck_jobs_status",
        ),
        CheckConstraint("attempts >= 0", name="ck_jobs_attempts_nonneg"),
        CheckConstraint("max_attempts >= 1", name="ck_jobs_max_attempts_positive"),
        # Claiming: due jobs in claim order (highest priority, then oldest), so a claim reads
        # only the rows it takes; a worker of some queues skips the others' rows.
        Index(
            "ix_jobs_claim",
            text("priority DESC"),
            "run_at",
            "id",
            postgresql_where=text(_CLAIMABLE_SQL),
            sqlite_where=text(_CLAIMABLE_SQL),
        ),
        # Taking back jobs whose worker stopped renewing its lease.
        Index(
            "ix_jobs_lease",
            "lease_until",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        # Listing and counting by status and task; pruning finished jobs.
        Index("ix_jobs_status_task", "status", "task", "id"),
        Index("ix_jobs_status_finished", "status", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]] = mapped_column(JSONType)
    queue: Mapped[str] = mapped_column(String(50), default="default", server_default="default")
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    run_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    max_attempts: Mapped[int]
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
