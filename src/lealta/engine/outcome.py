"""What applying the engine produced: rows to write, domain events to emit, the new state.

Rows keep the provisional references of the state (< 0) for what they create; the writer
maps them to database ids. ``lots`` and ``orders`` hold the final form of every lot and order
the engine created or changed (a negative id means "insert", a positive one "update").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from lealta.engine.state import Lot, MemberState, OrderState
from lealta.outbox.events import DomainEvent


class NewEntry(msgspec.Struct, frozen=True, gc=False):
    """A ledger entry to append. ``source_lot`` names the lot whose id is the ``source_ref``
    (expiry entries), resolved when written."""

    id: int
    entry_type: str
    points: int
    balance_after: int
    shortfall: int
    reason: str
    source_type: str
    source_ref: str | None
    order_id: int | None
    rule_id: str | None
    actor: str
    details: Mapping[str, Any]
    occurred_at: datetime
    source_lot: int | None = None


class Allocation(msgspec.Struct, frozen=True, gc=False):
    """``points`` of lot ``lot_id`` consumed by entry ``entry_id``."""

    entry_id: int
    lot_id: int
    points: int


class OrderLine(msgspec.Struct, frozen=True, gc=False):
    sku: str
    category: str | None
    quantity: int
    unit_price_minor: int


class NewOrder(msgspec.Struct, frozen=True, gc=False):
    """The columns of a new order that refunds never change."""

    order: OrderState
    channel: str | None
    store: str | None
    lines: tuple[OrderLine, ...] = ()


class TierMove(msgspec.Struct, frozen=True, gc=False):
    from_tier: str | None
    to_tier: str
    direction: str
    qualifying_value: str
    reason: str
    occurred_at: datetime


class Crossing(msgspec.Struct, frozen=True, gc=False):
    """A spend threshold crossed: the driver issues the reward's coupon (codes are random,
    so not the engine's business) and emits ``ThresholdReached`` in this place."""

    rule_id: str
    reward_id: str
    crossed: Decimal
    order_id: str
    at: datetime


class Outcome(msgspec.Struct, frozen=True, gc=False):
    state: MemberState
    entries: tuple[NewEntry, ...] = ()
    allocations: tuple[Allocation, ...] = ()
    lots: tuple[Lot, ...] = ()
    orders: tuple[OrderState, ...] = ()
    new_orders: tuple[NewOrder, ...] = ()
    tier_moves: tuple[TierMove, ...] = ()
    events: tuple[DomainEvent | Crossing, ...] = ()
    postings: tuple[int, ...] = ()
    """Ids of the entries that answer the event (its earnings or reversal, tier bonuses);
    catch-up entries (expiries) before it are not among them."""
    points_delta: int = 0
    thresholds_forfeited: int = 0

    @property
    def changed(self) -> bool:
        """Whether applying this outcome writes anything at all."""
        return any(
            (self.entries, self.lots, self.orders, self.new_orders, self.tier_moves, self.events)
        )
