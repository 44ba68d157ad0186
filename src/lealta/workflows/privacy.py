"""Workflows in the GDPR documents: a member's runs in their data export; on erasure their
active runs end (nothing more is sent or given) and the payloads kept on runs and steps are
emptied. Run counts and conversions of the past stay, without the member's data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lealta.models import WorkflowRun, WorkflowStep
from lealta.models.workflow import ACTIVE_STATUSES
from lealta.privacy import registry


@registry.eraser("workflows.runs")
def erase_runs(session: Session, member_id: int, now: datetime) -> None:
    session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.member_id == member_id, WorkflowRun.status.in_(ACTIVE_STATUSES))
        .values(
            status="exited",
            exit_reason="erased",
            next_at=None,
            wait_event=None,
            finished_at=now,
            updated_at=now,
        )
    )
    runs = select(WorkflowRun.id).where(WorkflowRun.member_id == member_id)
    session.execute(update(WorkflowStep).where(WorkflowStep.run_id.in_(runs)).values(detail={}))
    session.execute(
        update(WorkflowRun).where(WorkflowRun.member_id == member_id).values(payload={}, vars={})
    )


@registry.exporter("workflows")
def export_runs(session: Session, member_id: int) -> list[dict[str, Any]]:
    found = session.scalars(
        select(WorkflowRun).where(WorkflowRun.member_id == member_id).order_by(WorkflowRun.id)
    ).all()
    out = []
    for run in found:
        steps = session.scalars(
            select(WorkflowStep).where(WorkflowStep.run_id == run.id).order_by(WorkflowStep.seq)
        )
        out.append(
            {
                "workflow": run.workflow_id,
                "status": run.status,
                "started_at": run.started_at.isoformat(),
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "steps": [
                    {
                        "step": s.path,
                        "type": s.step_type,
                        "outcome": s.outcome,
                        "at": s.at.isoformat(),
                    }
                    for s in steps
                ],
            }
        )
    return out
