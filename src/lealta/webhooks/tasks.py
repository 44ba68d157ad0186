"""Background work of webhooks: the outbox subscriber and the delivery job.

The subscriber ``webhooks.fan_out`` runs (as an ``outbox.deliver`` job) for every domain
event that is not backfilled history; it creates one delivery per enabled endpoint whose
filter matches and enqueues a ``webhooks.deliver`` job for each (dedupe key
``webhook:<delivery id>``). The delivery job makes the HTTP request outside any transaction:
a crash between the request and the record repeats the request (at least once; receivers
drop duplicates by ``Lealta-Webhook-Id``). A non-2xx answer, a timeout or a refused connection
is a failed attempt, retried with exponential backoff and full jitter for about a day
(:data:`MAX_ATTEMPTS` attempts, waits capped at two hours).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from lealta.config import Settings
from lealta.jobs.dispatch import OutboxInfo
from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import Backoff, JobContext, task
from lealta.kit.logging import get_logger
from lealta.models import Job, WebhookEndpoint
from lealta.notify import email
from lealta.outbox import subscribers
from lealta.outbox.events import EVENT_TYPES, DomainEvent, EventProcessed
from lealta.webhooks import service, signing

log = get_logger("lealta.webhooks")

SUBSCRIBER = "webhooks.fan_out"
MAX_ATTEMPTS = 32
RETRY_BACKOFF = Backoff(base=30.0, cap=7200.0)
"""Waits drawn from [0, 30 s · 2^(n-1)] capped at 2 h: 32 attempts span about a day."""
RESPONSE_BYTES = 2048

_client_lock = threading.Lock()
_clients: dict[float, httpx.Client] = {}


def _client(timeout: float) -> httpx.Client:
    """One pooled client per timeout (connections to an endpoint are reused)."""
    with _client_lock:
        client = _clients.get(timeout)
        if client is None:
            client = _clients[timeout] = httpx.Client(
                timeout=httpx.Timeout(timeout),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        return client


def fan_out(ctx: JobContext, event: DomainEvent, info: OutboxInfo) -> None:
    """One delivery (and job) per enabled endpoint subscribed to this event's type."""
    service.fan_out(
        ctx.require_session(),
        outbox_id=info.id,
        event_type=info.topic,
        version=info.version,
        created_at=info.created_at,
        data=event.to_payload(),
        member_id=info.member_id,
        now=ctx.now,
    )


def any_endpoint(session: Any) -> bool:
    """Whether an endpoint is enabled: without one, events cost no fan-out job."""
    found = session.execute(
        select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True)).limit(1)
    ).first()
    return found is not None


for _event_type in (*EVENT_TYPES, EventProcessed.TYPE):
    subscribers.subscribe(_event_type, name=SUBSCRIBER, wanted=any_endpoint)(fan_out)


class WebhookFailed(Exception):
    """A failed attempt (the job is retried with backoff)."""


def post(request: service.Request, *, timestamp: int, timeout: float) -> service.Result:
    """Send one signed request; never raises for what the endpoint or network does."""
    headers = signing.headers(
        secret=request.secret,
        webhook_id=request.webhook_id,
        timestamp=timestamp,
        body=request.body,
    )
    started = time.perf_counter()
    status: int | None = None
    text: str | None = None
    error: str | None = None
    try:
        with _client(timeout).stream(
            "POST", request.url, content=request.body, headers=headers
        ) as response:
            status = response.status_code
            raw = b""
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) >= RESPONSE_BYTES:
                    break
            text = signing.excerpt(raw[:RESPONSE_BYTES].decode("utf-8", "replace"))
            if not 200 <= status < 300:
                error = f"HTTP {status}"
    except httpx.TimeoutException:
        error = f"Timed out after {timeout:g} s."
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    duration = round((time.perf_counter() - started) * 1000)
    return service.Result(
        status_code=status, duration_ms=duration, response_excerpt=text, error=error
    )


@task(
    service.DELIVER_TASK,
    max_attempts=MAX_ATTEMPTS,
    backoff=RETRY_BACKOFF,
    transactional=False,
    timeout=90,
)
def deliver(ctx: JobContext, *, delivery_id: int) -> None:
    """One attempt of one delivery: read, ``POST`` (outside any transaction), record."""
    if not isinstance(delivery_id, int):
        return
    with ctx.db.unit_of_work() as session:
        request = service.start_attempt(session, delivery_id)
        max_attempts = session.scalar(select(Job.max_attempts).where(Job.id == ctx.job_id))
    if isinstance(request, str):
        log.info("webhook_not_sent", delivery=delivery_id, reason=request)
        return
    now = ctx.clock.now()
    result = post(
        request, timestamp=int(now.timestamp()), timeout=ctx.settings.webhook_timeout_seconds
    )
    with ctx.db.unit_of_work() as session:
        recorded = service.record_attempt(
            session,
            request,
            result,
            now=ctx.clock.now(),
            last_try=ctx.attempt >= (max_attempts or MAX_ATTEMPTS),
            settings=ctx.settings,
        )
        admins = service.admin_emails(session) if recorded.disabled is not None else []
        disabled = _facts(recorded.disabled) if recorded.disabled is not None else None
    if disabled is not None:
        _tell_admins(ctx.settings, admins, disabled)
        return
    if recorded.status in ("retrying", "dead") and not result.succeeded:
        raise WebhookFailed(
            f"delivery {delivery_id} to endpoint {request.endpoint_id}: {result.error}"
        )


def _facts(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "url": endpoint.url, "reason": endpoint.disabled_reason}


def _tell_admins(settings: Settings, admins: list[str], endpoint: dict[str, Any]) -> None:
    """E-mail the admins that an endpoint was disabled (logged only without SMTP)."""
    log.warning("webhook_endpoint_disabled", endpoint=endpoint["id"], url=endpoint["url"])
    if not settings.smtp_host:
        return
    link = f"{settings.public_url.rstrip('/')}/admin/webhooks/{endpoint['id']}"
    text = (
        f"Lealta disabled the webhook endpoint {endpoint['url']}: {endpoint['reason']}\n\n"
        f"Its undelivered events stay in the delivery log. Fix the receiver, enable the"
        f" endpoint again and replay what it missed:\n{link}\n"
    )
    for to in admins:
        try:
            email.send(settings, to=to, subject="Webhook endpoint disabled", text=text)
        except email.EmailNotSent:
            log.error("webhook_disabled_email_failed", to=to)


PRUNE_BATCH = 1000
PRUNE_MAX_BATCHES = 100


@periodic("webhooks.prune", "43 * * * *", transactional=False)
def prune(ctx: JobContext) -> None:
    """Delete finished deliveries older than ``LEALTA_WEBHOOK_RETENTION_DAYS`` (bounded per
    run; the next hour continues)."""
    keep = timedelta(days=ctx.settings.webhook_retention_days)
    removed = 0
    for _ in range(PRUNE_MAX_BATCHES):
        with ctx.db.unit_of_work() as session:
            batch = service.prune(session, now=ctx.now, older_than=keep, limit=PRUNE_BATCH)
        removed += batch
        if batch < PRUNE_BATCH:
            break
    if removed:
        log.info("webhook_deliveries_pruned", removed=removed)
