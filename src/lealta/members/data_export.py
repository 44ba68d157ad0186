"""The member's personal data export (GDPR access): everything Lealta holds about them.

One document for the cockpit's download, the API (``GET /v1/members/{id}/data-export``), the
console and ``lealta members export-data``. Capabilities with tables of their own add their
section through :func:`lealta.privacy.registry.exporter`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lealta.kit.money import from_minor
from lealta.members import service as members
from lealta.models import (
    Consent,
    Coupon,
    LedgerEntry,
    Member,
    Order,
    OrderItem,
    Redemption,
    TierChange,
)
from lealta.privacy import registry as privacy_registry

FORMAT = "lealta.member-data/1"
"""Names the document's shape; a change that removes or renames a field raises the number."""


def export(session: Session, member: Member, *, currency: str, now: datetime) -> dict[str, Any]:
    """Everything Lealta holds about ``member`` (GDPR access), as JSON-ready data."""
    profile = members.to_out(session, member).model_dump(mode="json")
    profile["has_picture"] = bool(member.avatar_path)
    consents = [
        {
            "purpose": c.purpose,
            "granted": c.granted,
            "source": c.source,
            "recorded_at": c.recorded_at.isoformat(),
        }
        for c in session.scalars(
            select(Consent).where(Consent.member_id == member.id).order_by(Consent.id)
        )
    ]
    ledger = [
        {
            "type": e.entry_type,
            "points": e.points,
            "balance_after": e.balance_after,
            "reason": e.reason,
            "source_type": e.source_type,
            "source_ref": e.source_ref,
            "occurred_at": e.occurred_at.isoformat(),
            "recorded_at": e.recorded_at.isoformat(),
        }
        for e in session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.member_id == member.id)
            .order_by(LedgerEntry.occurred_at, LedgerEntry.id)
        )
    ]
    orders = list(
        session.scalars(
            select(Order).where(Order.member_id == member.id).order_by(Order.occurred_at, Order.id)
        )
    )
    items: dict[int, list[dict[str, Any]]] = {o.id: [] for o in orders}
    if orders:
        for item in session.scalars(
            select(OrderItem).where(OrderItem.order_id.in_(items)).order_by(OrderItem.id)
        ):
            order = next(o for o in orders if o.id == item.order_id)
            items[item.order_id].append(
                {
                    "sku": item.sku,
                    "category": item.category,
                    "quantity": item.quantity,
                    "unit_price": str(from_minor(item.unit_price_minor, order.currency)),
                }
            )
    coupons = list(
        session.scalars(select(Coupon).where(Coupon.member_id == member.id).order_by(Coupon.id))
    )
    codes = {c.id: c.code for c in coupons}
    document: dict[str, Any] = {
        "format": FORMAT,
        "exported_at": now.isoformat(),
        "profile": profile,
        "consents": consents,
        "balance": members.balance(session, member, currency, now=now).model_dump(mode="json"),
        "ledger": ledger,
        "orders": [
            {
                "order_id": o.external_id,
                "total": str(from_minor(o.total_minor, o.currency)),
                "refunded": str(from_minor(o.refunded_minor, o.currency)),
                "currency": o.currency,
                "channel": o.channel,
                "store": o.store,
                "status": o.status,
                "points_earned": o.points_earned,
                "points_reversed": o.points_reversed,
                "occurred_at": o.occurred_at.isoformat(),
                "items": items[o.id],
            }
            for o in orders
        ],
        "coupons": [
            {
                "code": c.code,
                "reward_id": c.reward_id,
                "status": c.status,
                "percent_off": c.percent_off,
                "amount_off": (
                    str(from_minor(c.amount_off_minor, c.currency))
                    if c.amount_off_minor is not None
                    else None
                ),
                "free_shipping": c.free_shipping,
                "valid_from": c.valid_from.isoformat(),
                "valid_until": c.valid_until.isoformat(),
                "uses": c.uses,
                "uses_allowed": c.uses_allowed,
            }
            for c in coupons
        ],
        "redemptions": [
            {
                "reward_id": r.reward_id,
                "reward_type": r.reward_type,
                "points": r.points,
                "status": r.status,
                "coupon_code": codes.get(r.coupon_id) if r.coupon_id else None,
                "created_at": r.created_at.isoformat(),
                "rolled_back_at": r.rolled_back_at.isoformat() if r.rolled_back_at else None,
            }
            for r in session.scalars(
                select(Redemption).where(Redemption.member_id == member.id).order_by(Redemption.id)
            )
        ],
        "tier_history": [
            {
                "from": t.from_tier,
                "to": t.to_tier,
                "direction": t.direction,
                "qualifying_value": t.qualifying_value,
                "reason": t.reason,
                "occurred_at": t.occurred_at.isoformat(),
            }
            for t in session.scalars(
                select(TierChange)
                .where(TierChange.member_id == member.id)
                .order_by(TierChange.occurred_at, TierChange.id)
            )
        ],
    }
    for name, section in privacy_registry.exporters():
        if name not in document:
            document[name] = section(session, member.id)
    return document
