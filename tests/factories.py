"""Small builders used across tests: event payloads, members, console users."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.staff import service as staff_users
from tests.conftest import T0

PASSWORD = "correct horse battery"


def order_paid(
    event_id: str, customer: str, order_id: str, total: str, at: datetime, **extra: Any
) -> dict[str, Any]:
    order: dict[str, Any] = {
        "id": order_id,
        "total": total,
        "currency": extra.pop("currency", "EUR"),
    }
    if "items" in extra:
        order["items"] = extra.pop("items")
    return {
        "id": event_id,
        "type": "order.paid",
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "order": order,
        **extra,
    }


def order_refunded(
    event_id: str, customer: str, order_id: str, at: datetime, amount: str | None = None
) -> dict[str, Any]:
    refund: dict[str, Any] = {"order_id": order_id}
    if amount is not None:
        refund["amount"] = amount
    return {
        "id": event_id,
        "type": "order.refunded",
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "refund": refund,
    }


def add_member(
    db: Database, external_id: str, address: str | None, *, points: int = 0, name: str = ""
) -> int:
    """A member enrolled the day before ``T0``, with ``points`` as a welcome adjustment."""
    now = T0 - timedelta(days=1)
    with db.unit_of_work() as session:
        row = members.create(
            session,
            MemberCreate(external_id=external_id, email=address, name=name or None),
            now=now,
            backfill=True,  # set-up history: its enrolment fires no subscriber
        )
        if points:
            ledger.credit(
                session,
                ledger.lock_account(session, row.id),
                entry_type="adjust",
                points=points,
                reason="welcome gift",
                source=ledger.Source("test"),
                occurred_at=now,
                now=now,
            )
        return row.id


def create_staff(
    session: Session, roles: Iterable[str], *, now: datetime, domain: str = "example.com"
) -> None:
    """One console user per role, ``<role>@<domain>``, signing in with :data:`PASSWORD`."""
    for role in roles:
        staff_users.create_user(
            session,
            email=f"{role}@{domain}",
            name=role.title(),
            role=role,
            password=PASSWORD,
            now=now,
        )
