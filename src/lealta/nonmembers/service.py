"""Orders and refunds of customers who are not members, recorded for the dashboard.

With implicit enrolment off (``LEALTA_AUTO_ENROL=false``) an ``order.paid`` or
``order.refunded`` naming an unknown customer is not refused: it is kept here, earns nothing,
and answers ``202`` with ``"member": false``. Other events of unknown customers are still
``404 member_not_found``. Idempotent like member events: the same event again replays the
first answer, the same id with another body is ``409 event_id_reused``. A customer who joins
later keeps these orders as their history before joining (the figures count a customer as a
non-member only while no member has their id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, case, func, or_, select
from sqlalchemy.orm import Session

from lealta.engine.errors import (
    OrderAlreadyRecorded,
    OrderNotFound,
    RefundBeforeOrder,
    RefundExceedsOrder,
)
from lealta.events.schemas import ORDER_PAID, ORDER_REFUNDED, EventIn
from lealta.kit.db import insert_ignoring
from lealta.kit.errors import Conflict, InvalidInput
from lealta.kit.idempotency import Outcome
from lealta.kit.money import check_max_amount, from_minor, normalise_currency, to_minor
from lealta.models import Member, NonMemberEvent

TYPES = (ORDER_PAID, ORDER_REFUNDED)
_table = cast(Table, NonMemberEvent.__table__)


@dataclass(frozen=True, slots=True)
class Context:
    currency: str
    max_amount: Decimal
    now: datetime


def applies(event: EventIn) -> bool:
    """Whether an event of an unknown customer is kept as a non-member's."""
    return event.type in TYPES


def _check_currency(ctx: Context, currency: str) -> str:
    code = normalise_currency(currency)
    if code != ctx.currency:
        raise InvalidInput(
            f"The programme runs in {ctx.currency}; this amount is in {code}.",
            code="currency_mismatch",
            details={"expected": ctx.currency, "got": code},
        )
    return code


def _paid_row(session: Session, customer_id: str, order_ref: str) -> Any:
    return session.execute(
        select(_table.c.amount_minor, _table.c.occurred_at).where(
            _table.c.customer_id == customer_id,
            _table.c.order_ref == order_ref,
            _table.c.event_type == ORDER_PAID,
        )
    ).first()


def _refunded(session: Session, customer_id: str, order_ref: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(_table.c.amount_minor), 0)).where(
            _table.c.customer_id == customer_id,
            _table.c.order_ref == order_ref,
            _table.c.event_type == ORDER_REFUNDED,
        )
    )
    return int(total or 0)


def _values(session: Session, event: EventIn, ctx: Context) -> dict[str, Any]:
    at = event.occurred_at
    if event.type == ORDER_PAID:
        assert event.order is not None
        currency = _check_currency(ctx, event.order.currency)
        amount = check_max_amount(
            to_minor(event.order.total, currency, field="order.total"), currency, ctx.max_amount,
            field="order.total",
        )  # fmt: skip
        if _paid_row(session, event.customer_id, event.order.id) is not None:
            raise OrderAlreadyRecorded(
                f"Order '{event.order.id}' is already recorded.",
                details={"order_id": event.order.id},
            )
        return {"order_ref": event.order.id, "amount_minor": amount, "currency": currency,
                "order_occurred_at": at}  # fmt: skip
    assert event.refund is not None
    order_ref = event.refund.order_id
    paid = _paid_row(session, event.customer_id, order_ref)
    if paid is None:
        raise OrderNotFound(
            f"No order '{order_ref}' of this customer to refund.", details={"order_id": order_ref}
        )
    order_at = (
        paid.occurred_at if paid.occurred_at.tzinfo else paid.occurred_at.replace(tzinfo=at.tzinfo)
    )
    if at < order_at:
        raise RefundBeforeOrder("A refund cannot come before its order.")
    left = paid.amount_minor - _refunded(session, event.customer_id, order_ref)
    currency = ctx.currency
    if event.refund.amount is None:
        amount = left
    else:
        currency = _check_currency(ctx, event.refund.currency or ctx.currency)
        amount = to_minor(event.refund.amount, currency, field="refund.amount")
    if amount > left:
        raise RefundExceedsOrder(
            "The refund is larger than what is left of the order.",
            details={"left": str(from_minor(left, currency))},
        )
    return {"order_ref": order_ref, "amount_minor": amount, "currency": currency,
            "order_occurred_at": order_at}  # fmt: skip


