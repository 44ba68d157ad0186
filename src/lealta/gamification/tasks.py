"""Gamification's outbox subscribers and its periodic badge backfill.

The subscribers see backfilled history too (``include_backfill=True``): an imported member
gets the badges, challenge progress and streak their history earns, but no points for it
(see :mod:`lealta.gamification.service`). Each effect is keyed by a unique row, so the at
least once delivery of the outbox never rewards twice.
"""

from __future__ import annotations

from sqlalchemy import select

from lealta.gamification import service
from lealta.jobs.dispatch import OutboxInfo
from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import JobContext
from lealta.models import Member
from lealta.outbox.events import EventProcessed, OrderPaid, OrderRefunded, TierChanged
from lealta.outbox.subscribers import subscribe
from lealta.programme import service as programmes

SUBSCRIBER = "gamification"


def _member_id(ctx: JobContext, info: OutboxInfo, customer_id: str | None) -> int | None:
    if info.member_id is not None:
        return info.member_id
    if customer_id is None:
        return None
    found: int | None = ctx.require_session().scalar(
        select(Member.id).where(Member.external_id == customer_id)
    )
    return found


@subscribe(OrderPaid, name=SUBSCRIBER, include_backfill=True)
def on_order_paid(ctx: JobContext, event: OrderPaid, info: OutboxInfo) -> None:
    _on_event(ctx, info, OrderPaid.TYPE, event.event_id, event.customer_id)


@subscribe(EventProcessed, name=SUBSCRIBER, include_backfill=True)
def on_custom_event(ctx: JobContext, event: EventProcessed, info: OutboxInfo) -> None:
    _on_event(ctx, info, event.event_type, event.event_id, event.customer_id)


def _on_event(
    ctx: JobContext, info: OutboxInfo, event_type: str, key: str, customer_id: str
) -> None:
    member_id = _member_id(ctx, info, customer_id)
    if member_id is None:
        return
    session = ctx.require_session()
    programme = programmes.current(session, now=ctx.now)
    if not (programme.badges or programme.challenges or programme.streaks):
        return
    happened = service.happened(session, event_type, key, info.created_at, backfill=info.backfill)
    service.process(session, programme, member_id, happened, now=ctx.now)


@subscribe(OrderRefunded, name=SUBSCRIBER, include_backfill=True)
def on_order_refunded(ctx: JobContext, event: OrderRefunded, info: OutboxInfo) -> None:
    """A refund takes back what its order counted toward challenges (see
    :func:`lealta.gamification.service.revoke_challenges`)."""
    member_id = _member_id(ctx, info, event.customer_id)
    if member_id is None:
        return
    session = ctx.require_session()
    programme = programmes.current(session, now=ctx.now)
    member = session.get(Member, member_id)
    if member is None or not programme.challenges:
        return
    refund = service.happened(
        session, OrderRefunded.TYPE, event.event_id, info.created_at, backfill=info.backfill
    )
    service.revoke_challenges(session, programme, member, refund, now=ctx.now)


@subscribe(TierChanged, name=SUBSCRIBER, include_backfill=True)
def on_tier_changed(ctx: JobContext, event: TierChanged, info: OutboxInfo) -> None:
    if info.member_id is None:
        return
    session = ctx.require_session()
    programme = programmes.current(session, now=ctx.now)
    member = session.get(Member, info.member_id)
    if member is not None and programme.badges:
        service.evaluate_badges(session, programme, member, now=ctx.now, backfill=info.backfill)


@periodic("gamification.backfill_badges", "23 * * * *", timeout=1800.0)
def backfill_badges(ctx: JobContext) -> None:
    """Hourly: a badge added to the programme reaches every member who already qualifies."""
    session = ctx.require_session()
    programme = programmes.current(session, now=ctx.now)
    if programme.badges:
        service.backfill_badges(session, programme, now=ctx.now)
