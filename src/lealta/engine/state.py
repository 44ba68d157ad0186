"""What the engine knows of one member: a plain value, loaded by a driver, never a session.

A state may be partial on purpose: the online driver loads only what an event is likely to
need (the account, the lots due by the event's moment, the order a refund names) in one or
two queries. When the engine needs a part that was not loaded it raises
:class:`StateIncomplete` naming the part; the driver loads it and applies again (the engine
is pure, so applying twice is safe). Nothing in here is mutated: every change makes a new
value with :func:`msgspec.structs.replace`.

Ids: rows that exist carry their database id (> 0); rows the engine creates carry a
provisional reference (< 0), unique within the member's state, which the writer maps to a
real id when it writes the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from lealta.rules.engine import Boost


class StateIncomplete(Exception):
    """The engine needs a part of the member's state that the driver did not load."""

    def __init__(self, part: str, detail: Any = None) -> None:
        super().__init__(part if detail is None else f"{part}: {detail}")
        self.part = part
        self.detail = detail


class Profile(msgspec.Struct, frozen=True, gc=False):
    """What rules may read of the member (the ``member`` CEL variable)."""

    external_id: str
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = msgspec.field(default_factory=dict)
    timezone: str = "UTC"
    language: str = "es"
    plan_id: str | None = None
    plan_until: datetime | None = None
    segments: tuple[str, ...] = ()
    """Keys of the segments the member is in (``member.segments`` in rules)."""
    boosts: tuple[Boost, ...] = ()
    """Campaign earning multipliers given to the member (applied by the rules engine)."""

    def plan_at(self, at: datetime) -> str | None:
        """The paid plan whose benefits hold at ``at`` (None: none)."""
        if self.plan_id is None or self.plan_until is None or at >= self.plan_until:
            return None
        return self.plan_id


class Figures(msgspec.Struct, gc=False):
    """The account row: cached balances and tier, derivable from the ledger.

    Mutable for speed inside the engine, which works on its own copy; a state's figures are
    never changed after the state is made."""

    member_id: int = 0
    points_available: int = 0
    points_pending: int = 0
    lifetime_earned: int = 0
    lifetime_spent: int = 0
    points_expired: int = 0
    points_shortfall: int = 0
    qualifying_spend_minor: int = 0
    spend_high_water_minor: int = 0
    orders_count: int = 0
    last_order_at: datetime | None = None
    tier_id: str | None = None
    tier_since: datetime | None = None
    tier_held_until: datetime | None = None

    @property
    def balance(self) -> int:
        return self.points_available + self.points_pending

    def copy(self) -> Figures:
        """A copy to change (field by field: much cheaper than ``copy.copy``)."""
        return Figures(
            self.member_id,
            self.points_available,
            self.points_pending,
            self.lifetime_earned,
            self.lifetime_spent,
            self.points_expired,
            self.points_shortfall,
            self.qualifying_spend_minor,
            self.spend_high_water_minor,
            self.orders_count,
            self.last_order_at,
            self.tier_id,
            self.tier_since,
            self.tier_held_until,
        )


class Lot(msgspec.Struct, frozen=True, gc=False):
    """Points credited together, consumed soonest-expiring first."""

    id: int
    entry_id: int
    order_id: int | None
    points: int
    remaining: int
    earned_at: datetime
    expires_at: datetime | None
    pending: bool
    available_at: datetime | None

    def with_remaining(self, remaining: int) -> Lot:
        """This lot with ``remaining`` points left (as ``msgspec.structs.replace``, cheaper)."""
        return Lot(
            self.id,
            self.entry_id,
            self.order_id,
            self.points,
            remaining,
            self.earned_at,
            self.expires_at,
            self.pending,
            self.available_at,
        )

    def released(self) -> Lot:
        """This lot, no longer pending."""
        return Lot(
            self.id,
            self.entry_id,
            self.order_id,
            self.points,
            self.remaining,
            self.earned_at,
            self.expires_at,
            False,
            self.available_at,
        )


class OrderState(msgspec.Struct, frozen=True, gc=False):
    """An order as refunds need it. ``id`` is the database id (or a provisional ref)."""

    id: int
    member_id: int
    external_id: str
    total_minor: int
    refunded_minor: int
    currency: str
    points_earned: int
    points_reversed: int
    occurred_at: datetime
    status: str = "paid"


class RuleCounter(msgspec.Struct, frozen=True, gc=False):
    """What one capped rule gave the member: every earning since ``since`` (the start of a
    UTC month) one by one, and the lifetime totals. Any moment from ``since`` on can be
    answered: its UTC day, its month up to the moment, and ever."""

    since: datetime
    earned: tuple[tuple[datetime, int], ...] = ()
    points_lifetime: int = 0
    times_lifetime: int = 0


class Contribution(msgspec.Struct, frozen=True, gc=False):
    """One addition to the tier's qualifying value: an order's net spend (``order_id`` set,
    dated at the order) or a points entry (earn or reverse)."""

    at: datetime
    amount: int
    order_id: int | None = None


class Qualifying(msgspec.Struct, frozen=True, gc=False):
    """The qualifying-value history the engine may sum over: contributions dated after
    ``horizon`` one by one, everything at or before it as ``base``.

    A window ``(start, end]`` can be summed when ``start`` is at or after the horizon (or the
    window has no start and the whole history is ``base`` plus the recent ones).
    ``horizon=None`` with ``base=0`` means the whole history is in ``recent``.
    """

    horizon: datetime | None = None
    base: int = 0
    recent: tuple[Contribution, ...] = ()

    def with_recent(self, recent: tuple[Contribution, ...]) -> Qualifying:
        return Qualifying(self.horizon, self.base, recent)


class MemberState(msgspec.Struct, frozen=True, gc=False):
    """One member, as the engine sees it. Parts set to ``None`` were not loaded."""

    member_id: int
    profile: Profile
    figures: Figures
    lots: tuple[Lot, ...] = ()
    lots_complete: bool = False
    """True when ``lots`` holds every lot with points left or still pending; otherwise it
    holds at least the lots due (to release or expire) by the moment it was loaded for."""
    orders: Mapping[str, OrderState | None] = msgspec.field(default_factory=dict)
    """Orders looked up by external id; ``None`` means looked up and not found."""
    counters: Mapping[str, RuleCounter] | None = None
    qualifying: Qualifying | None = None
    tier_entries_paid: frozenset[str] | None = None
    """Tiers whose one-off entry points the member already received."""
    next_ref: int = -1
    """The next provisional id for a row the engine creates (counts down)."""
