"""Segments in the background: the nightly set-wise recompute, and each member's segments
re-evaluated when something about them changes (an outbox subscriber, backfill included:
imported orders move members between segments too)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lealta.jobs.dispatch import OutboxInfo
from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import JobContext, task
from lealta.kit.logging import get_logger
from lealta.models import Segment
from lealta.outbox.events import (
    EventProcessed,
    MemberEnrolled,
    OrderPaid,
    OrderRefunded,
    PointsExpired,
    PointsReleased,
    RewardRedeemed,
    TierChanged,
)
from lealta.outbox.subscribers import subscribe
from lealta.programme import service as programmes
from lealta.segments import service

log = get_logger("lealta.segments")

RECOMPUTE_TASK = "segments.recompute"
NIGHTLY = "30 3 * * *"
TRIGGERS = (
    OrderPaid,
    OrderRefunded,
    TierChanged,
    PointsReleased,
    PointsExpired,
    RewardRedeemed,
    MemberEnrolled,
    EventProcessed,
)
"""Changes that can move a member between segments (custom events: reviews, referrals)."""


def _any_dynamic(session: Session) -> bool:
    return (
        session.scalar(
            select(Segment.id)
            .where(Segment.kind == "dynamic", Segment.computed_at.is_not(None))
            .limit(1)
        )
        is not None
    )


@periodic(RECOMPUTE_TASK, NIGHTLY, transactional=False, timeout=3600.0)
def recompute(ctx: JobContext) -> None:
    """Mirror the programme's segments and recompute every one, each in its own transaction."""
    with ctx.db.unit_of_work() as session:
        programme = programmes.current(session, now=ctx.now)
        service.sync_programme(session, programme, now=ctx.now)
        keys = [r.key for r in service.list_segments(session)]
    for key in keys:
        with ctx.db.unit_of_work() as session:
            row = session.scalar(select(Segment).where(Segment.key == key))
            if row is None:  # deleted meanwhile
                continue
            done = service.recompute(session, row, now=ctx.now, currency=programme.currency)
        log.info("segment_recomputed", key=key, members=done.members,
                 entered=done.entered, left=done.left)  # fmt: skip


def _on_change(ctx: JobContext, event: Any, info: OutboxInfo) -> None:
    if info.member_id is None:
        return
    session = ctx.require_session()
    service.reevaluate_member(session, info.member_id, now=ctx.now)


for _event in TRIGGERS:
    subscribe(_event, name="segments.member", include_backfill=True, wanted=_any_dynamic)(
        _on_change
    )


@task("segments.recompute_one", transactional=False, timeout=3600.0)
def recompute_one(ctx: JobContext, key: str) -> None:
    """Recompute one segment (after it is created or edited, or on request)."""
    try:
        with ctx.db.unit_of_work() as session:
            done = service.recompute_all(session, now=ctx.now, keys=[key])
    except service.SegmentNotFound:
        return  # deleted since it was enqueued
    log.info("segment_recomputed", key=key, members=done[0].members,
             entered=done[0].entered, left=done[0].left)  # fmt: skip
