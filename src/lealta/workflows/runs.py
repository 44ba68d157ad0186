"""Workflow runs: starting them (one event, or set-wise for time triggers), advancing them
step by step in durable jobs, waking waits, and reacting to events (waits, goals).

A run is a row: status, position ``pc`` in the compiled steps of the programme version it
started on, ``next_at`` when it is next due, the event a wait listens for, and ``vars`` (the
coupon it issued, whether the awaited event arrived…). The ``workflows.advance`` job locks the
run, executes steps from ``pc`` until a wait or the end, logs each step and commits — the
effects (ledger entries, coupons, queued messages) and the new position in one transaction,
so a retried job never repeats an effect. Waits are rows with a due time: a delayed job and a
periodic sweep wake them, so they survive restarts and deploys.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, and_, exists, func, literal, select, update
from sqlalchemy.orm import Session

from lealta.config import Settings
from lealta.coupons import service as coupons
from lealta.jobs import queue
from lealta.kit.db import insert_ignoring, lock_for_update
from lealta.kit.errors import LealtaError
from lealta.kit.logging import get_logger
from lealta.kit.money import exponent
from lealta.ledger import operations
from lealta.ledger.schemas import SpendIn
from lealta.members import service as members
from lealta.models import (
    Account,
    Consent,
    Coupon,
    Member,
    ProgrammeVersion,
    WorkflowRun,
    WorkflowStep,
    WorkflowSwitch,
)
from lealta.models.workflow import ACTIVE_STATUSES
from lealta.notify import service as notify
from lealta.notify.policy import needs_consent
from lealta.outbox.events import EventProcessed
from lealta.outbox.service import emit
from lealta.programme.schema import DEFAULT_PROGRAMME, CouponSpec, Programme, name_in
from lealta.rewards import service as rewards
from lealta.workflows import plan
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

log = get_logger("lealta.workflows")
_runs = cast(Table, WorkflowRun.__table__)

ADVANCE = "workflows.advance"
WAKE_BATCH = 1000
ACTOR = "workflow"


# --- versions ------------------------------------------------------------------------------

_VERSIONS: OrderedDict[str, Programme] = OrderedDict()


def programme_version(session: Session, number: int) -> Programme:
    """The programme of stored version ``number`` (0: the default programme), parsed once
    per document digest and kept in an LRU."""
    if number == 0:
        return DEFAULT_PROGRAMME
    digest = session.scalar(
        select(ProgrammeVersion.digest).where(ProgrammeVersion.version == number)
    )
    if digest is None:
        raise LookupError(f"no programme version {number}")
    found = _VERSIONS.get(digest) if digest else None
    if found is None:
        row = session.scalars(
            select(ProgrammeVersion).where(ProgrammeVersion.version == number)
        ).one()
        found = Programme.model_validate(row.document)
        if digest:
            _VERSIONS[digest] = found
        while len(_VERSIONS) > 32:
            _VERSIONS.popitem(last=False)
    else:
        _VERSIONS.move_to_end(digest)
    return found


def in_force(session: Session, now: datetime) -> tuple[int, Programme]:
    """(version number, programme) in force at ``now``; (0, default) before any is applied."""
    number = session.scalar(
        select(ProgrammeVersion.version)
        .where(ProgrammeVersion.activated_at <= now)
        .order_by(ProgrammeVersion.version.desc())
        .limit(1)
    )
    if number is None:
        return 0, DEFAULT_PROGRAMME
    return int(number), programme_version(session, int(number))


def workflow_of(programme: Programme, workflow_id: str) -> Workflow | None:
    return next((w for w in programme.workflows if w.id == workflow_id), None)


def paused(session: Session) -> set[str]:
    """Ids of the workflows paused from the console or the API."""
    return set(
        session.scalars(select(WorkflowSwitch.workflow_id).where(WorkflowSwitch.paused.is_(True)))
    )


def is_time_triggered(workflow: Workflow) -> bool:
    return not isinstance(workflow.trigger, EventTrigger)


# --- what conditions see -------------------------------------------------------------------


def member_facts(session: Session, member: Member, programme: Programme) -> dict[str, Any]:
    """The ``member`` variable of workflow conditions (as earning rules see it, plus balance);
    ``tier`` is the first tier until one is recorded."""
    account = session.get(Account, member.id)
    spend = account.qualifying_spend_minor if account else 0
    exp = exponent(programme.currency)
    tier = rewards.effective_tier(programme, account) if account else None
    return {
        "id": member.external_id,
        "tier": tier or "",
        "tags": list(member.tags or []),
        "attributes": dict(member.attributes or {}),
        "qualifying_spend": spend / (10**exp),
        "orders_count": account.orders_count if account else 0,
        "language": member.language,
        "balance": account.points_available if account else 0,
    }


def consents_of(session: Session, member_id: int) -> dict[str, bool]:
    """The member's latest choice per consent purpose."""
    latest: dict[str, bool] = {}
    for purpose, granted in session.execute(
        select(Consent.purpose, Consent.granted)
        .where(Consent.member_id == member_id)
        .order_by(Consent.id)
    ):
        latest[purpose] = bool(granted)
    return latest


