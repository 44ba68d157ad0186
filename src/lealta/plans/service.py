"""Paid plans: subscribe, learn from the provider's webhooks, cancel, and end plans on time.

A subscription's ``benefits_until`` says until when the plan's benefits hold: the trial's
end, then the end of each paid period, then that end plus ``grace_days`` after a failed
renewal. The member row mirrors it (``plan_id``, ``plan_until``) so the engine reads it with
the profile: a tier floor lifts the member, a multiplier adds to an order's base points.
Every change of the benefits runs :func:`lealta.engine.core.plan_changed` under the
member's account lock in the same transaction, so tier moves are ledgered like any other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.engine import core as engine
from lealta.events import store
from lealta.events.service import no_crossings, run_loading
from lealta.kit.errors import Conflict, InvalidInput, NotFound
from lealta.kit.logging import get_logger
from lealta.kit.money import exponent
from lealta.kit.periods import add_months
from lealta.members import service as members
from lealta.models import Member, PlanPayment, PlanSubscription
from lealta.models.plan import LIVE_STATUSES
from lealta.plans.provider import PaymentProvider, ProviderEvent
from lealta.plans.schema import Plan
from lealta.programme.schema import Programme

log = get_logger("lealta.plans")

SWEEP_BATCH = 200
"""Subscriptions ended or moved to grace per sweep job (the next tick takes the rest)."""
CHECKOUT_DAYS = 2
"""An ``incomplete`` subscription (checkout never paid) expires after this many days."""

_subs = cast(Table, PlanSubscription.__table__)


class NoPlan(NotFound):
    code = "no_plan"


def _to_minor(amount: object, currency: str) -> int:
    return int((Decimal(str(amount)) * (10 ** exponent(currency))).to_integral_value())


def period_after(start: datetime, period: str) -> datetime:
    """The end of a billing period that starts at ``start``."""
    return add_months(start, 12 if period == "year" else 1)


def plan_of(programme: Programme, plan_id: str) -> Plan:
    plan = programme.plan(plan_id)
    if plan is None:
        raise InvalidInput(
            f"'{plan_id}' is not a plan of the programme.",
            code="unknown_plan",
            details={"plan": plan_id, "plans": [p.id for p in programme.plans]},
        )
    return plan


def live(session: Session, member_id: int) -> PlanSubscription | None:
    """The member's live subscription (at most one), if any."""
    return session.scalars(
        select(PlanSubscription).where(
            PlanSubscription.member_id == member_id, PlanSubscription.status.in_(LIVE_STATUSES)
        )
    ).first()


def history(session: Session, member_id: int, *, limit: int = 20) -> list[PlanSubscription]:
    return list(
        session.scalars(
            select(PlanSubscription)
            .where(PlanSubscription.member_id == member_id)
            .order_by(PlanSubscription.id.desc())
            .limit(limit)
        )
    )


def _benefits(
    session: Session,
    programme: Programme,
    member: Member,
    sub: PlanSubscription,
    *,
    at: datetime,
    now: datetime | None = None,
) -> None:
    """Mirror ``sub``'s benefits on the member and let the engine act on them at ``at``
    (recorded at ``now``, default ``at``)."""
    old_plan = programme.plan(member.plan_id) if member.plan_id else None
    holds = sub.status in LIVE_STATUSES and sub.benefits_until is not None
    until = sub.benefits_until if holds and sub.benefits_until and sub.benefits_until > at else None
    member.plan_id = sub.plan_id if until is not None else None
    member.plan_until = until
    session.flush()
    ended_floor = old_plan.tier_floor if old_plan is not None and until is None else None
    loaded = store.lock_and_load(session, None, at, member_id=member.id).state
    assert loaded is not None
    outcome = run_loading(
        session,
        programme,
        loaded,
        lambda s: engine.plan_changed(programme, s, at=at, ended_floor=ended_floor),
        at=at,
    )
    store.write_all(
        session, [(member.id, outcome)], now=now or at, backfill=False, on_crossing=no_crossings
    )


@dataclass(frozen=True, slots=True)
class Subscribed:
    subscription: PlanSubscription
    created: bool


