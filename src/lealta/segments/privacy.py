"""Segments in the GDPR documents: the segments a member is in appear in their data export,
and erasure takes them out of every segment (a group they were profiled into is personal
data; the daily counts stay, they name no one)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lealta.models import Segment, SegmentMember
from lealta.privacy import registry


@registry.eraser("segments.memberships")
def erase_memberships(session: Session, member_id: int, now: datetime) -> None:
    session.execute(delete(SegmentMember).where(SegmentMember.member_id == member_id))


@registry.exporter("segments")
def export_segments(session: Session, member_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Segment.key, SegmentMember.entered_at)
        .join(SegmentMember, SegmentMember.segment_id == Segment.id)
        .where(SegmentMember.member_id == member_id)
        .order_by(Segment.key)
    )
    return [{"segment": key, "entered_at": at.isoformat()} for key, at in rows]
