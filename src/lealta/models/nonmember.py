from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId


class NonMemberEvent(Base):
    """An order or refund of a customer who is not a member (implicit enrolment off): no
    points, only the amounts the dashboard compares. Idempotent like ``events`` (unique key and
    event id, the first response kept). A refund carries the time of the order it refunds,
    so it counts on that order's day like members' refunds do."""

    __tablename__ = "non_member_events"
    __table_args__ = (
        CheckConstraint(
            "event_type IN ('order.paid', 'order.refunded')", name="ck_non_member_events_type"
        ),
        Index("ix_non_member_events_customer", "customer_id", "order_ref"),
        Index("ix_non_member_events_order_time", "order_occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    event_type: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(128))
    order_ref: Mapped[str] = mapped_column(String(128))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime]
    order_occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSONType)
