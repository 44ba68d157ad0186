"""Non-member orders in the GDPR documents: a member who bought before joining has those
orders in their export, and erasure deletes them (they earned nothing and feed only the
non-member figures)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lealta.models import Member, NonMemberEvent
from lealta.privacy import registry


def _customer(session: Session, member_id: int) -> str | None:
    return session.scalar(select(Member.external_id).where(Member.id == member_id))


@registry.eraser("nonmembers.orders")
def erase_orders(session: Session, member_id: int, now: datetime) -> None:
    customer = _customer(session, member_id)
    if customer is not None:
        session.execute(delete(NonMemberEvent).where(NonMemberEvent.customer_id == customer))


@registry.exporter("orders_before_joining")
def export_orders(session: Session, member_id: int) -> list[dict[str, Any]]:
    customer = _customer(session, member_id)
    rows = session.scalars(
        select(NonMemberEvent)
        .where(NonMemberEvent.customer_id == customer)
        .order_by(NonMemberEvent.occurred_at, NonMemberEvent.id)
    )
    return [
        {
            "type": r.event_type,
            "order_id": r.order_ref,
            "amount_minor": r.amount_minor,
            "currency": r.currency,
            "occurred_at": r.occurred_at.isoformat(),
        }
        for r in rows
    ]
