"""Tables of the inbound adapters: shop webhooks received, anonymous ``track`` calls waiting
for an ``identify``, and the browser origins allowed to use a publishable API key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

DELIVERY_STATUSES = ("processed", "duplicate", "skipped")
"""``processed``: mapped to an event and ingested; ``duplicate``: the order or refund was
already recorded under another delivery; ``skipped``: nothing to do (no customer, unknown
customer with implicit enrolment off, a refund of nothing) and said why in ``reason``."""


class InboundDelivery(Base):
    """One webhook delivery from a shop platform, once per ``(source, delivery_id)``: a
    redelivery finds this row and gets the stored response without acting again."""

    __tablename__ = "inbound_deliveries"
    __table_args__ = (
        UniqueConstraint("source", "delivery_id", name="uq_inbound_deliveries_delivery"),
        CheckConstraint(
            "status IN ('processed', 'duplicate', 'skipped')", name="ck_inbound_deliveries_status"
        ),
        Index("ix_inbound_deliveries_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(200))
    topic: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(200))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSONType)
    received_at: Mapped[datetime]


class AnonymousEvent(Base):
    """A ``track`` call that named only an anonymous id; an ``identify`` joining that id to a
    member ingests it as the member's event (``member_id`` and ``attached_at`` set)."""

    __tablename__ = "anonymous_events"
    __table_args__ = (Index("ix_anonymous_events_anonymous", "anonymous_id", "attached_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    anonymous_id: Mapped[str] = mapped_column(String(128))
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType)
    request_hash: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    attached_at: Mapped[datetime | None]


class ApiKeyOrigin(Base):
    """A browser origin (``https://shop.example``) allowed to call the API with a publishable
    key: the CORS allow-list, per key."""

    __tablename__ = "api_key_origins"
    __table_args__ = (UniqueConstraint("api_key_id", "origin", name="uq_api_key_origins"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    origin: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
