from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lealta.kit.ids import ExternalId
from lealta.members.schemas import AttributeValue, Tag
from lealta.models import BulkOperation, BulkOperationRow

MAX_API_ROWS = 10_000
"""Rows per API request; larger lists go in several operations, or through the CLI."""

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PointsRow(_Strict):
    external_id: ExternalId
    points: int = Field(description="Positive to credit, negative to debit; never 0.")
    reason: Reason | None = Field(default=None, description="Defaults to the request's reason.")


class BulkPointsIn(_Strict):
    reason: Reason | None = Field(default=None, description="For rows without their own.")
    rows: list[PointsRow] = Field(min_length=1, max_length=MAX_API_ROWS)


class TagsRow(_Strict):
    external_id: ExternalId
    add: list[Tag] = Field(default_factory=list, max_length=100)
    remove: list[Tag] = Field(default_factory=list, max_length=100)


class BulkTagsIn(_Strict):
    reason: Reason | None = None
    rows: list[TagsRow] = Field(min_length=1, max_length=MAX_API_ROWS)


class AttributesRow(_Strict):
    external_id: ExternalId
    attributes: dict[Annotated[str, StringConstraints(max_length=64)], AttributeValue] = Field(
        min_length=1, max_length=100, description="Values to set; null removes an attribute."
    )


class BulkAttributesIn(_Strict):
    reason: Reason | None = None
    rows: list[AttributesRow] = Field(min_length=1, max_length=MAX_API_ROWS)


class TierRow(_Strict):
    external_id: ExternalId
    tier: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    reason: Reason | None = None


class BulkTiersIn(_Strict):
    reason: Reason = Field(description="Why these members move (required, audited).")
    rows: list[TierRow] = Field(min_length=1, max_length=MAX_API_ROWS)


class BulkOperationOut(BaseModel):
    """A bulk operation: its progress while the job runs, its totals once ``done``."""

    id: int
    kind: Literal["points", "tags", "attributes", "tier"]
    status: Literal["queued", "running", "done", "failed"]
    reason: str | None
    source: str
    total_rows: int
    processed_rows: int
    applied_rows: int
    rejected_rows: int
    points_applied: int
    progress: float = Field(description="processed_rows / total_rows, 0 to 1.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    report_url: str = Field(description="The per-row report as CSV.")

    @classmethod
    def of(cls, op: BulkOperation) -> BulkOperationOut:
        return cls(
            id=op.id,
            kind=op.kind,
            status=op.status,
            reason=op.reason,
            source=op.source,
            total_rows=op.total_rows,
            processed_rows=op.processed_rows,
            applied_rows=op.applied_rows,
            rejected_rows=op.rejected_rows,
            points_applied=op.points_applied,
            progress=round(op.processed_rows / op.total_rows, 4) if op.total_rows else 1.0,
            created_at=op.created_at,
            started_at=op.started_at,
            finished_at=op.finished_at,
            report_url=f"/v1/bulk/{op.id}/report.csv",
        )


class BulkRowOut(BaseModel):
    line: int
    external_id: str
    status: Literal["pending", "applied", "rejected"]
    code: str | None
    message: str | None
    entry_id: int | None
    input: dict[str, Any]

    @classmethod
    def of(cls, row: BulkOperationRow) -> BulkRowOut:
        return cls(
            line=row.line,
            external_id=row.external_id,
            status=row.status,
            code=row.code,
            message=row.message,
            entry_id=row.entry_id,
            input=row.payload,
        )


class BulkRowPage(BaseModel):
    items: list[BulkRowOut]
    next_after_line: int | None = Field(description="Pass back as `after_line` for more.")
