"""Pydantic shapes of ``/v1/webhooks`` and of the documented webhook payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lealta.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

EventFilter = Annotated[str, StringConstraints(min_length=1, max_length=64)]
DeliveryStatus = Literal["pending", "retrying", "succeeded", "dead"]


class EndpointIn(BaseModel):
    """A new endpoint. ``event_types``: event types (``order.paid``, a custom
    ``review.posted``) or ``["*"]`` for every event."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    event_types: Annotated[list[EventFilter], Field(min_length=1, max_length=50)] = ["*"]
    description: Annotated[str, StringConstraints(max_length=200)] = ""
    enabled: bool = True


class EndpointPatch(BaseModel):
    """What to change (omitted fields stay). Enabling clears the failure record."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None
    event_types: Annotated[list[EventFilter], Field(min_length=1, max_length=50)] | None = None
    description: Annotated[str, StringConstraints(max_length=200)] | None = None
    enabled: bool | None = None


class EndpointOut(BaseModel):
    """An endpoint. ``disabled_reason`` says why Lealta switched it off after failures."""

    id: int
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    """An endpoint with its signing ``secret``: returned once, on creation and rotation."""

    secret: str = Field(description="Signs every request; store it now, it is not shown again.")


class EndpointList(BaseModel):
    items: list[EndpointOut]


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    succeeded: bool
    status_code: int | None
    duration_ms: int
    response_excerpt: str | None
    error: str | None


class DeliveryOut(BaseModel):
    """One event to one endpoint, with its newest attempt."""

    id: int
    endpoint_id: int
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_duration_ms: int | None
    last_error: str | None
    last_response: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(DeliveryOut):
    """A delivery with the body sent and every attempt."""

    payload: dict[str, Any]
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = Field(description="Pass back as `cursor` for older deliveries.")


def endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut.model_validate(endpoint, from_attributes=True)


def endpoint_with_secret(endpoint: WebhookEndpoint) -> EndpointWithSecret:
    return EndpointWithSecret.model_validate(endpoint, from_attributes=True)


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut.model_validate(
        {**_columns(delivery), "event_id": str(delivery.payload.get("id", ""))}
    )


def delivery_detail(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryDetail:
    return DeliveryDetail.model_validate(
        {
            **_columns(delivery),
            "event_id": str(delivery.payload.get("id", "")),
            "payload": delivery.payload,
            "attempt_log": [AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
        }
    )


def _columns(delivery: WebhookDelivery) -> dict[str, Any]:
    return {c: getattr(delivery, c) for c in DeliveryOut.model_fields if c != "event_id"}


# --- the documented payloads (OpenAPI ``webhooks``) ----------------------------------------


class WebhookEnvelope(BaseModel):
    """The body of every webhook request. Headers: ``Lealta-Webhook-Id`` (= ``id``, the same
    on every retry: drop duplicates by it), ``Lealta-Webhook-Timestamp`` (Unix seconds) and
    ``Lealta-Webhook-Signature`` (``v1=`` + hex HMAC-SHA256 of ``"<timestamp>.<raw body>"``
    keyed with the endpoint secret). Answer 2xx within 10 s; anything else is retried with
    backoff for about a day."""

    id: str = Field(description="The event id, `evt_<n>`.", examples=["evt_1042"])
    type: str = Field(description="The event type.")
    version: int = Field(description="The payload version of this type.")
    created_at: datetime = Field(description="When the change was committed.")
    data: dict[str, Any]
