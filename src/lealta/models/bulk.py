from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

BULK_KINDS = ("points", "tags", "attributes", "tier")
BULK_STATUSES = ("queued", "running", "done", "failed")
BULK_ROW_STATUSES = ("pending", "applied", "rejected")


class BulkOperation(Base):
    """One bulk operation (points, tags, attributes or tier moves to many members).

    Created with all its rows (``bulk_operation_rows``, status ``pending``) in one transaction
    and worked through by a job, a chunk of rows per transaction: a row's effect and its
    status commit together, so a re-run resumes where the last one stopped and a rejected row
    changes nothing. ``idempotency_key`` is unique: the same key (or the same file) is the same
    operation, never a second one.
    """

    __tablename__ = "bulk_operations"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('points', 'tags', 'attributes', 'tier')", name="ck_bulk_operations_kind"
        ),
        CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name="ck_bulk_operations_status"
        ),
        UniqueConstraint("idempotency_key", name="uq_bulk_operations_key"),
        Index("ix_bulk_operations_created", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(200))
    total_rows: Mapped[int] = mapped_column(default=0)
    processed_rows: Mapped[int] = mapped_column(default=0)
    applied_rows: Mapped[int] = mapped_column(default=0)
    rejected_rows: Mapped[int] = mapped_column(default=0)
    points_applied: Mapped[int] = mapped_column(BigInteger, default=0)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class BulkOperationRow(Base):
    """One row of a bulk operation: its input, and what became of it."""

    __tablename__ = "bulk_operation_rows"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'applied', 'rejected')", name="ck_bulk_operation_rows_status"
        ),
        UniqueConstraint("operation_id", "line", name="uq_bulk_operation_rows_line"),
        Index("ix_bulk_operation_rows_status", "operation_id", "status", "line"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    operation_id: Mapped[int] = mapped_column(ForeignKey("bulk_operations.id", ondelete="CASCADE"))
    line: Mapped[int]
    external_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    code: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(String(500))
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