def record(session: Session, event: EventIn, ctx: Context, *, key: str, digest: str) -> Outcome:
    """Keep one non-member order or refund (``202``), or replay the first answer."""
    found = _replay(session, key, event.id, digest)
    if found is not None:
        return found
    values = _values(session, event, ctx)
    body = {
        "id": event.id,
        "type": event.type,
        "customer_id": event.customer_id,
        "member": False,
        "order_id": values["order_ref"],
        "amount": str(from_minor(values["amount_minor"], values["currency"])),
        "currency": values["currency"],
        "points": 0,
    }
    inserted = session.execute(
        insert_ignoring(session, _table)
        .values(
            idempotency_key=key,
            external_id=event.id or key,
            event_type=event.type,
            customer_id=event.customer_id,
            occurred_at=event.occurred_at,
            received_at=ctx.now,
            request_hash=digest,
            response=body,
            **values,
        )
        .returning(_table.c.id)
    ).scalar_one_or_none()
    if inserted is None:  # a concurrent request with the same key or id won
        found = _replay(session, key, event.id, digest)
        if found is None:  # pragma: no cover - the other transaction rolled back
            raise Conflict("A concurrent request failed; retry.", code="idempotency_retry")
        return found
    return Outcome(202, body, replayed=False)


def _replay(session: Session, key: str, event_id: str | None, digest: str) -> Outcome | None:
    clauses = [_table.c.idempotency_key == key, _table.c.external_id == (event_id or key)]
    rows = session.execute(
        select(_table.c.idempotency_key, _table.c.request_hash, _table.c.response).where(
            or_(*clauses)
        )
    ).all()
    if not rows:
        return None
    for row in rows:
        if row.request_hash == digest:
            return Outcome(202, row.response, replayed=True)
    if any(row.idempotency_key == key for row in rows):
        raise Conflict(
            "This idempotency key was already used with a different request.",
            code="idempotency_key_reused",
        )
    raise Conflict(
        f"Event id '{event_id}' was already used with a different body.", code="event_id_reused"
    )


def non_members(session: Session) -> Any:
    """A subquery of the rows of customers who are not members (now)."""
    enrolled = select(Member.external_id)
    return select(_table).where(_table.c.customer_id.not_in(enrolled)).subquery()


@dataclass(frozen=True, slots=True)
class Figures:
    """What the dashboard needs of non-members for one period ``[start, end)``."""

    customers: int
    """Non-member customers with an order before ``end``."""
    previous_active: int
    """With an order in the period of the same length just before."""
    retained: int
    """Of those, the ones with an order in this period too."""
    buyers_to_date: int
    revenue_to_date_minor: int
    """Orders minus refunds up to ``end`` (refunds on the day of their order)."""


def figures(session: Session, *, start: datetime, end: datetime) -> Figures:
    """Non-member figures from their orders (customers who joined since are left out)."""
    rows = non_members(session)
    previous_start = start - (end - start)
    paid = rows.c.event_type == ORDER_PAID
    until_end = rows.c.order_occurred_at < end
    in_period = paid & (rows.c.occurred_at >= start) & until_end
    in_previous = paid & (rows.c.occurred_at >= previous_start) & (rows.c.occurred_at < start)
    per_customer = (
        select(
            rows.c.customer_id,
            func.sum(case((in_period, 1), else_=0)).label("now"),
            func.sum(case((in_previous, 1), else_=0)).label("before"),
            func.sum(
                case(
                    (paid & until_end, rows.c.amount_minor),
                    (until_end, -rows.c.amount_minor),
                    else_=0,
                )
            ).label("net"),
            func.sum(case((paid & until_end, 1), else_=0)).label("orders"),
        )
        .group_by(rows.c.customer_id)
        .subquery()
    )
    both = (per_customer.c.before > 0) & (per_customer.c.now > 0)
    found = session.execute(
        select(
            func.coalesce(func.sum(case((per_customer.c.orders > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(case((per_customer.c.before > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(case((both, 1), else_=0)), 0),
            func.coalesce(func.sum(per_customer.c.net), 0),
        )
    ).one()
    customers, previous, retained, net = (int(v) for v in found)
    return Figures(
        customers=customers,
        previous_active=previous,
        retained=retained,
        buyers_to_date=customers,
        revenue_to_date_minor=net,
    )
