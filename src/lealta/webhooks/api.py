"""``/v1/webhooks``: endpoints (create, list, read, change, remove, rotate the secret) and the
delivery log (list, read, replay).

Webhooks are administration and their secrets sign what receivers trust: every operation
needs a ``server`` key. Every write takes an ``Idempotency-Key`` (a replay returns the first
response, secrets included) and is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from lealta.apikeys.deps import get_principal
from lealta.apikeys.service import Principal
from lealta.kit.errors import Forbidden
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    RequiredIdempotencyKey,
    idempotent_write,
    replayable,
)
from lealta.kit.pagination import decode_cursor, encode_cursor
from lealta.webhooks import service
from lealta.webhooks.schemas import (
    DeliveryDetail,
    DeliveryPage,
    DeliveryStatus,
    EndpointIn,
    EndpointList,
    EndpointOut,
    EndpointPatch,
    EndpointWithSecret,
    delivery_detail,
    delivery_out,
    endpoint_out,
    endpoint_with_secret,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.scope != "server":
        raise Forbidden(
            "Webhooks are administration: they need a 'server' key.", code="insufficient_scope"
        )
    return principal


Admin = Annotated[Principal, Depends(get_admin)]
EndpointId = Annotated[int, Path(ge=1, le=service.MAX_ID, description="The endpoint's id.")]
DeliveryId = Annotated[int, Path(ge=1, le=service.MAX_ID, description="The delivery's id.")]


class Removed(BaseModel):
    id: int
    removed: bool


@router.post(
    "",
    status_code=201,
    response_model=EndpointWithSecret,
    summary="Register an endpoint",
    responses=replayable(EndpointWithSecret),
)
def create_endpoint(
    data: EndpointIn,
    principal: Admin,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Register a URL for the listed event types (`["*"]`: all). The response carries the
    signing `secret`, shown this once. `422 invalid_webhook_url`, `422 invalid_event_types`."""

    def effect(session: Session, now: datetime) -> tuple[int, dict[str, Any]]:
        endpoint = service.create_endpoint(
            session,
            url=data.url,
            event_types=data.event_types,
            description=data.description,
            enabled=data.enabled,
            now=now,
            actor=principal.actor,
        )
        return 201, endpoint_with_secret(endpoint).model_dump(mode="json")

    return idempotent_write(
        db,
        clock,
        scope="webhook-create",
        key=idempotency_key,
        payload=data.model_dump(mode="json"),
        effect=effect,
    )


@router.get("", response_model=EndpointList, summary="List endpoints")
def list_endpoints(principal: Admin, db: DbDep) -> EndpointList:
    """Every endpoint, oldest first (secrets are never listed)."""
    with db.unit_of_work(write=False) as session:
        return EndpointList(items=[endpoint_out(e) for e in service.list_endpoints(session)])


