"""Webhook endpoints and deliveries: the business operations (the caller's session, no commit).

Writes are audited by the caller's actor. The HTTP request itself is made by
:mod:`lealta.webhooks.tasks`, outside any transaction, around :func:`start_attempt` and
:func:`record_attempt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.config import Settings
from lealta.jobs import queue
from lealta.kit.db import dialect_insert
from lealta.kit.errors import Conflict, InvalidInput, NotFound
from lealta.models import (
    AdminUser,
    Member,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from lealta.webhooks import signing

DELIVER_TASK = "webhooks.deliver"
MAX_URL = 2000
MAX_DESCRIPTION = 200
MAX_ENDPOINTS = 100
MAX_ID = 2**63 - 1

_deliveries = cast(Table, WebhookDelivery.__table__)


class EndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"


class DeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"


class EndpointDisabled(Conflict):
    code = "webhook_endpoint_disabled"


class TooManyEndpoints(Conflict):
    code = "webhook_endpoints_limit"


# --- endpoints -----------------------------------------------------------------------------


def check_url(url: str) -> str:
    """An absolute ``http``/``https`` URL with a host, at most 2000 characters."""
    url = url.strip()
    parts = urlsplit(url) if len(url) <= MAX_URL else None
    try:
        port_ok = parts is not None and (parts.port is None or 0 < parts.port < 65536)
    except ValueError:
        port_ok = False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise InvalidInput(
            f"The URL must be absolute http:// or https:// with a host, at most {MAX_URL}"
            " characters.",
            code="invalid_webhook_url",
        )
    return url


def check_filters(event_types: Sequence[str]) -> list[str]:
    try:
        return signing.normalise_filters(event_types)
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_event_types") from None


def check_description(description: str) -> str:
    description = description.strip()
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"A description has at most {MAX_DESCRIPTION} characters.", code="validation_error"
        )
    return description


def create_endpoint(
    session: Session,
    *,
    url: str,
    event_types: Sequence[str],
    description: str = "",
    enabled: bool = True,
    now: datetime,
    actor: str,
) -> WebhookEndpoint:
    """Register an endpoint with a new signing secret (returned on the row: show it once)."""
    url, filters, description = (
        check_url(url),
        check_filters(event_types),
        check_description(description),
    )
    count = session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0
    if count >= MAX_ENDPOINTS:
        raise TooManyEndpoints(f"At most {MAX_ENDPOINTS} webhook endpoints; remove one first.")
    endpoint = WebhookEndpoint(
        url=url,
        description=description,
        event_types=filters,
        secret=signing.new_secret(),
        enabled=enabled,
        consecutive_failures=0,
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    audit.record(
        session, actor=actor, action="webhook.created", target_type="webhook_endpoint",
        target_id=str(endpoint.id), now=now, details={"url": url, "event_types": filters},
    )  # fmt: skip
    return endpoint


def get_endpoint(session: Session, endpoint_id: int, *, lock: bool = False) -> WebhookEndpoint:
    endpoint = (
        session.get(WebhookEndpoint, endpoint_id, with_for_update=lock)
        if 0 < endpoint_id <= MAX_ID
        else None
    )
    if endpoint is None:
        raise EndpointNotFound(f"No webhook endpoint {endpoint_id}.")
    return endpoint


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    """Every endpoint, oldest first (there are at most :data:`MAX_ENDPOINTS`)."""
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def update_endpoint(
    session: Session,
    endpoint_id: int,
    *,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    now: datetime,
    actor: str,
) -> WebhookEndpoint:
    """Change what is given. Enabling an endpoint clears its failure record."""
    endpoint = get_endpoint(session, endpoint_id, lock=True)
    changes: dict[str, Any] = {}
    if url is not None:
        endpoint.url = changes["url"] = check_url(url)
    if event_types is not None:
        endpoint.event_types = changes["event_types"] = check_filters(event_types)
    if description is not None:
        endpoint.description = changes["description"] = check_description(description)
    if enabled is not None and enabled != endpoint.enabled:
        changes["enabled"] = enabled
        endpoint.enabled = enabled
        if enabled:
            endpoint.disabled_reason = endpoint.disabled_at = endpoint.failing_since = None
            endpoint.consecutive_failures = 0
        else:
            # No reason: switched off by a person, not by failures (no console banner).
            endpoint.disabled_reason, endpoint.disabled_at = None, now
    endpoint.updated_at = now
    audit.record(
        session, actor=actor, action="webhook.updated", target_type="webhook_endpoint",
        target_id=str(endpoint.id), now=now, details=changes,
    )  # fmt: skip
    return endpoint


def rotate_secret(
    session: Session, endpoint_id: int, *, now: datetime, actor: str
) -> WebhookEndpoint:
    """Replace the signing secret at once (requests from now on use the new one)."""
    endpoint = get_endpoint(session, endpoint_id, lock=True)
    endpoint.secret = signing.new_secret()
    endpoint.updated_at = now
    audit.record(
        session, actor=actor, action="webhook.secret_rotated", target_type="webhook_endpoint",
        target_id=str(endpoint.id), now=now,
    )  # fmt: skip
    return endpoint


def remove_endpoint(session: Session, endpoint_id: int, *, now: datetime, actor: str) -> None:
    """Delete an endpoint with its delivery log; its queued jobs find nothing and stop."""
    endpoint = get_endpoint(session, endpoint_id, lock=True)
    ids = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    audit.record(
        session, actor=actor, action="webhook.removed", target_type="webhook_endpoint",
        target_id=str(endpoint.id), now=now, details={"url": endpoint.url},
    )  # fmt: skip
    session.delete(endpoint)
    session.flush()


# --- fan-out: one delivery per matching endpoint -------------------------------------------


def fan_out(
    session: Session,
    *,
    outbox_id: int,
    event_type: str,
    version: int,
    created_at: datetime,
    data: dict[str, Any],
    member_id: int | None,
    now: datetime,
) -> int:
    """Create the deliveries of one event and enqueue their jobs (once per endpoint, however
    often this runs). Returns how many endpoints match."""
    endpoints = [
        e
        for e in session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled))
        if signing.matches(e.event_types, event_type)
    ]
    if not endpoints:
        return 0
    if member_id is not None and "customer_id" not in data:
        external = session.scalar(select(Member.external_id).where(Member.id == member_id))
        data = {**data, "customer_id": external}
    body = signing.payload(
        outbox_id=outbox_id,
        event_type=event_type,
        version=version,
        created_at=created_at,
        data=data,
    )
    rows = [
        {
            "endpoint_id": e.id,
            "outbox_id": outbox_id,
            "event_type": event_type,
            "payload": body,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for e in endpoints
    ]
    session.execute(
        dialect_insert(session, _deliveries).on_conflict_do_nothing(
            index_elements=["endpoint_id", "outbox_id"]
        ),
        rows,
    )
    delivery_ids = session.scalars(
        select(WebhookDelivery.id).where(
            WebhookDelivery.outbox_id == outbox_id,
            WebhookDelivery.endpoint_id.in_([e.id for e in endpoints]),
        )
    ).all()
    queue.enqueue_many(
        session,
        [
            queue.NewJob(DELIVER_TASK, {"delivery_id": i}, dedupe_key=f"webhook:{i}")
            for i in delivery_ids
        ],
        now=now,
    )
    return len(endpoints)


# --- attempts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """What one attempt sends, read in a short transaction before the HTTP call."""

    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    webhook_id: str
    body: bytes
    attempt: int


@dataclass(frozen=True, slots=True)
class Result:
    """What came back: a status code and excerpt, or an error (timeout, refused, …)."""

    status_code: int | None
    duration_ms: int
    response_excerpt: str | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Recorded:
    """The delivery's status after an attempt, and whether the endpoint was disabled by it."""

    status: str
    disabled: WebhookEndpoint | None


