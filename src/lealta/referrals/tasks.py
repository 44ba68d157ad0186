"""Referral work in the background: claims from sign-ups and orders, refunds, and the
periodic qualification of referrals whose qualifying order cleared the return window."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from lealta.jobs.dispatch import OutboxInfo
from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import JobContext
from lealta.kit.errors import LealtaError
from lealta.kit.logging import get_logger
from lealta.members import service as members
from lealta.models import Member
from lealta.outbox.events import MemberEnrolled, OrderPaid, OrderRefunded
from lealta.outbox.subscribers import subscribe
from lealta.programme import service as programmes
from lealta.referrals import service

log = get_logger("lealta.referrals")

QUALIFY_TASK = "referrals.qualify"


def _member(session: Session, info: OutboxInfo, customer_id: str) -> Member | None:
    if info.member_id is not None:
        return session.get(Member, info.member_id)
    return members.find(session, customer_id)


@subscribe(MemberEnrolled, name="referrals.enrolled")
def on_enrolled(ctx: JobContext, event: MemberEnrolled, info: OutboxInfo) -> None:
    """A member enrolled with a referral code: record the referral."""
    if not event.referral_code:
        return
    session = ctx.require_session()
    programme = programmes.current(session, now=ctx.now)
    member = _member(session, info, event.customer_id)
    if member is None or not programme.referrals.enabled:
        return
    try:
        with session.begin_nested():  # a refused claim leaves nothing half-written
            service.claim(
                session,
                member,
                event.referral_code,
                channel="signup",
                now=ctx.now,
                programme=programme,
                order_at=event.at,
            )
    except LealtaError as exc:
        log.info("referral_not_claimed", customer=event.customer_id, code=exc.code)


@subscribe(OrderPaid, name="referrals.order_paid")
def on_order_paid(ctx: JobContext, event: OrderPaid, info: OutboxInfo) -> None:
    """An order may carry ``properties.referral_code`` and may be a referred friend's first
    qualifying order."""
    session = ctx.require_session()
    programme = programmes.current(session, now=ctx.now)
    if not programme.referrals.enabled:
        return
    member = _member(session, info, event.customer_id)
    payload = service.stored_payload(session, event.event_id)
    if member is None or payload is None:
        return
    try:
        with session.begin_nested():
            service.claim_from_order(session, member, payload, programme, now=ctx.now)
    except LealtaError as exc:
        log.info("referral_not_claimed", customer=event.customer_id, code=exc.code)


@subscribe(OrderRefunded, name="referrals.order_refunded")
def on_order_refunded(ctx: JobContext, event: OrderRefunded, info: OutboxInfo) -> None:
    """A refund of a referral's qualifying order voids or reverses it (once)."""
    session = ctx.require_session()
    payload = service.stored_payload(session, event.event_id)
    refund = (payload or {}).get("refund") or {}
    order_id = refund.get("order_id") if isinstance(refund, dict) else None
    if not isinstance(order_id, str):
        return
    programme = programmes.current(session, now=ctx.now)
    service.on_refund(session, order_id, programme, now=ctx.now)


@periodic(QUALIFY_TASK, "7 * * * *")
def qualify(ctx: JobContext) -> None:
    """Hourly: reward the referrals whose qualifying order cleared the return window."""
    session = ctx.require_session()
    run(session, now=ctx.now)


def run(session: Session, *, now: datetime) -> service.QualifyReport:
    programme = programmes.current(session, now=now)
    report = service.qualify_due(session, programme, now=now)
    if report.rewarded or report.voided:
        log.info("referrals_qualified", rewarded=len(report.rewarded), voided=len(report.voided))
    return report
