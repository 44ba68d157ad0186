"""Small builders for event payloads used across tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any


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
