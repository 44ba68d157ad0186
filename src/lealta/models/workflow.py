"""Workflow runs, their step log, and the console's pause switch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

RUN_STATUSES = ("running", "waiting", "completed", "exited", "failed")
ACTIVE_STATUSES = ("running", "waiting")
_ACTIVE = "status IN ('running', 'waiting') AND exclusive"


class WorkflowRun(Base):
    """One member's way through one workflow, on the programme version it started on.

    ``pc`` is the position in the version's compiled steps; ``next_at`` is when a waiting (or
    newly started) run is due; ``wait_event`` the event type a wait listens for. At most one
    run per (workflow, member, occurrence); while ``exclusive`` (no re-entry), at most one
    active run per (workflow, member) — both held by unique indexes, so concurrent starts are
    safe."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        UniqueConstraint(
            "workflow_id", "member_id", "occurrence", name="uq_workflow_runs_occurrence"
        ),
        CheckConstraint(
            "status IN ('running', 'waiting', 'completed', 'exited', 'failed')",
            name="ck_workflow_runs_status",
        ),
        Index(
            "uq_workflow_runs_active",
            "workflow_id",
            "member_id",
            unique=True,
            sqlite_where=text(_ACTIVE),
            postgresql_where=text(_ACTIVE),
        ),
        Index("ix_workflow_runs_due", "next_at"),
        Index("ix_workflow_runs_member", "member_id", "status"),
        Index("ix_workflow_runs_workflow_started", "workflow_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    programme_version: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(64))
    occurrence: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    vars: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    exclusive: Mapped[bool] = mapped_column(Boolean, default=True)
    pc: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None]
    wait_event: Mapped[str | None] = mapped_column(String(64))
    converted: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_reason: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class WorkflowStep(Base):
    """What one step of a run did, when (the run's log; append-only)."""

    __tablename__ = "workflow_steps"
    __table_args__ = (
        UniqueConstraint("run_id", "seq", name="uq_workflow_steps_seq"),
        Index("ix_workflow_steps_run", "run_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("workflow_runs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(200))
    step_type: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    at: Mapped[datetime]


class WorkflowSwitch(Base):
    """A workflow paused from the console or the API (no row: not paused)."""

    __tablename__ = "workflow_switches"

    workflow_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime]
