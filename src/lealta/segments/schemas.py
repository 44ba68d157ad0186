"""API shapes of segments, previews, memberships."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from lealta.kit.ids import ExternalId
from lealta.segments.schema import Segment as SegmentDef


class SegmentOut(BaseModel):
    key: str
    source: Literal["programme", "api"]
    kind: Literal["dynamic", "static"]
    members: int
    computed_at: datetime | None
    definition: SegmentDef
    counts: list[int] = Field(default_factory=list, description="Daily counts, oldest first.")
    created_at: datetime
    updated_at: datetime


class SegmentList(BaseModel):
    items: list[SegmentOut]


class PreviewOut(BaseModel):
    count: int
    sample: list[str] = Field(description="Up to 10 customer ids of matching members.")
    entering: int = Field(description="Would enter, compared with the saved segment.")
    leaving: int = Field(description="Would leave, compared with the saved segment.")
    current: int = Field(description="Members of the saved segment now (0 if unsaved).")


class RecomputeOut(BaseModel):
    job_id: int


class UploadIn(BaseModel):
    customer_ids: Annotated[list[ExternalId], Field(max_length=100_000)]
    mode: Literal["replace", "add", "remove"] = "replace"


class UploadOut(BaseModel):
    members: int
    entered: int
    left: int
    unknown: list[str]


class SegmentMemberOut(BaseModel):
    customer_id: str
    entered_at: datetime


class SegmentMemberPage(BaseModel):
    items: list[SegmentMemberOut]
    next_cursor: str | None


class MemberSegmentOut(BaseModel):
    key: str
    entered_at: datetime


class MemberSegmentList(BaseModel):
    items: list[MemberSegmentOut]