def start_attempt(session: Session, delivery_id: int) -> Request | str:
    """The request to send for a delivery, or why nothing is sent (``gone``, ``delivered``,
    ``endpoint_disabled``; the last one marks the delivery dead)."""
    delivery = session.get(WebhookDelivery, delivery_id) if 0 < delivery_id <= MAX_ID else None
    if delivery is None:
        return "gone"
    if delivery.status == "succeeded":
        return "delivered"
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None:
        return "gone"
    if not endpoint.enabled:
        delivery.status = "dead"
        delivery.last_error = "The endpoint is disabled."
        return "endpoint_disabled"
    return Request(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        secret=endpoint.secret,
        webhook_id=str(delivery.payload.get("id", signing.event_id(delivery.outbox_id))),
        body=signing.body_bytes(delivery.payload),
        attempt=delivery.attempts + 1,
    )


def record_attempt(
    session: Session,
    request: Request,
    result: Result,
    *,
    now: datetime,
    last_try: bool,
    settings: Settings,
) -> Recorded:
    """Log one attempt, update the delivery and the endpoint's failure record, and disable the
    endpoint when it has failed ``webhook_disable_after_failures`` times in a row over at least
    ``webhook_disable_after_hours`` (audited as ``webhook.disabled``)."""
    delivery = session.get(WebhookDelivery, request.delivery_id, with_for_update=True)
    endpoint = session.get(WebhookEndpoint, request.endpoint_id, with_for_update=True)
    if delivery is None or endpoint is None:  # removed meanwhile
        return Recorded("gone", None)
    session.add(
        WebhookAttempt(
            delivery_id=request.delivery_id,
            attempt=request.attempt,
            at=now,
            succeeded=result.succeeded,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            response_excerpt=result.response_excerpt,
            error=result.error,
        )
    )
    delivery.attempts = max(delivery.attempts, request.attempt)
    delivery.last_status_code = result.status_code
    delivery.last_duration_ms = result.duration_ms
    delivery.last_response = result.response_excerpt
    delivery.last_error = result.error
    delivery.updated_at = now
    if result.succeeded:
        delivery.status, delivery.delivered_at = "succeeded", now
        endpoint.consecutive_failures, endpoint.failing_since = 0, None
        return Recorded("succeeded", None)
    endpoint.consecutive_failures += 1
    endpoint.failing_since = endpoint.failing_since or now
    disabled = None
    if endpoint.enabled and should_disable(
        endpoint.consecutive_failures,
        endpoint.failing_since,
        now,
        failures=settings.webhook_disable_after_failures,
        hours=settings.webhook_disable_after_hours,
    ):
        disabled = _disable(session, endpoint, now=now)
    delivery.status = "dead" if last_try or disabled is not None else "retrying"
    return Recorded(delivery.status, disabled)


