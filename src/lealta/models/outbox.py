from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId


class OutboxMessage(Base):
    """A domain event written in the same transaction as the change that caused it.

    Workers (workflows, notifications, webhooks) claim rows with ``FOR UPDATE SKIP LOCKED``.
    Domain events are written by :func:`lealta.outbox.service.emit` only: ``topic`` is the
    event type, ``version`` its payload version, and ``backfill`` marks imported history
    (CSV import, demo load) that subscribers may skip.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unprocessed", "processed_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    backfill: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
