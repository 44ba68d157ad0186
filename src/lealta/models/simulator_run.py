from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

SIMULATOR_RUN_STATUSES = ("queued", "running", "done", "failed")


class SimulatorRun(Base):
    """A simulation started from the console (:mod:`lealta.simulator.runs`), run by a job.

    The uploaded order file is kept in ``orders_csv`` until the run finishes (then cleared):
    the worker that runs it may be on another machine than the web process. ``designs`` holds
    each design's label and document; ``result`` the projections as JSON."""

    __tablename__ = "simulator_runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name="ck_simulator_runs_status"
        ),
        Index("ix_simulator_runs_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    as_of: Mapped[datetime]
    orders_name: Mapped[str] = mapped_column(String(255))
    orders_bytes: Mapped[int] = mapped_column(BigInteger)
    orders_csv: Mapped[bytes | None] = mapped_column(LargeBinary)
    designs: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1000))