@router.get("/deliveries", response_model=DeliveryPage, summary="The delivery log")
def list_deliveries(
    principal: Admin,
    db: DbDep,
    endpoint_id: Annotated[int | None, Query(ge=1, le=service.MAX_ID)] = None,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryPage:
    """Deliveries newest first, with the status code, duration, error and response excerpt
    of their newest attempt; filter by endpoint or status."""
    before = decode_cursor(cursor)[1] if cursor else None
    with db.unit_of_work(write=False) as session:
        rows = service.list_deliveries(
            session, endpoint_id=endpoint_id, status=status, limit=limit, before_id=before
        )
        items = [delivery_out(r) for r in rows]
    last = rows[-1] if len(rows) == limit else None
    return DeliveryPage(
        items=items,
        next_cursor=encode_cursor(last.created_at, last.id) if last is not None else None,
    )


@router.get("/deliveries/{delivery_id:int}", response_model=DeliveryDetail, summary="One delivery")
def get_delivery(delivery_id: DeliveryId, principal: Admin, db: DbDep) -> DeliveryDetail:
    """The body sent and every attempt (status code, duration, response excerpt, error)."""
    with db.unit_of_work(write=False) as session:
        delivery = service.get_delivery(session, delivery_id)
        return delivery_detail(delivery, service.attempts_of(session, delivery.id))


@router.post(
    "/deliveries/{delivery_id:int}/replay",
    response_model=DeliveryDetail,
    summary="Replay a delivery",
    responses=replayable(DeliveryDetail),
)
def replay_delivery(
    delivery_id: DeliveryId,
    principal: Admin,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Send the event again now (same body and `Lealta-Webhook-Id`, new signature) with a
    fresh set of retries. `409 webhook_endpoint_disabled` while the endpoint is off."""

    def effect(session: Session, now: datetime) -> tuple[int, dict[str, Any]]:
        delivery = service.replay(session, delivery_id, now=now, actor=principal.actor)
        detail = delivery_detail(delivery, service.attempts_of(session, delivery.id))
        return 200, detail.model_dump(mode="json")

    return idempotent_write(
        db,
        clock,
        scope=f"webhook-replay:{delivery_id}",
        key=idempotency_key,
        payload={"delivery_id": delivery_id},
        effect=effect,
    )


@router.get("/{endpoint_id:int}", response_model=EndpointOut, summary="One endpoint")
def get_endpoint(endpoint_id: EndpointId, principal: Admin, db: DbDep) -> EndpointOut:
    with db.unit_of_work(write=False) as session:
        return endpoint_out(service.get_endpoint(session, endpoint_id))


@router.patch(
    "/{endpoint_id:int}",
    response_model=EndpointOut,
    summary="Change an endpoint",
    responses=replayable(EndpointOut),
)
def update_endpoint(
    endpoint_id: EndpointId,
    data: EndpointPatch,
    principal: Admin,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Change the URL, filters, description or `enabled`. Enabling an endpoint that Lealta
    disabled clears its failure record (then replay what it missed)."""

    def effect(session: Session, now: datetime) -> tuple[int, dict[str, Any]]:
        endpoint = service.update_endpoint(
            session,
            endpoint_id,
            url=data.url,
            event_types=data.event_types,
            description=data.description,
            enabled=data.enabled,
            now=now,
            actor=principal.actor,
        )
        return 200, endpoint_out(endpoint).model_dump(mode="json")

    return idempotent_write(
        db,
        clock,
        scope=f"webhook-update:{endpoint_id}",
        key=idempotency_key,
        payload=data.model_dump(mode="json", exclude_unset=True),
        effect=effect,
    )


@router.post(
    "/{endpoint_id:int}/rotate-secret",
    response_model=EndpointWithSecret,
    summary="Rotate the signing secret",
    responses=replayable(EndpointWithSecret),
)
def rotate_secret(
    endpoint_id: EndpointId,
    principal: Admin,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """A new secret signs every request from now on; it is in this response only."""

    def effect(session: Session, now: datetime) -> tuple[int, dict[str, Any]]:
        endpoint = service.rotate_secret(session, endpoint_id, now=now, actor=principal.actor)
        return 200, endpoint_with_secret(endpoint).model_dump(mode="json")

    return idempotent_write(
        db,
        clock,
        scope=f"webhook-rotate:{endpoint_id}",
        key=idempotency_key,
        payload={"endpoint_id": endpoint_id},
        effect=effect,
    )


@router.delete(
    "/{endpoint_id:int}",
    response_model=Removed,
    summary="Remove an endpoint",
    responses=replayable(Removed),
)
def remove_endpoint(
    endpoint_id: EndpointId,
    principal: Admin,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Delete the endpoint and its delivery log; queued deliveries are dropped."""

    def effect(session: Session, now: datetime) -> tuple[int, dict[str, Any]]:
        service.remove_endpoint(session, endpoint_id, now=now, actor=principal.actor)
        return 200, Removed(id=endpoint_id, removed=True).model_dump(mode="json")

    return idempotent_write(
        db,
        clock,
        scope=f"webhook-remove:{endpoint_id}",
        key=idempotency_key,
        payload={"endpoint_id": endpoint_id},
        effect=effect,
    )
