from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

SEGMENT_SOURCES = ("programme", "api")
SEGMENT_KINDS = ("dynamic", "static")


class Segment(Base):
    """Every segment, listed together: those shipped in the programme (``source`` =
    ``programme``, mirrored here on each recompute, read-only over the API) and those made
    over the API or console (``api``). ``definition`` is the validated
    :class:`lealta.segments.schema.Segment` as JSON."""

    __tablename__ = "segments"
    __table_args__ = (
        CheckConstraint("source IN ('programme', 'api')", name="ck_segments_source"),
        CheckConstraint("kind IN ('dynamic', 'static')", name="ck_segments_kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    member_count: Mapped[int] = mapped_column(default=0)
    computed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SegmentMember(Base):
    """A member currently in a segment, since ``entered_at``. Kept set-wise by the
    recompute (INSERT the new, DELETE the gone) and member by member on events."""

    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_member", "member_id", "segment_id"),)

    segment_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    entered_at: Mapped[datetime]


class SegmentCount(Base):
    """A segment's size at the end of each day it was computed (the console's sparkline)."""

    __tablename__ = "segment_counts"

    segment_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    members: Mapped[int] = mapped_column(default=0)
