"""Workflow operations for the API, the console and the CLI: the list with figures, runs,
pause and resume, and the dry run ("what would happen to María")."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.config import Settings
from lealta.kit.errors import Conflict, LealtaError, NotFound
from lealta.members import service as members
from lealta.models import Member, ProgrammeVersion, WorkflowRun, WorkflowStep, WorkflowSwitch
from lealta.notify import service as notify
from lealta.notify.policy import needs_consent
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.workflows import plan, runs
from lealta.workflows.schema import (
    AwardPoints,
    Branch,
    CallWebhook,
    DeductPoints,
    EventTrigger,
    IssueCoupon,
    IssueReward,
    SendMessage,
    SetAttribute,
    Stop,
    Tag,
    Untag,
    Wait,
    Workflow,
)

STATS_DAYS = 30
MAX_RUNS = 200


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"


class RunNotFound(NotFound):
    code = "workflow_run_not_found"


class ProgrammeChangeScheduled(Conflict):
    code = "programme_change_scheduled"


class TriggerNotDryRunnable(Conflict):
    code = "workflow_trigger_not_evaluable"


@dataclass(frozen=True, slots=True)
class Figures:
    """A workflow's runs over the last :data:`STATS_DAYS` days."""

    runs: int = 0
    active: int = 0
    completed: int = 0
    converted: int = 0

    @property
    def per_day(self) -> float:
        return round(self.runs / STATS_DAYS, 2)

    @property
    def conversion(self) -> float | None:
        return round(100 * self.converted / self.runs, 1) if self.runs else None


@dataclass(frozen=True, slots=True)
class Listed:
    workflow: Workflow
    paused: bool
    figures: Figures


def find(session: Session, workflow_id: str, *, now: datetime) -> tuple[int, Workflow]:
    """(version in force, workflow) or ``404 workflow_not_found``."""
    version, programme = runs.in_force(session, now)
    workflow = runs.workflow_of(programme, workflow_id)
    if workflow is None:
        raise WorkflowNotFound(
            f"No workflow '{workflow_id}' in the programme in force.",
            details={"workflow_id": workflow_id},
        )
    return version, workflow


def figures(session: Session, *, now: datetime) -> dict[str, Figures]:
    """Runs, active runs, completed and converted runs per workflow since 30 days ago."""
    since = now - timedelta(days=STATS_DAYS)
    r = WorkflowRun
    rows = session.execute(
        select(
            r.workflow_id,
            func.count(),
            func.sum(case((r.status.in_(("running", "waiting")), 1), else_=0)),
            func.sum(case((r.status == "completed", 1), else_=0)),
            func.sum(case((r.converted.is_(True), 1), else_=0)),
        )
        .where(r.started_at >= since)
        .group_by(r.workflow_id)
    ).all()
    return {
        row[0]: Figures(int(row[1]), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0))
        for row in rows
    }


def listing(session: Session, *, now: datetime) -> tuple[int, list[Listed]]:
    """The workflows in force with their pause switch and figures."""
    version, programme = runs.in_force(session, now)
    stopped = runs.paused(session)
    stats = figures(session, now=now)
    return version, [
        Listed(w, w.id in stopped, stats.get(w.id, Figures())) for w in programme.workflows
    ]


def set_paused(
    session: Session, workflow_id: str, *, paused: bool, actor: str, now: datetime
) -> bool:
    """Pause (no new runs; runs in flight go on) or resume a workflow; persisted, audited."""
    find(session, workflow_id, now=now)
    row = session.get(WorkflowSwitch, workflow_id, with_for_update=True)
    if row is None:
        row = WorkflowSwitch(workflow_id=workflow_id, paused=paused, actor=actor, updated_at=now)
        session.add(row)
    row.paused = paused
    row.actor = actor
    row.updated_at = now
    audit.record(
        session,
        actor=actor,
        action="workflow.pause" if paused else "workflow.resume",
        target_type="workflow",
        target_id=workflow_id,
        now=now,
    )
    session.flush()
    return paused


