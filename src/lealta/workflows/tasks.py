"""Background work of workflows: the ``workflows.advance`` job, the subscriber that starts
runs and wakes event waits, the sweep that wakes due runs, and the time-trigger job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from lealta.jobs.dispatch import OutboxInfo
from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import GiveUp, JobContext, task
from lealta.kit.logging import get_logger
from lealta.models import WorkflowRun
from lealta.models.workflow import ACTIVE_STATUSES
from lealta.outbox import subscribers
from lealta.outbox.events import EVENT_TYPES, DomainEvent, EventProcessed
from lealta.programme import service as programmes
from lealta.workflows import runs

log = get_logger("lealta.workflows")
SUBSCRIBER = "workflows"


@task(runs.ADVANCE, max_attempts=10, timeout=120)
def advance(ctx: JobContext, *, run_id: int) -> None:
    """Execute one run's steps up to its next wait or its end, in this job's transaction."""
    if not isinstance(run_id, int):
        raise GiveUp("run_id must be an integer")
    runs.advance(ctx.require_session(), ctx.settings, run_id, now=ctx.now)


def on_event(ctx: JobContext, event: DomainEvent, info: OutboxInfo) -> None:
    """Goals, event waits and event triggers for one domain event of a member."""
    runs.on_event(
        ctx.require_session(),
        topic=info.topic,
        payload=event.to_payload(),
        member_id=info.member_id,
        outbox_id=info.id,
        now=ctx.now,
    )


def anything_to_do(session: Any) -> bool:
    """Whether a workflow is switched on in the programme in force or a run is active:
    otherwise events cost no job."""
    if any(w.enabled for w in programmes.current(session).workflows):
        return True
    found = session.execute(
        select(WorkflowRun.id).where(WorkflowRun.status.in_(ACTIVE_STATUSES)).limit(1)
    ).first()
    return found is not None


for _event_type in (*EVENT_TYPES, EventProcessed.TYPE):
    subscribers.subscribe(_event_type, name=SUBSCRIBER, wanted=anything_to_do)(on_event)


@periodic("workflows.wake", "* * * * *")
def wake(ctx: JobContext) -> None:
    """Enqueue the next step of runs that are due (new runs, waits that ended)."""
    woken = runs.wake_due(ctx.require_session(), now=ctx.now)
    if woken:
        log.info("workflow_runs_woken", runs=woken)


@periodic("workflows.time_triggers", "*/15 * * * *", timeout=1800.0)
def time_triggers(ctx: JobContext) -> None:
    """Start runs of the time-triggered workflows (birthdays, inactivity, …) set-wise."""
    started = runs.start_time_triggered(ctx.require_session(), now=ctx.now)
    if any(started.values()):
        log.info("workflow_runs_started", **started)