def should_disable(
    consecutive_failures: int,
    failing_since: datetime | None,
    now: datetime,
    *,
    failures: int,
    hours: float,
) -> bool:
    """The disabling rule: ``failures`` failed attempts in a row, the first of them at least
    ``hours`` ago."""
    return (
        consecutive_failures >= failures
        and failing_since is not None
        and now - failing_since >= timedelta(hours=hours)
    )


def _disable(session: Session, endpoint: WebhookEndpoint, *, now: datetime) -> WebhookEndpoint:
    since = endpoint.failing_since or now
    endpoint.enabled = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = (
        f"{endpoint.consecutive_failures} failed attempts in a row since"
        f" {since.isoformat(timespec='minutes')}."
    )
    endpoint.updated_at = now
    audit.record(
        session, actor="system", action="webhook.disabled", target_type="webhook_endpoint",
        target_id=str(endpoint.id), now=now,
        reason=endpoint.disabled_reason, details={"url": endpoint.url},
    )  # fmt: skip
    return endpoint


def admin_emails(session: Session) -> list[str]:
    """Whom to tell about a disabled endpoint: the active admins."""
    return list(
        session.scalars(
            select(AdminUser.email)
            .where(AdminUser.role == "admin", AdminUser.disabled.is_(False))
            .order_by(AdminUser.id)
        )
    )


# --- the delivery log and replay -----------------------------------------------------------


def get_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id) if 0 < delivery_id <= MAX_ID else None
    if delivery is None:
        raise DeliveryNotFound(f"No webhook delivery {delivery_id}.")
    return delivery


def list_deliveries(
    session: Session,
    *,
    endpoint_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[WebhookDelivery]:
    """Deliveries newest first (``before_id`` pages back)."""
    stmt = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if endpoint_id is not None:
        stmt = stmt.where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    if before_id is not None:
        stmt = stmt.where(WebhookDelivery.id < before_id)
    return list(session.scalars(stmt))


def attempts_of(session: Session, delivery_id: int) -> list[WebhookAttempt]:
    """Every attempt of one delivery, oldest first."""
    return list(
        session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.id)
        )
    )


def replay(session: Session, delivery_id: int, *, now: datetime, actor: str) -> WebhookDelivery:
    """Send a delivery again now (whatever its status), with the same body and event id and
    a fresh set of attempts. ``409 webhook_endpoint_disabled`` while its endpoint is off."""
    delivery = get_delivery(session, delivery_id)
    endpoint = get_endpoint(session, delivery.endpoint_id)
    if not endpoint.enabled:
        raise EndpointDisabled(
            "The endpoint is disabled; enable it before replaying its deliveries."
        )
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id)
        .values(status="pending", updated_at=now)
    )
    queue.enqueue(session, DELIVER_TASK, {"delivery_id": delivery.id}, now=now)
    audit.record(
        session, actor=actor, action="webhook.replayed", target_type="webhook_delivery",
        target_id=str(delivery.id), now=now, details={"endpoint_id": endpoint.id},
    )  # fmt: skip
    session.refresh(delivery)
    return delivery


def prune(session: Session, *, now: datetime, older_than: timedelta, limit: int = 1000) -> int:
    """Delete up to ``limit`` finished deliveries (succeeded or dead) last touched before
    ``now - older_than``, with their attempts; returns how many."""
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status.in_(("succeeded", "dead")),
                WebhookDelivery.updated_at < now - older_than,
            )
            .order_by(WebhookDelivery.id)
            .limit(limit)
        )
    )
    if ids:
        session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    return len(ids)


def disabled_endpoints(session: Session) -> list[WebhookEndpoint]:
    """Endpoints switched off by failures (for the console banner)."""
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.enabled.is_(False), WebhookEndpoint.disabled_reason.is_not(None))
            .order_by(WebhookEndpoint.id)
        )
    )
