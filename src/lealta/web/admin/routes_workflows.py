"""The console's Workflows pages: the list (on/off, paused, runs per day, conversions), each
workflow drawn as a diagram of its steps with its recent runs, pause / resume, the dry run
against a chosen member, and one run with its step log. Workflows are edited in the
programme document (the Programme page validates it with every problem's path)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.programme.schema import name_in
from lealta.staff.service import Staff, require
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import FLASH, show
from lealta.web.security import check_csrf
from lealta.workflows import service
from lealta.workflows.schema import EventTrigger, Workflow

router = APIRouter(prefix="/admin/workflows", include_in_schema=False)


def _trigger(workflow: Workflow) -> dict[str, Any]:
    trigger = workflow.trigger
    values = trigger.model_dump(mode="json", exclude_none=True)
    values.pop("kind", None)
    if isinstance(trigger, EventTrigger):
        return {"kind": "event", "event": trigger.event, "filter": trigger.filter}
    return {"kind": trigger.kind, "values": values}


@router.get("")
def workflows_page(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    require(staff, "view")
    lang = i18n.negotiate(request)
    with db.unit_of_work(write=False) as session:
        version, listed = service.listing(session, now=clock.now())
    items = [
        {
            "id": item.workflow.id,
            "name": name_in(item.workflow.name, lang),
            "enabled": item.workflow.enabled,
            "paused": item.paused,
            "trigger": _trigger(item.workflow),
            "figures": item.figures,
        }
        for item in listed
    ]
    context = {"items": items, "version": version, "days": service.STATS_DAYS}
    return show(request, staff, "admin/workflows.html", context)


def _workflow_page(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: Staff,
    workflow_id: str,
    *,
    dry: service.DryRun | None = None,
    dry_member: str = "",
    dry_payload: str = "{}",
    dry_waited: bool = False,
    dry_error: str | None = None,
    status_code: int = 200,
) -> Response:
    lang = i18n.negotiate(request)
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        version, workflow = service.find(session, workflow_id, now=now)
        paused = service.is_paused(session, workflow_id)
        figures = service.figures(session, now=now).get(workflow_id, service.Figures())
        recent = service.list_runs(session, workflow_id=workflow_id, limit=30)
    context = {
        "workflow": workflow,
        "name": name_in(workflow.name, lang),
        "version": version,
        "paused": paused,
        "figures": figures,
        "trigger": _trigger(workflow),
        "steps": workflow.steps,
        "runs": recent,
        "dry": dry,
        "dry_member": dry_member,
        "dry_payload": dry_payload,
        "dry_waited": dry_waited,
        "dry_error": dry_error,
        "definition": json.dumps(
            workflow.model_dump(mode="json", by_alias=True, exclude_none=True),
            ensure_ascii=False,
            indent=2,
        ),
        "days": service.STATS_DAYS,
    }
    return show(request, staff, "admin/workflow.html", context, status_code=status_code)


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: int, db: DbDep, staff: StaffDep) -> Response:
    require(staff, "view")
    with db.unit_of_work(write=False) as session:
        run, customer, steps = service.get_run(session, run_id)
    context = {"run": run, "customer": customer, "steps": steps}
    return show(request, staff, "admin/workflow_run.html", context)


@router.get("/{workflow_id}")
def workflow_page(
    request: Request, workflow_id: str, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    require(staff, "view")
    return _workflow_page(request, db, clock, staff, workflow_id[:64])


@router.post("/{workflow_id}/switch")
def switch(
    request: Request,
    workflow_id: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    paused: Annotated[str, Form(max_length=10)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    stop = paused == "true"
    with db.unit_of_work() as session:
        service.set_paused(
            session, workflow_id[:64], paused=stop, actor=staff.actor, now=clock.now()
        )
    text = (
        "Workflow paused: no new runs start."
        if stop
        else "Workflow resumed: new triggers start runs again."
    )
    request.session[FLASH] = {"kind": "ok", "text": text, "values": {}}
    return RedirectResponse(f"/admin/workflows/{workflow_id[:64]}", status_code=303)


@router.post("/{workflow_id}/enabled")
def switch_enabled(
    request: Request,
    workflow_id: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    enabled: Annotated[str, Form(max_length=10)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    on = enabled == "true"
    try:
        with db.unit_of_work() as session:
            version = service.set_enabled(
                session, workflow_id[:64], enabled=on, actor=staff.actor, now=clock.now()
            )
    except service.ProgrammeChangeScheduled:
        flash = {
            "kind": "error",
            "text": "A programme change is scheduled for later: switch the workflow in that"
            " document instead.",
            "values": {},
        }
    else:
        flash = {
            "kind": "ok",
            "text": "Workflow switched on: programme version %(version)s is in force."
            if on
            else "Workflow switched off: programme version %(version)s is in force.",
            "values": {"version": version},
        }
    request.session[FLASH] = flash
    return RedirectResponse(f"/admin/workflows/{workflow_id[:64]}", status_code=303)


@router.post("/{workflow_id}/dry-run")
def dry_run(
    request: Request,
    workflow_id: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    settings: SettingsDep,
    member: Annotated[str, Form(max_length=200)] = "",
    payload: Annotated[str, Form(max_length=20_000)] = "{}",
    waited: Annotated[str, Form(max_length=10)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """What the workflow would do to a member, shown on the workflow page; nothing written."""
    require(staff, "view")
    check_csrf(request, csrf_token)
    _ = i18n.gettext_for(i18n.negotiate(request))
    key = workflow_id[:64]
    wanted = waited == "on"
    try:
        given = json.loads(payload or "{}")
        if not isinstance(given, dict):
            raise ValueError
    except ValueError:
        return _workflow_page(
            request,
            db,
            clock,
            staff,
            key,
            dry_member=member,
            dry_payload=payload,
            dry_waited=wanted,
            dry_error=_("The payload must be a JSON object."),
            status_code=422,
        )
    try:
        with db.unit_of_work(write=False) as session:
            found = service.dry_run(
                session,
                settings,
                key,
                member.strip(),
                payload=given,
                waited=wanted,
                now=clock.now(),
            )
    except LealtaError as exc:
        if exc.code == "workflow_not_found":
            raise
        message = _("No member has this id.") if exc.code == "member_not_found" else exc.message
        return _workflow_page(
            request,
            db,
            clock,
            staff,
            key,
            dry_member=member,
            dry_payload=payload,
            dry_waited=wanted,
            dry_error=message,
            status_code=422,
        )
    return _workflow_page(
        request,
        db,
        clock,
        staff,
        key,
        dry=found,
        dry_member=member,
        dry_payload=payload,
        dry_waited=wanted,
    )
