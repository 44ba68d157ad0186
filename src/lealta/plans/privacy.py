"""Paid plans in the GDPR documents: the member's subscriptions in their data export; on
erasure a live plan ends at once, here and at the payment provider (a job enqueued in the
erasure's transaction, retried until the provider confirms: the member is never charged
again), and the payments stay, for the accounts, with their payloads scrubbed of the
member's identifiers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lealta.jobs import queue
from lealta.models import PlanSubscription
from lealta.models.plan import LIVE_STATUSES
from lealta.plans.tasks import PROVIDER_CANCEL_TASK
from lealta.privacy import registry

registry.scrub_columns("plan_payments", "payload", member_column=None)


@registry.eraser("plans.subscriptions")
def end_plans(session: Session, member_id: int, now: datetime) -> None:
    live = session.execute(
        select(PlanSubscription.id, PlanSubscription.provider_ref)
        .where(PlanSubscription.member_id == member_id)
        .where(PlanSubscription.status.in_(LIVE_STATUSES))
    ).all()
    for subscription_id, provider_ref in live:
        if provider_ref:
            queue.enqueue(
                session,
                PROVIDER_CANCEL_TASK,
                {"provider_ref": provider_ref},
                now=now,
                dedupe_key=f"plans.erasure-cancel:{subscription_id}",
            )
    session.execute(
        update(PlanSubscription)
        .where(PlanSubscription.member_id == member_id)
        .where(PlanSubscription.status.in_(LIVE_STATUSES))
        .values(status="canceled", ended_at=now, canceled_at=now, benefits_until=now,
                checkout_url=None, updated_at=now)
    )  # fmt: skip


@registry.exporter("plans")
def export_plans(session: Session, member_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(PlanSubscription)
        .where(PlanSubscription.member_id == member_id)
        .order_by(PlanSubscription.id)
    )
    return [
        {
            "plan": s.plan_id,
            "status": s.status,
            "started_at": s.started_at.isoformat(),
            "benefits_until": s.benefits_until.isoformat() if s.benefits_until else None,
            "ended_at": s.ended_at.isoformat() if s.ended_at else None,
        }
        for s in rows
    ]