def subscribe(
    session: Session,
    provider: PaymentProvider,
    programme: Programme,
    *,
    external_id: str,
    plan_id: str,
    actor: str,
    now: datetime,
) -> PlanSubscription:
    """Open a subscription at the provider and record it: ``trialing`` with the benefits at
    once when the plan has a trial, else ``incomplete`` until the first payment arrives."""
    plan = plan_of(programme, plan_id)
    if not plan.active:
        raise Conflict(f"The plan '{plan_id}' takes no new members.", code="plan_closed")
    member = members.get(session, external_id)
    current = live(session, member.id)
    if current is not None:
        raise Conflict(
            "The member already has a plan; cancel it first.",
            code="plan_already_active",
            details={"plan": current.plan_id, "status": current.status},
        )
    opened = provider.open(
        key=f"lealta-plan-{member.id}-{plan.id}-{secrets.token_hex(6)}",
        customer=external_id,
        plan=plan.id,
        amount=plan.fee,
        currency=programme.currency,
        interval=plan.period,
        trial_days=plan.trial_days,
    )
    trial_end = now + timedelta(days=plan.trial_days) if plan.trial_days else None
    sub = PlanSubscription(
        member_id=member.id,
        plan_id=plan.id,
        status="trialing" if trial_end else "incomplete",
        provider=provider.name,
        provider_ref=opened.ref,
        fee_minor=_to_minor(plan.fee, programme.currency),
        currency=programme.currency,
        period=plan.period,
        started_at=now,
        trial_ends_at=trial_end,
        current_period_start=now if trial_end else None,
        current_period_end=trial_end,
        benefits_until=trial_end,
        cancel_at_period_end=False,
        checkout_url=opened.checkout_url,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(sub)
            session.flush()
    except IntegrityError:
        # Another request subscribed the member meanwhile: undo ours at the provider.
        provider.cancel(opened.ref, at_period_end=False)
        raise Conflict(
            "The member already has a plan; cancel it first.", code="plan_already_active"
        ) from None
    if trial_end is not None:
        _benefits(session, programme, member, sub, at=now)
    audit.record(
        session, actor=actor, action="plan.subscribe", target_type="member",
        target_id=external_id, now=now, details={"plan": plan.id, "status": sub.status},
    )  # fmt: skip
    return sub


def cancel(
    session: Session,
    provider: PaymentProvider,
    programme: Programme,
    *,
    external_id: str,
    at_period_end: bool,
    actor: str,
    now: datetime,
) -> PlanSubscription:
    """Cancel the member's plan: at the end of the paid (or trial) period, keeping the
    benefits until then, or at once."""
    member = members.get(session, external_id)
    sub = live(session, member.id)
    if sub is None:
        raise NoPlan("The member has no plan to cancel.")
    provider.cancel(sub.provider_ref, at_period_end=at_period_end)
    sub.canceled_at = now
    sub.updated_at = now
    if at_period_end and sub.benefits_until is not None and sub.benefits_until > now:
        sub.cancel_at_period_end = True
    else:
        _end(session, programme, member, sub, status="canceled", at=now)
    audit.record(
        session, actor=actor, action="plan.cancel", target_type="member",
        target_id=external_id, now=now,
        details={"plan": sub.plan_id, "at_period_end": at_period_end},
    )  # fmt: skip
    return sub


def _end(
    session: Session,
    programme: Programme,
    member: Member,
    sub: PlanSubscription,
    *,
    status: str,
    at: datetime,
    now: datetime | None = None,
) -> None:
    """End ``sub`` as of ``at`` (recorded at ``now``, default ``at``)."""
    sub.status = status
    sub.ended_at = at
    sub.updated_at = now or at
    if sub.benefits_until is None or sub.benefits_until > at:
        sub.benefits_until = at
    # The engine acts now (never before events it already applied); the member's plan ended
    # at ``at``, which is what it reads.
    _benefits(session, programme, member, sub, at=now or at)


@dataclass(frozen=True, slots=True)
class Handled:
    outcome: str
    """``applied``, ``duplicate`` or ``ignored`` (an event about an ended subscription)."""
    subscription_id: int | None


def handle(
    session: Session, programme: Programme, provider: str, event: ProviderEvent, *, now: datetime
) -> Handled:
    """Apply one verified provider event, once (its id is recorded with the payment)."""
    sub = session.scalars(
        select(PlanSubscription)
        .where(PlanSubscription.provider == provider)
        .where(PlanSubscription.provider_ref == event.subscription)
        .with_for_update()
    ).first()
    if sub is None:
        raise Conflict(
            "No subscription has this reference (yet); the provider should retry.",
            code="unknown_subscription",
            details={"subscription": event.subscription},
        )
    seen = session.scalar(
        select(PlanPayment.id).where(
            PlanPayment.provider == provider, PlanPayment.provider_event_id == event.id
        )
    )
    if seen is not None:
        return Handled("duplicate", sub.id)
    if event.type != "subscription.canceled":
        payment = PlanPayment(
            subscription_id=sub.id,
            provider=provider,
            provider_event_id=event.id,
            outcome="paid" if event.type == "invoice.paid" else "failed",
            amount_minor=_to_minor(event.amount, event.currency or sub.currency),
            currency=event.currency or sub.currency,
            period_start=event.period_start,
            period_end=event.period_end,
            occurred_at=event.occurred_at,
            received_at=now,
            payload=event.payload,
        )
    else:
        payment = PlanPayment(
            subscription_id=sub.id, provider=provider, provider_event_id=event.id,
            outcome="failed", amount_minor=0, currency=sub.currency, period_start=None,
            period_end=None, occurred_at=event.occurred_at, received_at=now,
            payload=event.payload,
        )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(payment)
            session.flush()
    except IntegrityError:
        return Handled("duplicate", sub.id)
    if sub.status not in LIVE_STATUSES:
        return Handled("ignored", sub.id)
    member = session.get(Member, sub.member_id)
    assert member is not None
    plan = programme.plan(sub.plan_id)
    grace = timedelta(days=plan.grace_days if plan is not None else 0)
    sub.updated_at = now
    if event.type == "invoice.paid":
        assert event.period_start is not None and event.period_end is not None
        sub.status = "active"
        sub.current_period_start = event.period_start
        sub.current_period_end = event.period_end
        sub.benefits_until = max(event.period_end, sub.benefits_until or event.period_end)
    elif event.type == "invoice.payment_failed":
        if sub.status == "incomplete":
            # The first payment failed: nothing to keep; the member may retry the checkout.
            return Handled("applied", sub.id)
        sub.status = "past_due"
        base = sub.current_period_end or now
        sub.benefits_until = max(base, now) + grace
    else:
        _end(session, programme, member, sub, status="canceled", at=now)
        return Handled("applied", sub.id)
    _benefits(session, programme, member, sub, at=now)
    return Handled("applied", sub.id)


def sweep(session: Session, programme: Programme, *, now: datetime) -> int:
    """End the plans whose benefits ran out by ``now`` and put unpaid renewals in grace;
    up to :data:`SWEEP_BATCH` subscriptions, returns how many changed."""
    due = list(
        session.scalars(
            select(PlanSubscription)
            .where(PlanSubscription.status.in_(LIVE_STATUSES))
            .where(PlanSubscription.benefits_until <= now)
            .order_by(PlanSubscription.benefits_until, PlanSubscription.id)
            .limit(SWEEP_BATCH)
            .with_for_update(skip_locked=True)
        )
    )
    abandoned = list(
        session.scalars(
            select(PlanSubscription)
            .where(PlanSubscription.status == "incomplete")
            .where(PlanSubscription.started_at <= now - timedelta(days=CHECKOUT_DAYS))
            .order_by(PlanSubscription.id)
            .limit(SWEEP_BATCH)
            .with_for_update(skip_locked=True)
        )
    )
    for sub in abandoned:
        sub.status = "expired"
        sub.ended_at = now
        sub.updated_at = now
    for sub in due:
        member = session.get(Member, sub.member_id)
        assert member is not None
        plan = programme.plan(sub.plan_id)
        assert sub.benefits_until is not None
        lapsed_at = sub.benefits_until
        if sub.cancel_at_period_end:
            _end(session, programme, member, sub, status="canceled", at=lapsed_at, now=now)
        elif sub.status in ("active", "trialing") and plan is not None and plan.grace_days:
            # The renewal payment has not come: keep the benefits through the grace days.
            sub.status = "past_due"
            sub.benefits_until = lapsed_at + timedelta(days=plan.grace_days)
            sub.updated_at = now
            if sub.benefits_until <= now:
                _end(
                    session, programme, member, sub, status="expired", at=sub.benefits_until,
                    now=now,
                )  # fmt: skip
            else:
                _benefits(session, programme, member, sub, at=now)
        else:
            _end(session, programme, member, sub, status="expired", at=lapsed_at, now=now)
    if due or abandoned:
        log.info("plans_swept", ended_or_grace=len(due), abandoned=len(abandoned))
    return len(due) + len(abandoned)


def revenue_minor(session: Session, *, start: datetime, end: datetime) -> int:
    """Plan fees paid in ``[start, end)`` (minor units of the programme currency)."""
    total = session.scalar(
        select(func.coalesce(func.sum(PlanPayment.amount_minor), 0))
        .where(PlanPayment.outcome == "paid")
        .where(PlanPayment.occurred_at >= start, PlanPayment.occurred_at < end)
    )
    return int(total or 0)