def initial_vars(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """What a run knows from its trigger: points, the coupon and reward it names."""
    found: dict[str, Any] = {}
    points = payload.get("points_delta", payload.get("points"))
    if isinstance(points, int):
        found["points"] = points
    if payload.get("crossed") is not None:
        found["crossed"] = str(payload["crossed"])
    code = payload.get("coupon_code") or payload.get("code")
    if isinstance(code, str):
        coupon = session.scalar(select(Coupon).where(Coupon.code == code))
        found["coupon"] = {
            "code": code,
            "expires_at": coupon.valid_until.isoformat() if coupon else None,
            "reward_id": coupon.reward_id if coupon else payload.get("reward_id"),
        }
    if isinstance(payload.get("reward_id"), str):
        found["reward_id"] = payload["reward_id"]
    return found


# --- starting ------------------------------------------------------------------------------


def _cooling(workflow: Workflow, member_id: int, now: datetime) -> Any:
    cooldown = workflow.reentry.cooldown
    if cooldown is None:
        return None
    return exists().where(
        _runs.c.workflow_id == workflow.id,
        _runs.c.member_id == member_id,
        _runs.c.started_at > now - cooldown.delta(),
    )


def start(
    session: Session,
    workflow: Workflow,
    *,
    version: int,
    member_id: int,
    trigger: str,
    occurrence: str,
    payload: dict[str, Any],
    now: datetime,
) -> int | None:
    """Start one run and enqueue its first step; None when the member is already in this
    workflow (no re-entry), in its cooldown, or this occurrence already started a run."""
    cooldown = workflow.reentry.cooldown
    if cooldown is not None and session.scalar(
        select(func.count())
        .select_from(_runs)
        .where(
            _runs.c.workflow_id == workflow.id,
            _runs.c.member_id == member_id,
            _runs.c.started_at > now - cooldown.delta(),
        )
    ):
        return None
    stmt = (
        insert_ignoring(session, _runs)
        .values(
            workflow_id=workflow.id,
            member_id=member_id,
            programme_version=version,
            trigger=trigger[:64],
            occurrence=occurrence[:200],
            payload=payload,
            vars=initial_vars(session, payload),
            status="running",
            exclusive=not workflow.reentry.allowed,
            pc=0,
            next_at=now,
            converted=False,
            started_at=now,
            updated_at=now,
        )
        .returning(_runs.c.id)
    )
    run_id: int | None = session.execute(stmt).scalar_one_or_none()
    if run_id is not None:
        _enqueue(session, run_id, now, now)
    return run_id


def start_many(
    session: Session,
    *,
    workflow_id: str,
    version: int,
    due: Select[tuple[int, str]],
    now: datetime,
) -> int:
    """Start runs of ``workflow_id`` for every ``(member_id, occurrence)`` of ``due`` with
    one ``INSERT … SELECT``: a repeated occurrence, a member already in the workflow (no
    re-entry) or in its cooldown starts nothing. Returns how many started. The new runs are
    due now; the ``workflows.wake`` sweep enqueues their first steps in batches."""
    workflow = workflow_of(programme_version(session, version), workflow_id)
    if workflow is None:
        raise ValueError(f"no workflow {workflow_id!r} in programme version {version}")
    found = due.subquery("due")
    conditions = []
    if not workflow.reentry.allowed:
        conditions.append(
            ~exists().where(
                _runs.c.workflow_id == workflow_id,
                _runs.c.member_id == found.c.member_id,
                _runs.c.status.in_(ACTIVE_STATUSES),
            )
        )
    if workflow.reentry.cooldown is not None:
        conditions.append(
            ~exists().where(
                _runs.c.workflow_id == workflow_id,
                _runs.c.member_id == found.c.member_id,
                _runs.c.started_at > now - workflow.reentry.cooldown.delta(),
            )
        )
    source = select(
        literal(workflow_id).label("workflow_id"),
        found.c.member_id,
        literal(version).label("programme_version"),
        literal(workflow.trigger.kind).label("trigger"),
        found.c.occurrence,
        literal({}, type_=_runs.c.payload.type).label("payload"),
        literal({}, type_=_runs.c.vars.type).label("vars"),
        literal("running").label("status"),
        literal(not workflow.reentry.allowed).label("exclusive"),
        literal(0).label("pc"),
        literal(now, type_=_runs.c.next_at.type).label("next_at"),
        literal(False).label("converted"),
        literal(now, type_=_runs.c.started_at.type).label("started_at"),
        literal(now, type_=_runs.c.updated_at.type).label("updated_at"),
    )
    if conditions:
        source = source.where(and_(*conditions))
    columns = [
        "workflow_id",
        "member_id",
        "programme_version",
        "trigger",
        "occurrence",
        "payload",
        "vars",
        "status",
        "exclusive",
        "pc",
        "next_at",
        "converted",
        "started_at",
        "updated_at",
    ]
    stmt = insert_ignoring(session, _runs).from_select(columns, source).returning(_runs.c.id)
    return len(session.execute(stmt).all())


def _enqueue(session: Session, run_id: int, due: datetime, now: datetime) -> None:
    queue.enqueue(
        session,
        ADVANCE,
        {"run_id": run_id},
        now=now,
        run_at=due,
        dedupe_key=f"workflow:{run_id}:{due.isoformat()}",
    )


def wake_due(session: Session, *, now: datetime, limit: int = WAKE_BATCH) -> int:
    """Enqueue the next step of runs due by ``now`` (new runs, ended waits) that have no job
    yet; returns how many. The dedupe key makes a run already enqueued a no-op."""
    rows = session.execute(
        select(_runs.c.id, _runs.c.next_at)
        .where(_runs.c.status.in_(ACTIVE_STATUSES), _runs.c.next_at <= now)
        .order_by(_runs.c.next_at)
        .limit(limit)
    ).all()
    queue.enqueue_many(
        session,
        [
            queue.NewJob(
                ADVANCE,
                {"run_id": row.id},
                dedupe_key=f"workflow:{row.id}:{row.next_at.isoformat()}",
            )
            for row in rows
        ],
        now=now,
    )
    return len(rows)


# --- events --------------------------------------------------------------------------------


def on_event(
    session: Session,
    *,
    topic: str,
    payload: dict[str, Any],
    member_id: int | None,
    outbox_id: int,
    now: datetime,
) -> int:
    """React to one domain event: end runs whose goal it is, wake waits listening for it,
    start runs of the workflows it triggers. Returns how many runs started."""
    if member_id is None:
        return 0
    for run in session.scalars(
        lock_for_update(
            select(WorkflowRun)
            .where(WorkflowRun.member_id == member_id, WorkflowRun.status.in_(ACTIVE_STATUSES))
            .order_by(WorkflowRun.id)
        )
    ):
        workflow = workflow_of(programme_version(session, run.programme_version), run.workflow_id)
        if workflow is None:
            continue
        goal = workflow.goal
        if goal is not None and goal.event == topic and plan.matches(goal.match, run.vars, payload):
            _log(session, run, "goal", "goal", "reached", {"event": topic}, now)
            _finish(run, "completed", now, reason="goal", converted=True)
            continue
        if run.status == "waiting" and run.wait_event == topic:
            program = plan.compile_steps(workflow.steps)
            step = program[run.pc].step if run.pc < len(program) else None
            want = step.until_event.match if isinstance(step, Wait) and step.until_event else None
            if want is not None and plan.matches(want, run.vars, payload):
                run.vars = {**run.vars, "_arrived": {"event": topic, "payload": payload}}
                run.next_at = now
                run.updated_at = now
                _enqueue(session, run.id, now, now)
    version, programme = in_force(session, now)
    if not programme.workflows:
        return 0
    stopped = paused(session)
    member: Member | None = None
    started = 0
    for workflow in programme.workflows:
        trigger = workflow.trigger
        if (
            not workflow.enabled
            or workflow.id in stopped
            or not isinstance(trigger, EventTrigger)
            or trigger.event != topic
        ):
            continue
        member = member or session.get(Member, member_id)
        if member is None:
            return started
        environment = plan.env(
            member=member_facts(session, member, programme),
            trigger={**payload, "type": topic},
            run={},
            now=now,
            timezone=member.timezone,
        )
        if not plan.should_start(workflow, environment):
            continue
        if (
            start(
                session,
                workflow,
                version=version,
                member_id=member_id,
                trigger=topic,
                occurrence=f"outbox:{outbox_id}",
                payload={**payload, "type": topic},
                now=now,
            )
            is not None
        ):
            started += 1
    return started


def start_time_triggered(session: Session, *, now: datetime) -> dict[str, int]:
    """For each enabled, unpaused time-triggered workflow in force: find who is due
    (:func:`lealta.workflows.finders.due`) and :func:`start_many`. Workflow id → started."""
    from lealta.workflows import finders

    version, programme = in_force(session, now)
    stopped = paused(session)
    started: dict[str, int] = {}
    for workflow in programme.workflows:
        if not workflow.enabled or workflow.id in stopped or not is_time_triggered(workflow):
            continue
        due = finders.due(workflow.trigger, programme=programme, now=now)  # type: ignore[arg-type]
        started[workflow.id] = start_many(
            session, workflow_id=workflow.id, version=version, due=due, now=now
        )
    if any(started.values()):
        wake_due(session, now=now)
    return started


# --- advancing -----------------------------------------------------------------------------


@dataclass(slots=True)
class Step:
    """What executing one position did: ``next`` position (None: stay), outcome for the log."""

    outcome: str
    detail: dict[str, Any]
    next: int | None


def _log(
    session: Session,
    run: WorkflowRun,
    path: str,
    step_type: str,
    outcome: str,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    seq = session.scalar(
        select(func.coalesce(func.max(WorkflowStep.seq), 0)).where(WorkflowStep.run_id == run.id)
    )
    session.add(
        WorkflowStep(
            run_id=run.id,
            seq=int(seq or 0) + 1,
            path=path,
            step_type=step_type,
            outcome=outcome,
            detail=detail,
            at=now,
        )
    )
    session.flush()


def _finish(
    run: WorkflowRun, status: str, now: datetime, *, reason: str | None, converted: bool = False
) -> None:
    run.status = status
    run.exit_reason = reason
    run.next_at = None
    run.wait_event = None
    run.finished_at = now
    run.updated_at = now
    if converted:
        run.converted = True


def advance(session: Session, settings: Settings, run_id: int, *, now: datetime) -> str:
    """Execute the run's steps from its position until a wait or the end; returns its
    status. Runs in the caller's transaction (the ``workflows.advance`` job)."""
    run: WorkflowRun | None = session.scalars(
        lock_for_update(select(WorkflowRun).where(WorkflowRun.id == run_id))
    ).first()
    if run is None or run.status not in ACTIVE_STATUSES:
        return run.status if run is not None else "gone"
    if run.next_at is not None and run.next_at > now:
        return run.status  # an early wake-up: the wait is not over
    workflow = workflow_of(programme_version(session, run.programme_version), run.workflow_id)
    if workflow is None:  # pragma: no cover - a stored version always holds its workflows
        _finish(run, "failed", now, reason="workflow missing from its programme version")
        return run.status
    member = session.get(Member, run.member_id)
    if member is None:  # pragma: no cover - members are erased, not deleted
        _finish(run, "exited", now, reason="member gone")
        return run.status
    _, current = in_force(session, now)
    program = plan.compile_steps(workflow.steps)
    first = run.pc == 0 and run.status == "running" and "_checked" not in run.vars
    if first and is_time_triggered(workflow):
        # Time-triggered runs are started set-wise; their condition is checked here, once.
        if not plan.should_start(workflow, _env(session, run, member, current, now)):
            _log(session, run, "condition", "condition", "not_met", {}, now)
            _finish(run, "exited", now, reason="condition_not_met")
            return run.status
        run.vars = {**run.vars, "_checked": True}
    if run.status == "waiting":
        instr = program[run.pc]
        arrived = run.vars.get("_arrived")
        outcome = "arrived" if arrived else ("timed_out" if instr.step.until_event else "elapsed")
        values = {k: v for k, v in run.vars.items() if k != "_arrived"}
        values["waited"] = bool(arrived)
        run.vars = values
        _log(session, run, instr.path, "wait", outcome, {}, now)
        run.status = "running"
        run.wait_event = None
        run.pc += 1
    while run.pc < len(program):
        instr = program[run.pc]
        if instr.step is None:
            assert instr.jump is not None
            run.pc = instr.jump
            continue
        try:
            with session.begin_nested():
                result = _execute(session, settings, run, member, workflow, current, instr, now)
        except LealtaError as exc:
            _log(
                session,
                run,
                instr.path,
                instr.kind,
                "failed",
                {"error": exc.code, "message": exc.message},
                now,
            )
            _finish(run, "failed", now, reason=f"{exc.code}: {exc.message}"[:200])
            return run.status
        _log(session, run, instr.path, instr.kind, result.outcome, result.detail, now)
        if run.status != "running":
            return run.status
        if result.next is None:
            return run.status
        run.pc = result.next
    _finish(run, "completed", now, reason=None)
    return run.status


def _env(
    session: Session, run: WorkflowRun, member: Member, programme: Programme, now: datetime
) -> dict[str, Any]:
    return plan.env(
        member=member_facts(session, member, programme),
        trigger={**run.payload, "type": run.trigger},
        run={k: v for k, v in run.vars.items() if not k.startswith("_")},
        now=now,
        timezone=member.timezone,
    )


def _coupon(
    session: Session,
    run: WorkflowRun,
    member: Member,
    programme: Programme,
    reward_id: str,
    now: datetime,
) -> dict[str, Any] | None:
    reward = programme.reward(reward_id)
    if reward is None:
        return None
    if reward.coupon is None and reward.type != "free_shipping":
        return None
    coupon = coupons.issue(
        session,
        reward.coupon or CouponSpec(free_shipping=True),
        reward_id=reward_id,
        member_id=member.id,
        source="workflow",
        currency=programme.currency,
        valid_from=now,
        now=now,
    )
    found = {
        "code": coupon.code,
        "expires_at": coupon.valid_until.isoformat(),
        "reward_id": reward_id,
    }
    run.vars = {**run.vars, "coupon": found, "reward_id": reward_id}
    return found


def _execute(
    session: Session,
    settings: Settings,
    run: WorkflowRun,
    member: Member,
    workflow: Workflow,
    programme: Programme,
    instr: plan.Instr,
    now: datetime,
) -> Step:
    step = instr.step
    after = run.pc + 1
    ref = f"workflow:{run.workflow_id}:{run.id}:{run.pc}"
    if isinstance(step, AwardPoints):
        operations.award(
            session,
            member.external_id,
            points=step.points,
            reason=step.reason,
            actor=f"{ACTOR}:{workflow.id}",
            source_type="workflow",
            source_ref=ref[:128],
            now=now,
            programme=programme,
        )
        run.vars = {**run.vars, "points": step.points}
        return Step("awarded", {"points": step.points}, after)
    if isinstance(step, DeductPoints):
        try:
            with session.begin_nested():
                operations.spend(
                    session,
                    member.external_id,
                    SpendIn(points=step.points, reason=step.reason, order_id=ref[:128]),
                    actor=f"{ACTOR}:{workflow.id}",
                    now=now,
                    programme=programme,
                )
        except LealtaError as exc:
            return Step("skipped", {"error": exc.code, "points": step.points}, after)
        return Step("deducted", {"points": step.points}, after)
    if isinstance(step, IssueCoupon | IssueReward):
        found = _coupon(session, run, member, programme, step.reward, now)
        if found is None:
            run.vars = {**run.vars, "reward_id": step.reward}
            return Step("announced", {"reward": step.reward}, after)
        return Step("issued", {"reward": step.reward, "code": found["code"]}, after)
    if isinstance(step, SendMessage):
        return _send(session, settings, run, member, workflow, programme, step, ref, now)
    if isinstance(step, CallWebhook):
        emit(
            session,
            EventProcessed(
                event_type=step.event,
                event_id=ref[:128],
                customer_id=member.external_id,
                points_delta=0,
            ),
            member_id=member.id,
            now=now,
            backfill=False,
        )
        return Step("emitted", {"event": step.event}, after)
    if isinstance(step, Tag | Untag):
        tags = [t for t in (member.tags or []) if t != step.tag]
        if isinstance(step, Tag):
            tags.append(step.tag)
        member.tags = tags
        member.updated_at = now
        return Step("tagged" if isinstance(step, Tag) else "untagged", {"tag": step.tag}, after)
    if isinstance(step, SetAttribute):
        member.attributes = {**(member.attributes or {}), step.name: step.value}
        member.updated_at = now
        return Step("set", {"name": step.name, "value": step.value}, after)
    if isinstance(step, Wait):
        until = plan.wait_until(step, now)
        run.status = "waiting"
        run.next_at = until
        run.wait_event = step.until_event.event if step.until_event else None
        run.updated_at = now
        _enqueue(session, run.id, until, now)
        detail: dict[str, Any] = {"until": until.isoformat()}
        if step.until_event:
            detail["event"] = step.until_event.event
        return Step("waiting", detail, None)
    if isinstance(step, Branch):
        taken = plan.test(step.condition, _env(session, run, member, programme, now))
        return Step("then" if taken else "else", {}, after if taken else instr.jump)
    if isinstance(step, Stop):
        _finish(run, "completed", now, reason="stop")
        return Step("stopped", {}, None)
    raise AssertionError(f"unknown step {step!r}")  # pragma: no cover


def _send(
    session: Session,
    settings: Settings,
    run: WorkflowRun,
    member: Member,
    workflow: Workflow,
    programme: Programme,
    step: SendMessage,
    ref: str,
    now: datetime,
) -> Step:
    consents = consents_of(session, member.id)
    channel = plan.best_channel(consents) if step.channel == "best" else step.channel
    purpose = needs_consent(channel)
    if purpose is not None and not consents.get(purpose):
        if workflow.exit_on_consent_withdrawal:
            _finish(run, "exited", now, reason="consent_withdrawn")
            return Step("no_consent", {"channel": channel}, None)
        return Step("no_consent", {"channel": channel}, run.pc + 1)
    context = message_context(session, settings, run, member, programme, step, now)
    message = notify.send_template(
        session, member.id, step.template, channel, context, f"{ref}:message", now
    )
    return Step(
        "queued",
        {"template": step.template, "channel": channel, "message_id": message.id},
        run.pc + 1,
    )


def message_context(
    session: Session,
    settings: Settings,
    run: WorkflowRun,
    member: Member,
    programme: Programme,
    step: SendMessage,
    now: datetime,
) -> dict[str, Any]:
    """The placeholders a workflow adds to the member's: points, coupon, reward, expiring
    points and, when the step names a survey, its signed link ``survey_url``."""
    context = effect_context(session, member, programme, run.vars, now=now)
    if step.survey is not None:
        from lealta.surveys import service as surveys

        survey = surveys.get(session, step.survey)
        token = surveys.link_token(settings.secret_key, survey, member)
        context["survey_url"] = f"{settings.public_url.rstrip('/')}/s/{token}"
    return context


def effect_context(
    session: Session,
    member: Member,
    programme: Programme,
    values: Mapping[str, Any],
    *,
    now: datetime,
) -> dict[str, Any]:
    """The placeholders earlier steps' effects give a message (workflows and campaigns):
    ``points``, ``crossed``, ``coupon``, the ``reward`` named by ``reward_id`` in the member's
    language, and the member's next ``expiring`` points."""
    lang = member.language if member.language in ("es", "en") else "es"
    context: dict[str, Any] = {}
    for key in ("points", "crossed", "coupon"):
        if key in values:
            context[key] = values[key]
    reward_id = values.get("reward_id")
    if isinstance(reward_id, str):
        reward = programme.reward(reward_id)
        context["reward"] = {
            "id": reward_id,
            "name": name_in(reward.name, lang) if reward else reward_id,
        }
    balance = members.balance(
        session, member, programme.currency, now=now, warn_days=programme.expiry.warn_days
    )
    if balance.next_expiry is not None:
        context["expiring"] = {
            "points": balance.next_expiry.points,
            "on": balance.next_expiry.at.date().isoformat(),
        }
    return context


# --- reading -------------------------------------------------------------------------------


def steps_of(session: Session, run_id: int) -> list[WorkflowStep]:
    return list(
        session.scalars(
            select(WorkflowStep).where(WorkflowStep.run_id == run_id).order_by(WorkflowStep.seq)
        )
    )


def exit_runs(session: Session, workflow_id: str, *, reason: str, now: datetime) -> int:
    """End every active run of a workflow (set-wise)."""
    result = session.execute(
        update(_runs)
        .where(_runs.c.workflow_id == workflow_id, _runs.c.status.in_(ACTIVE_STATUSES))
        .values(
            status="exited",
            exit_reason=reason,
            next_at=None,
            wait_event=None,
            finished_at=now,
            updated_at=now,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def since(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
