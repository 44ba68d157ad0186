from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId


class Event(Base):
    """Every ingested event, as received, with the key that makes it idempotent."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_member_time", "member_id", "occurred_at"),
        Index("ix_events_external_id", "external_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # The event's own ``id`` (its natural key), NULL when it was sent without one: one event
    # id is processed once, whatever ``Idempotency-Key`` header came with it.
    external_id: Mapped[str | None] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    # The event row is its own idempotency record: the request's hash and the response.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
