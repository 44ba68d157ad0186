from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

SUBSCRIPTION_STATUSES = ("incomplete", "trialing", "active", "past_due", "canceled", "expired")
"""``incomplete``: waiting for the first payment; ``trialing``: free days; ``active``: paid up;
``past_due``: a renewal failed, benefits kept through grace; ``canceled``/``expired``: over."""
LIVE_STATUSES = ("incomplete", "trialing", "active", "past_due")
_LIVE = "status IN ('incomplete', 'trialing', 'active', 'past_due')"


class PlanSubscription(Base):
    """A member's subscription to a paid plan. At most one live subscription per member (a
    partial unique index on PostgreSQL and SQLite). ``benefits_until`` is when the plan's
    benefits stop unless a payment extends them; the member row mirrors it (``plan_until``)."""

    __tablename__ = "plan_subscriptions"
    __table_args__ = (
        CheckConstraint(
            "status IN ('incomplete', 'trialing', 'active', 'past_due', 'canceled', 'expired')",
            name="ck_plan_subscriptions_status",
        ),
        Index(
            "uq_plan_subscriptions_live_member",
            "member_id",
            unique=True,
            postgresql_where=text(_LIVE),
            sqlite_where=text(_LIVE),
        ),
        Index("ix_plan_subscriptions_due", "status", "benefits_until"),
        UniqueConstraint("provider", "provider_ref", name="uq_plan_subscriptions_provider_ref"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    plan_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    provider_ref: Mapped[str] = mapped_column(String(128))
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    period: Mapped[str] = mapped_column(String(8))
    started_at: Mapped[datetime]
    trial_ends_at: Mapped[datetime | None]
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    benefits_until: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    checkout_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PlanPayment(Base):
    """A payment event the provider reported (signed webhook), once per provider event id."""

    __tablename__ = "plan_payments"
    __table_args__ = (
        CheckConstraint("outcome IN ('paid', 'failed')", name="ck_plan_payments_outcome"),
        UniqueConstraint("provider", "provider_event_id", name="uq_plan_payments_event"),
        Index("ix_plan_payments_occurred", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("plan_subscriptions.id"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_event_id: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(8))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    payload: Mapped[dict[str, object]] = mapped_column(JSONType)
