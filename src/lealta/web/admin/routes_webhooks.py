"""The console's Webhooks page: endpoints, the delivery log, replay, and a banner for the
endpoints Lealta disabled after failures.

Admins only (secrets sign what receivers trust). Every action is a plain form (CSRF-checked,
audited by the service) that redirects back, so the page works without JavaScript; a new or
rotated secret is shown once on a page of its own, never stored in the session.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep
from lealta.outbox.events import EVENT_TYPES
from lealta.staff.service import Staff, require
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import FLASH, show
from lealta.web.admin.routes_ops_common import translator
from lealta.web.security import check_csrf
from lealta.webhooks import service

router = APIRouter(prefix="/admin/webhooks", include_in_schema=False)

PAGE_SIZE = 50
MAX_ID = service.MAX_ID

# Source strings (English) of the delivery statuses, as shown on the page.
STATUS_LABELS: dict[str, str] = {
    "pending": "waiting",
    "retrying": "retrying",
    "succeeded": "delivered",
    "dead": "failed for good",
}
ERRORS: dict[str, str] = {
    "invalid_webhook_url": "Enter an absolute http:// or https:// URL.",
    "invalid_event_types": "List event types like order.paid, separated by commas, or * for all.",
    "webhook_endpoint_not_found": "This endpoint no longer exists.",
    "webhook_delivery_not_found": "This delivery no longer exists.",
    "webhook_endpoint_disabled": "The endpoint is disabled; enable it before replaying.",
    "webhook_endpoints_limit": "There are too many endpoints; remove one first.",
}


def _message(request: Request, exc: LealtaError) -> str:
    _ = translator(request)
    return _(ERRORS[exc.code]) if exc.code in ERRORS else exc.message


def _flash(request: Request, text: str, **values: Any) -> None:
    request.session[FLASH] = {"kind": "ok", "text": text, "values": values}


def _list_page(
    request: Request,
    db: DbDep,
    staff: Staff,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    with db.unit_of_work(write=False) as session:
        endpoints = service.list_endpoints(session)
        deliveries = service.list_deliveries(session, limit=PAGE_SIZE)
    context: dict[str, Any] = {
        "endpoints": endpoints,
        "broken": [e for e in endpoints if not e.enabled and e.disabled_reason],
        "deliveries": deliveries,
        "urls": {e.id: e.url for e in endpoints},
        "status_labels": STATUS_LABELS,
        "event_types": sorted(EVENT_TYPES),
        "form": form or {"url": "", "event_types": "*", "description": ""},
        "error": error,
    }
    return show(request, staff, "admin/webhooks.html", context, status_code=status_code)


@router.get("")
def webhooks_page(request: Request, db: DbDep, staff: StaffDep) -> Response:
    require(staff, "admin")
    return _list_page(request, db, staff)


@router.post("")
def create_endpoint(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    url: Annotated[str, Form(max_length=2000)] = "",
    event_types: Annotated[str, Form(max_length=4000)] = "*",
    description: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require(staff, "admin")
    check_csrf(request, csrf_token)
    filters = [t for t in event_types.replace("\n", ",").split(",") if t.strip()]
    try:
        with db.unit_of_work() as session:
            endpoint = service.create_endpoint(
                session,
                url=url,
                event_types=filters,
                description=description,
                now=clock.now(),
                actor=staff.actor,
            )
            shown = {"id": endpoint.id, "url": endpoint.url, "secret": endpoint.secret}
    except LealtaError as exc:
        form = {"url": url, "event_types": event_types, "description": description}
        return _list_page(
            request,
            db,
            staff,
            form=form,
            error=_message(request, exc),
            status_code=exc.status_code,
        )
    return show(request, staff, "admin/webhook_secret.html", {"endpoint": shown, "new": True})


def _endpoint_id(endpoint_id: int) -> int:
    return endpoint_id if 0 < endpoint_id <= MAX_ID else 0


@router.get("/{endpoint_id}")
def endpoint_page(
    request: Request,
    endpoint_id: int,
    db: DbDep,
    staff: StaffDep,
    status: str = "",
) -> Response:
    require(staff, "admin")
    chosen = status if status in STATUS_LABELS else None
    with db.unit_of_work(write=False) as session:
        endpoint = service.get_endpoint(session, _endpoint_id(endpoint_id))
        deliveries = service.list_deliveries(
            session, endpoint_id=endpoint.id, status=chosen, limit=PAGE_SIZE
        )
        attempts = {d.id: service.attempts_of(session, d.id)[-5:] for d in deliveries}
    context = {
        "endpoint": endpoint,
        "deliveries": deliveries,
        "attempts": attempts,
        "status": chosen or "",
        "status_labels": STATUS_LABELS,
    }
    return show(request, staff, "admin/webhook.html", context)


def _endpoint_action(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: Staff,
    endpoint_id: int,
    csrf_token: str,
    action: str,
) -> Response:
    require(staff, "admin")
    check_csrf(request, csrf_token)
    endpoint_id = _endpoint_id(endpoint_id)
    try:
        with db.unit_of_work() as session:
            now = clock.now()
            if action == "rotate":
                endpoint = service.rotate_secret(session, endpoint_id, now=now, actor=staff.actor)
                shown = {"id": endpoint.id, "url": endpoint.url, "secret": endpoint.secret}
            elif action == "remove":
                service.remove_endpoint(session, endpoint_id, now=now, actor=staff.actor)
            else:
                service.update_endpoint(
                    session, endpoint_id, enabled=action == "enable", now=now, actor=staff.actor
                )
    except LealtaError as exc:
        return _list_page(
            request, db, staff, error=_message(request, exc), status_code=exc.status_code
        )
    if action == "rotate":
        return show(request, staff, "admin/webhook_secret.html", {"endpoint": shown, "new": False})
    if action == "remove":
        _flash(request, "Endpoint %(id)s was removed.", id=endpoint_id)
        return RedirectResponse("/admin/webhooks", status_code=303)
    text = "Endpoint %(id)s is enabled." if action == "enable" else "Endpoint %(id)s is disabled."
    _flash(request, text, id=endpoint_id)
    return RedirectResponse(f"/admin/webhooks/{endpoint_id}", status_code=303)


@router.post("/{endpoint_id}/enable")
def enable_endpoint(
    request: Request,
    endpoint_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    return _endpoint_action(request, db, clock, staff, endpoint_id, csrf_token, "enable")


@router.post("/{endpoint_id}/disable")
def disable_endpoint(
    request: Request,
    endpoint_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    return _endpoint_action(request, db, clock, staff, endpoint_id, csrf_token, "disable")


@router.post("/{endpoint_id}/rotate")
def rotate_secret(
    request: Request,
    endpoint_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    return _endpoint_action(request, db, clock, staff, endpoint_id, csrf_token, "rotate")


@router.post("/{endpoint_id}/remove")
def remove_endpoint(
    request: Request,
    endpoint_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    return _endpoint_action(request, db, clock, staff, endpoint_id, csrf_token, "remove")


@router.post("/deliveries/{delivery_id}/replay")
def replay_delivery(
    request: Request,
    delivery_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    require(staff, "admin")
    check_csrf(request, csrf_token)
    try:
        with db.unit_of_work() as session:
            delivery = service.replay(
                session, _endpoint_id(delivery_id), now=clock.now(), actor=staff.actor
            )
            endpoint_id = delivery.endpoint_id
    except LealtaError as exc:
        return _list_page(
            request, db, staff, error=_message(request, exc), status_code=exc.status_code
        )
    _flash(request, "Delivery %(id)s will be sent again now.", id=delivery_id)
    return RedirectResponse(f"/admin/webhooks/{endpoint_id}", status_code=303)
