"""API shapes of workflows, runs and dry runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lealta.models import WorkflowRun, WorkflowStep
from lealta.workflows.service import DryRun, Listed


class WorkflowOut(BaseModel):
    id: str
    name: Any
    enabled: bool = Field(description="As the programme document says.")
    paused: bool = Field(description="Paused from the console or the API: no new runs.")
    trigger: dict[str, Any]
    runs_30d: int
    runs_per_day: float
    active: int
    converted: int
    conversion_percent: float | None
    definition: dict[str, Any]

    @classmethod
    def of(cls, listed: Listed) -> WorkflowOut:
        w, f = listed.workflow, listed.figures
        return cls(
            id=w.id,
            name=w.name if isinstance(w.name, str) else w.name.model_dump(exclude_none=True),
            enabled=w.enabled,
            paused=listed.paused,
            trigger=w.trigger.model_dump(mode="json", exclude_none=True),
            runs_30d=f.runs,
            runs_per_day=f.per_day,
            active=f.active,
            converted=f.converted,
            conversion_percent=f.conversion,
            definition=w.model_dump(mode="json", by_alias=True, exclude_none=True),
        )


class WorkflowList(BaseModel):
    programme_version: int
    items: list[WorkflowOut]


class SwitchOut(BaseModel):
    workflow_id: str
    paused: bool


class EnabledOut(BaseModel):
    workflow_id: str
    enabled: bool
    programme_version: int


class StepOut(BaseModel):
    seq: int
    path: str
    type: str
    outcome: str
    detail: dict[str, Any]
    at: datetime

    @classmethod
    def of(cls, step: WorkflowStep) -> StepOut:
        return cls(
            seq=step.seq,
            path=step.path,
            type=step.step_type,
            outcome=step.outcome,
            detail=dict(step.detail or {}),
            at=step.at,
        )


class RunOut(BaseModel):
    id: int
    workflow_id: str
    customer_id: str
    programme_version: int
    trigger: str
    occurrence: str
    status: str
    converted: bool
    exit_reason: str | None
    waiting_for: str | None
    next_at: datetime | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: WorkflowRun, customer_id: str) -> RunOut:
        return cls(
            id=run.id,
            workflow_id=run.workflow_id,
            customer_id=customer_id,
            programme_version=run.programme_version,
            trigger=run.trigger,
            occurrence=run.occurrence,
            status=run.status,
            converted=run.converted,
            exit_reason=run.exit_reason,
            waiting_for=run.wait_event,
            next_at=run.next_at if run.status in ("running", "waiting") else None,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


class RunList(BaseModel):
    items: list[RunOut]


class RunDetail(RunOut):
    steps: list[StepOut]


class DryRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = Field(
        default_factory=dict, description="The trigger event's payload to assume (event triggers)."
    )
    waited: bool = Field(default=False, description="Assume awaited events arrive in time.")


class DryStepOut(BaseModel):
    path: str
    type: str
    outcome: str
    detail: dict[str, Any]


class DryRunOut(BaseModel):
    workflow_id: str
    customer_id: str
    programme_version: int
    triggered: bool | None
    condition: bool
    would_start: bool
    steps: list[DryStepOut]
    notes: list[str]

    @classmethod
    def of(cls, dry: DryRun) -> DryRunOut:
        return cls(
            workflow_id=dry.workflow_id,
            customer_id=dry.member,
            programme_version=dry.version,
            triggered=dry.triggered,
            condition=dry.condition,
            would_start=dry.would_start,
            steps=[
                DryStepOut(path=s.path, type=s.type, outcome=s.outcome, detail=s.detail)
                for s in dry.steps
            ],
            notes=dry.notes,
        )
