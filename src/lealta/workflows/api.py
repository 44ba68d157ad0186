"""``/v1/workflows``: the workflows in force with their figures, their runs and a member's,
one run with its steps, pause and resume, and the dry run."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from lealta.apikeys.deps import Reader, Writer
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    RequiredIdempotencyKey,
    SettingsDep,
    idempotent_write,
    replayable,
)
from lealta.kit.ids import ExternalId
from lealta.members import service as members
from lealta.programme.schema import Slug
from lealta.workflows import service
from lealta.workflows.schemas import (
    DryRunIn,
    DryRunOut,
    EnabledOut,
    RunDetail,
    RunList,
    RunOut,
    StepOut,
    SwitchOut,
    WorkflowList,
    WorkflowOut,
)

router = APIRouter(prefix="/v1", tags=["workflows"], responses=ERROR_RESPONSES)
RunStatus = Literal["running", "waiting", "completed", "exited", "failed"]
Limit = Annotated[int, Query(ge=1, le=service.MAX_RUNS)]


@router.get("/workflows", response_model=WorkflowList, summary="List workflows")
def list_workflows(principal: Reader, db: DbDep, clock: ClockDep) -> WorkflowList:
    """The workflows of the programme in force: on/off (document) and paused (switch), runs
    over the last 30 days, runs per day, conversions (runs ended by their goal)."""
    with db.unit_of_work(write=False) as session:
        version, listed = service.listing(session, now=clock.now())
        return WorkflowList(programme_version=version, items=[WorkflowOut.of(w) for w in listed])


@router.get("/workflows/runs/{run_id}", response_model=RunDetail, summary="One run")
def get_run(
    run_id: Annotated[int, Path(ge=1, le=2**63 - 1)], principal: Reader, db: DbDep
) -> RunDetail:
    """A run with its step log (each step's time and outcome)."""
    with db.unit_of_work(write=False) as session:
        run, customer, steps = service.get_run(session, run_id)
        out = RunOut.of(run, customer)
        return RunDetail(**out.model_dump(), steps=[StepOut.of(s) for s in steps])


@router.get("/workflows/{workflow_id}", response_model=WorkflowOut, summary="One workflow")
def get_workflow(workflow_id: Slug, principal: Reader, db: DbDep, clock: ClockDep) -> WorkflowOut:
    """The workflow's definition as in force, its switch and figures (404 when unknown)."""
    with db.unit_of_work(write=False) as session:
        now = clock.now()
        service.find(session, workflow_id, now=now)
        _, listed = service.listing(session, now=now)
        return WorkflowOut.of(next(w for w in listed if w.workflow.id == workflow_id))


@router.get("/workflows/{workflow_id}/runs", response_model=RunList, summary="Runs of a workflow")
def workflow_runs(
    workflow_id: Slug,
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    status: RunStatus | None = None,
    limit: Limit = 50,
) -> RunList:
    """Newest first."""
    with db.unit_of_work(write=False) as session:
        service.find(session, workflow_id, now=clock.now())
        found = service.list_runs(session, workflow_id=workflow_id, status=status, limit=limit)
        return RunList(items=[RunOut.of(r, c) for r, c in found])


@router.get(
    "/members/{external_id}/workflow-runs", response_model=RunList, summary="A member's runs"
)
def member_runs(
    external_id: ExternalId, principal: Reader, db: DbDep, limit: Limit = 50
) -> RunList:
    """The member's runs of every workflow, newest first."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        found = service.list_runs(session, member_id=member.id, limit=limit)
        return RunList(items=[RunOut.of(r, c) for r, c in found])


def _act(
    action: Literal["pause", "resume", "enable", "disable"],
    workflow_id: str,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    key: str,
) -> JSONResponse:
    """Pause/resume (the switch) or enable/disable (the programme's flag), once per key."""

    def effect(session: Session, now: object) -> tuple[int, dict[str, object]]:
        at, actor = clock.now(), principal.actor
        if action in ("pause", "resume"):
            paused = action == "pause"
            service.set_paused(session, workflow_id, paused=paused, actor=actor, now=at)
            return 200, SwitchOut(workflow_id=workflow_id, paused=paused).model_dump(mode="json")
        enabled = action == "enable"
        version = service.set_enabled(session, workflow_id, enabled=enabled, actor=actor, now=at)
        out = EnabledOut(workflow_id=workflow_id, enabled=enabled, programme_version=version)
        return 200, out.model_dump(mode="json")

    return idempotent_write(
        db,
        clock,
        scope=f"workflow-{action}:{workflow_id}",
        key=key,
        payload={"workflow_id": workflow_id},
        effect=effect,
    )


@router.post(
    "/workflows/{workflow_id}/pause",
    response_model=SwitchOut,
    summary="Pause a workflow",
    responses=replayable(SwitchOut),
)
def pause(
    workflow_id: Slug,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """No new runs start while paused; runs in flight go on. Requires an `Idempotency-Key`."""
    return _act("pause", workflow_id, principal, db, clock, idempotency_key)


@router.post(
    "/workflows/{workflow_id}/resume",
    response_model=SwitchOut,
    summary="Resume a workflow",
    responses=replayable(SwitchOut),
)
def resume(
    workflow_id: Slug,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Runs start again on new triggers. Requires an `Idempotency-Key`."""
    return _act("resume", workflow_id, principal, db, clock, idempotency_key)


@router.post(
    "/workflows/{workflow_id}/enable",
    response_model=EnabledOut,
    summary="Switch a workflow on in the programme",
    responses=replayable(EnabledOut),
)
def enable(
    workflow_id: Slug,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Sets `enabled: true` for this workflow in the programme document: the next programme
    version, in force now (audited; the programme history shows the change). `409
    programme_change_scheduled` while a version waits for a later activation. Requires an
    `Idempotency-Key`."""
    return _act("enable", workflow_id, principal, db, clock, idempotency_key)


@router.post(
    "/workflows/{workflow_id}/disable",
    response_model=EnabledOut,
    summary="Switch a workflow off in the programme",
    responses=replayable(EnabledOut),
)
def disable(
    workflow_id: Slug,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Sets `enabled: false` (a new programme version, in force now): no new runs start; runs
    in flight finish on the version they started on. Requires an `Idempotency-Key`."""
    return _act("disable", workflow_id, principal, db, clock, idempotency_key)


@router.post(
    "/workflows/{workflow_id}/dry-run", response_model=DryRunOut, summary="Dry run for a member"
)
def dry_run(
    workflow_id: Slug,
    data: DryRunIn,
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> DryRunOut:
    """What the workflow would do to this member now — trigger, condition, each step, the
    messages rendered in the member's language — without any effect (nothing is written)."""
    with db.unit_of_work(write=False) as session:
        dry = service.dry_run(
            session,
            settings,
            workflow_id,
            data.customer_id,
            payload=data.payload,
            waited=data.waited,
            now=clock.now(),
        )
        return DryRunOut.of(dry)