def set_enabled(
    session: Session, workflow_id: str, *, enabled: bool, actor: str, now: datetime
) -> int:
    """Switch a workflow on or off in the programme document: the document in force with only
    that ``enabled`` flag changed becomes the next version, in force now (audited like every
    apply). Returns the version in force afterwards (unchanged when already so). Refused with
    ``409 programme_change_scheduled`` while a version waits for a later activation: a new
    version now would silently supersede it."""
    version, workflow = find(session, workflow_id, now=now)
    if workflow.enabled == enabled:
        return version
    pending = session.scalar(
        select(ProgrammeVersion.version).where(ProgrammeVersion.activated_at > now).limit(1)
    )
    if pending is not None:
        raise ProgrammeChangeScheduled(
            f"Programme version {pending} is scheduled for later; switch the workflow in that"
            " document instead.",
            details={"scheduled_version": pending},
        )
    programme = programmes.current(session, now=now)
    changed = programme.model_copy(
        update={
            "workflows": [
                w.model_copy(update={"enabled": enabled}) if w.id == workflow_id else w
                for w in programme.workflows
            ]
        }
    )
    applied = programmes.apply(session, changed, actor=actor, now=now)
    audit.record(
        session,
        actor=actor,
        action="workflow.enable" if enabled else "workflow.disable",
        target_type="workflow",
        target_id=workflow_id,
        now=now,
    )
    session.flush()
    return applied


def is_paused(session: Session, workflow_id: str) -> bool:
    row = session.get(WorkflowSwitch, workflow_id)
    return bool(row and row.paused)


