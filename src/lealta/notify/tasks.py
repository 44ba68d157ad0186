"""Background work of notifications: the ``notify.send`` job and the default transactional
messages, subscribed to domain events.

``LEALTA_NOTIFY_EVENTS`` turns each default on (``order.paid`` → ``points_earned``,
``tier.changed`` → ``tier_changed``, ``threshold.reached`` → ``threshold_reached``); each
sends its template by e-mail and to the in-app inbox. Workflows send richer messages through
:func:`lealta.notify.service.send_template` with their own effect keys.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lealta.jobs.dispatch import OutboxInfo
from lealta.jobs.tasks import Backoff, GiveUp, JobContext, task
from lealta.models import Coupon, Member
from lealta.notify import service
from lealta.notify.channels import DeliveryFailed
from lealta.outbox.events import OrderPaid, ThresholdReached, TierChanged
from lealta.outbox.subscribers import subscribe
from lealta.programme import service as programmes
from lealta.programme.schema import name_in

DEFAULT_CHANNELS = ("email", "inapp")
SEND_ATTEMPTS = 10


@task(
    service.SEND_TASK,
    max_attempts=SEND_ATTEMPTS,
    timeout=60,
    transactional=False,
    backoff=Backoff(30, 3600),
)
def send(ctx: JobContext, *, message_id: int) -> None:
    """Decide, render and deliver one message (see :func:`lealta.notify.service.deliver`).

    A temporary failure propagates and the job retries with backoff; the last attempt marks
    the message ``failed`` with the provider's error instead of leaving it ``queued``."""
    try:
        service.deliver(ctx.db, ctx.settings, message_id, now=ctx.now)
    except DeliveryFailed as exc:
        if ctx.attempt < SEND_ATTEMPTS:
            raise
        with ctx.db.unit_of_work() as session:
            service.give_up(session, message_id, f"gave up: {exc}", now=ctx.now)
        raise GiveUp(str(exc)) from exc


def enabled(ctx: JobContext, event_type: str) -> bool:
    """Whether the settings turn on the default message of ``event_type``."""
    chosen = {t.strip() for t in ctx.settings.notify_events.split(",") if t.strip()}
    return event_type in chosen


def _send_defaults(
    ctx: JobContext, session: Session, member_id: int, key: str, context: dict[str, Any]
) -> None:
    for channel in DEFAULT_CHANNELS:
        service.send_template(
            session,
            member_id,
            key,
            channel,
            context,
            ctx.effect_key_for(channel),
            ctx.now,
        )


def _member_id(session: Session, info: OutboxInfo, customer_id: str | None = None) -> int | None:
    if info.member_id is not None:
        return info.member_id
    if customer_id is None:
        return None
    return session.scalar(select(Member.id).where(Member.external_id == customer_id))


@subscribe(OrderPaid, name="notify.points_earned")
def on_order_paid(ctx: JobContext, event: OrderPaid, info: OutboxInfo) -> None:
    if not enabled(ctx, OrderPaid.TYPE) or event.points_delta <= 0:
        return
    session = ctx.require_session()
    member_id = _member_id(session, info, event.customer_id)
    if member_id is not None:
        _send_defaults(ctx, session, member_id, "points_earned", {"points": event.points_delta})


@subscribe(TierChanged, name="notify.tier_changed")
def on_tier_changed(ctx: JobContext, event: TierChanged, info: OutboxInfo) -> None:
    if not enabled(ctx, TierChanged.TYPE) or event.direction != "upgrade":
        return
    session = ctx.require_session()
    member_id = _member_id(session, info)
    if member_id is not None:
        _send_defaults(ctx, session, member_id, "tier_changed", {"direction": event.direction})


@subscribe(ThresholdReached, name="notify.threshold_reached")
def on_threshold_reached(ctx: JobContext, event: ThresholdReached, info: OutboxInfo) -> None:
    if not enabled(ctx, ThresholdReached.TYPE):
        return
    session = ctx.require_session()
    member_id = _member_id(session, info)
    if member_id is None:
        return
    member = session.get(Member, member_id)
    lang = member.language if member is not None else "es"
    programme = programmes.current(session, now=ctx.now)
    reward = programme.reward(event.reward_id)
    context: dict[str, Any] = {
        "crossed": str(event.crossed),
        "reward": {"id": event.reward_id, "name": name_in(reward.name, lang) if reward else ""},
        "coupon": None,
    }
    if event.coupon_code:
        coupon = session.scalar(select(Coupon).where(Coupon.code == event.coupon_code))
        context["coupon"] = {
            "code": event.coupon_code,
            "expires_at": coupon.valid_until.isoformat() if coupon else None,
        }
    _send_defaults(ctx, session, member_id, "threshold_reached", context)
