from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

WEBHOOK_DELIVERY_STATUSES = ("pending", "retrying", "succeeded", "dead")
"""``pending``: waiting for its first attempt (or a replay); ``retrying``: an attempt failed
and the next one is scheduled; ``succeeded``: the endpoint answered 2xx; ``dead``: out of
attempts, or the endpoint was disabled. A replay puts any of them back to ``pending``."""


class WebhookEndpoint(Base):
    """A URL that receives signed ``POST`` requests for the domain events it subscribes to.

    ``event_types`` lists event types (``order.paid``, a custom ``review.posted``) or ``*``
    for all. ``secret`` signs every request (HMAC-SHA256); it is shown once, when created or
    rotated. ``consecutive_failures`` and ``failing_since`` track an endpoint that keeps
    failing; past the configured limits it is disabled (``enabled`` false, with
    ``disabled_reason``) and the admins are told. See :mod:`lealta.webhooks`.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="", server_default="")
    event_types: Mapped[list[str]] = mapped_column(JSONType)
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    disabled_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    failing_since: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One domain event (an outbox row) to one endpoint: at most one per pair.

    ``payload`` is the JSON body as first built (a replay sends the same body, with a new
    timestamp and signature). The ``last_*`` columns repeat the newest attempt for lists;
    every attempt is a :class:`WebhookAttempt`.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "outbox_id", name="uq_webhook_deliveries_event"),
        CheckConstraint(
            "status IN ('pending', 'retrying', 'succeeded', 'dead')",
            name="ck_webhook_deliveries_status",
        ),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    outbox_id: Mapped[int] = mapped_column(BigId)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_status_code: Mapped[int | None]
    last_duration_ms: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    """One HTTP request of a delivery: what came back (status, excerpt) or what went wrong."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"))
    attempt: Mapped[int]
    at: Mapped[datetime]
    succeeded: Mapped[bool]
    status_code: Mapped[int | None]
    duration_ms: Mapped[int]
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