def list_runs(
    session: Session,
    *,
    workflow_id: str | None = None,
    member_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[tuple[WorkflowRun, str]]:
    """Newest runs first, with the member's external id."""
    stmt = (
        select(WorkflowRun, Member.external_id)
        .join(Member, Member.id == WorkflowRun.member_id)
        .order_by(WorkflowRun.id.desc())
        .limit(min(limit, MAX_RUNS))
    )
    if workflow_id is not None:
        stmt = stmt.where(WorkflowRun.workflow_id == workflow_id)
    if member_id is not None:
        stmt = stmt.where(WorkflowRun.member_id == member_id)
    if status is not None:
        stmt = stmt.where(WorkflowRun.status == status)
    return [(row[0], row[1]) for row in session.execute(stmt).all()]


def get_run(session: Session, run_id: int) -> tuple[WorkflowRun, str, list[WorkflowStep]]:
    """One run, its member's external id and its step log; ``404 workflow_run_not_found``."""
    found = (
        session.execute(
            select(WorkflowRun, Member.external_id)
            .join(Member, Member.id == WorkflowRun.member_id)
            .where(WorkflowRun.id == run_id)
        ).first()
        if 0 < run_id < 2**63
        else None
    )
    if found is None:
        raise RunNotFound(f"No workflow run {run_id}.", details={"run_id": run_id})
    return found[0], found[1], runs.steps_of(session, run_id)


# --- dry run ---------------------------------------------------------------------------------


@dataclass(slots=True)
class DryStep:
    path: str
    type: str
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class DryRun:
    workflow_id: str
    member: str
    version: int
    triggered: bool | None
    condition: bool
    would_start: bool
    steps: list[DryStep]
    notes: list[str] = field(default_factory=list)


def _time_due(
    session: Session, workflow: Workflow, programme: Programme, member_id: int, now: datetime
) -> bool:
    from lealta.workflows import finders

    due = finders.due(workflow.trigger, programme=programme, now=now)  # type: ignore[arg-type]
    found = due.subquery("due")
    return (
        session.execute(
            select(found.c.member_id).where(found.c.member_id == member_id).limit(1)
        ).first()
        is not None
    )


def dry_run(
    session: Session,
    settings: Settings,
    workflow_id: str,
    external_id: str,
    *,
    payload: dict[str, Any] | None = None,
    waited: bool = False,
    now: datetime,
) -> DryRun:
    """What the workflow would do to one member now, without any effect: whether the trigger
    and condition let a run start, then each step as it would go (branches evaluated on the
    member's data; waits assumed to end with the awaited event when ``waited``; messages
    rendered in the member's language). Nothing is written."""
    version, workflow = find(session, workflow_id, now=now)
    _, programme = runs.in_force(session, now)
    member = members.get(session, external_id)
    given = dict(payload or {})
    trigger = workflow.trigger
    topic = trigger.event if isinstance(trigger, EventTrigger) else trigger.kind
    facts = runs.member_facts(session, member, programme)
    run_vars: dict[str, Any] = runs.initial_vars(session, given)
    environment = plan.env(
        member=facts,
        trigger={**given, "type": topic},
        run=run_vars,
        now=now,
        timezone=member.timezone,
    )
    notes: list[str] = []
    triggered: bool | None
    if isinstance(trigger, EventTrigger):
        triggered = trigger.filter is None or plan.test(trigger.filter, environment)
        notes.append(f"event {trigger.event} with the payload given")
    else:
        triggered = _time_due(session, workflow, programme, member.id, now)
    condition = workflow.condition is None or plan.test(workflow.condition, environment)
    would_start = bool(triggered) and condition and workflow.enabled
    if not workflow.enabled:
        notes.append("the workflow is disabled in the programme")
    if is_paused(session, workflow_id):
        would_start = False
        notes.append("the workflow is paused")
    consents = runs.consents_of(session, member.id)
    program = plan.compile_steps(workflow.steps)
    steps: list[DryStep] = []
    pc = 0
    while pc < len(program):
        instr = program[pc]
        step = instr.step
        if step is None:
            assert instr.jump is not None
            pc = instr.jump
            continue
        kind = str(step.type)
        nxt: int | None = pc + 1
        if isinstance(step, AwardPoints | DeductPoints):
            steps.append(
                DryStep(
                    instr.path,
                    kind,
                    "would_" + ("award" if isinstance(step, AwardPoints) else "deduct"),
                    {"points": step.points},
                )
            )
            run_vars["points"] = step.points
        elif isinstance(step, IssueCoupon | IssueReward):
            steps.append(DryStep(instr.path, kind, "would_issue", {"reward": step.reward}))
            run_vars["reward_id"] = step.reward
            run_vars["coupon"] = {"code": "DRY-RUN", "expires_at": None}
        elif isinstance(step, SendMessage):
            channel = plan.best_channel(consents) if step.channel == "best" else step.channel
            purpose = needs_consent(channel)
            if purpose is not None and not consents.get(purpose):
                steps.append(DryStep(instr.path, kind, "no_consent", {"channel": channel}))
                if workflow.exit_on_consent_withdrawal:
                    break
            else:
                detail: dict[str, Any] = {"template": step.template, "channel": channel}
                try:
                    context = _dry_context(session, member, programme, run_vars, step, now)
                    rendered, lang = notify.render_for(
                        session,
                        member,
                        settings,
                        key=step.template,
                        channel=channel,
                        extra=context,
                        now=now,
                    )
                    detail.update(subject=rendered.subject, text=rendered.text, language=lang)
                except LealtaError as exc:
                    detail["error"] = exc.message
                steps.append(DryStep(instr.path, kind, "would_send", detail))
        elif isinstance(step, CallWebhook):
            steps.append(DryStep(instr.path, kind, "would_emit", {"event": step.event}))
        elif isinstance(step, Tag | Untag):
            steps.append(DryStep(instr.path, kind, "would_" + kind, {"tag": step.tag}))
        elif isinstance(step, SetAttribute):
            steps.append(
                DryStep(instr.path, kind, "would_set", {"name": step.name, "value": step.value})
            )
        elif isinstance(step, Wait):
            until = plan.wait_until(step, now)
            detail = {"until": until.isoformat()}
            if step.until_event:
                detail["event"] = step.until_event.event
                detail["assumed"] = "arrived" if waited else "timed_out"
            run_vars["waited"] = waited and step.until_event is not None
            steps.append(DryStep(instr.path, kind, "would_wait", detail))
        elif isinstance(step, Branch):
            env_now = plan.env(
                member=facts,
                trigger={**given, "type": topic},
                run=run_vars,
                now=now,
                timezone=member.timezone,
            )
            taken = plan.test(step.condition, env_now)
            steps.append(
                DryStep(instr.path, kind, "then" if taken else "else", {"if": step.condition})
            )
            nxt = pc + 1 if taken else instr.jump
        elif isinstance(step, Stop):
            steps.append(DryStep(instr.path, kind, "would_stop"))
            break
        assert nxt is not None
        pc = nxt
    return DryRun(
        workflow_id, external_id, version, triggered, condition, would_start, steps, notes
    )


def _dry_context(
    session: Session,
    member: Member,
    programme: Programme,
    run_vars: dict[str, Any],
    step: SendMessage,
    now: datetime,
) -> dict[str, Any]:
    context: dict[str, Any] = {
        k: run_vars[k] for k in ("points", "crossed", "coupon") if k in run_vars
    }
    reward_id = run_vars.get("reward_id")
    if isinstance(reward_id, str):
        reward = programme.reward(reward_id)
        lang = member.language if member.language in ("es", "en") else "es"
        context["reward"] = {"id": reward_id, "name": reward.name.get(lang) if reward else ""}
    context.setdefault("expiring", {"points": 0, "on": now.date().isoformat()})
    if step.survey:
        context["survey_url"] = f"(link to survey {step.survey})"
    return context
