"""The engine: (programme, member state, event) -> outcome. No session, no clock, no I/O.

Everything that changes a member's points or tier is decided here: earning (rules, tier
entry bonuses), refund reversals, pending releases, expiries, tier placement, upgrades and
period reviews, spend-threshold crossings. The online driver (API, till, cockpit) and the
batch driver (import, demo, bulk) load a :class:`MemberState`, call :func:`apply` or
:func:`catch_up`, and write the :class:`Outcome`; the same inputs give the same outcome.

Semantics, in order, for one event at moment ``t``:
1. Catch up to ``t``: pending lots whose return window ended by ``t`` become available;
   lots whose expiry date is at or before ``t`` expire (one entry each, dated at the expiry).
2. Tier placement (first contact with a tiered programme) and every period review due by
   ``t`` (see :mod:`lealta.tiers.maths`).
3. The event: an order earns by the rules (pending through the return window), records the
   order, counts its spend, upgrades at once if a higher tier is reached (paying each tier's
   entry points once per lifetime) and issues spend-threshold rewards; a refund reverses
   pro rata what the order earned (cumulatively, never more), taking the order's own lots
   first and recording what could not be taken back as shortfall; a custom event earns by
   its rules.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter, indexOf
from typing import Any

import msgspec

from lealta.engine.errors import (
    OrderAlreadyRecorded,
    OrderNotFound,
    RefundBeforeOrder,
    RefundExceedsOrder,
)
from lealta.engine.outcome import (
    Allocation,
    Crossing,
    NewEntry,
    NewOrder,
    OrderLine,
    Outcome,
    TierMove,
)
from lealta.engine.state import (
    Contribution,
    Figures,
    Lot,
    MemberState,
    OrderState,
    RuleCounter,
    StateIncomplete,
)
from lealta.kit.errors import InvalidInput
from lealta.kit.money import DEFAULT_MAX_AMOUNT, check_max_amount, exponent, normalise_currency
from lealta.kit.money import to_minor as _to_minor
from lealta.kit.periods import add_months, end_of
from lealta.ledger.errors import InsufficientPoints
from lealta.ledger.maths import OpenLot, allocate, reversal_points
from lealta.outbox import events as domain
from lealta.programme.schema import Programme, Tier
from lealta.rules.engine import (
    EventFacts,
    Item,
    MemberSnapshot,
    RuleUsage,
    compiled_for,
    evaluate,
)
from lealta.tiers import maths as tier_maths

ORDER_PAID = "order.paid"
ORDER_REFUNDED = "order.refunded"
SYSTEM = "system"

# --- inputs ----------------------------------------------------------------------------------


class Line(msgspec.Struct, frozen=True, gc=False):
    sku: str
    category: str | None
    quantity: int
    unit_price: Decimal


class PaidOrder(msgspec.Struct, frozen=True, gc=False):
    """``order.paid``: amounts as sent (major units); the engine checks and converts them."""

    key: str
    occurred_at: datetime
    order_id: str
    total: Decimal
    currency: str
    lines: tuple[Line, ...] = ()
    channel: str | None = None
    store: str | None = None
    properties: Mapping[str, Any] = msgspec.field(default_factory=dict)


class Refund(msgspec.Struct, frozen=True, gc=False):
    """``order.refunded``: ``amount`` None refunds whatever is left of the order."""

    key: str
    occurred_at: datetime
    order_id: str
    amount: Decimal | None = None
    currency: str | None = None
    properties: Mapping[str, Any] = msgspec.field(default_factory=dict)


class Custom(msgspec.Struct, frozen=True, gc=False):
    """Any other event type: it earns by the rules that listen to it."""

    key: str
    type: str
    occurred_at: datetime
    properties: Mapping[str, Any] = msgspec.field(default_factory=dict)


EngineEvent = PaidOrder | Refund | Custom


class Context(msgspec.Struct, frozen=True, gc=False):
    """What the caller decides: who acts, and the largest amount accepted (major units)."""

    actor: str = SYSTEM
    max_amount: Decimal = DEFAULT_MAX_AMOUNT


# --- what the engine derives from a programme, once -----------------------------------------


class _Design:
    """Lookups derived from one programme object, computed once and kept (the engine reads
    them on every event): tiers by id and rank, plans by id, the return window, the
    currency's exponent and the active spend-threshold steps. A programme is never changed
    in place (an edit makes a new object), so the object's identity is the key."""

    __slots__ = (
        "basis",
        "exp",
        "levels",
        "pending",
        "plans",
        "programme",
        "rank",
        "thresholds",
        "tier_by_id",
        "tiers",
    )

    def __init__(self, programme: Programme) -> None:
        self.programme = programme
        tiers = self.tiers = programme.tiers
        self.levels: tuple[Tier, ...] = tuple(tiers.levels) if tiers is not None else ()
        self.basis = tiers.basis if tiers is not None else None
        # The first level with an id wins, as Programme.tier() and tier_maths.rank() find it.
        self.rank: dict[str | None, int] = {}
        self.tier_by_id: dict[str | None, Tier] = {}
        for i, level in enumerate(self.levels):
            self.rank.setdefault(level.id, i)
            self.tier_by_id.setdefault(level.id, level)
        self.plans = compiled_for(programme).plans
        days = programme.pending.days
        self.pending = timedelta(days=days) if days else None
        self.exp = exp = exponent(programme.currency)
        self.thresholds = tuple(
            (rule, int(rule.every.scaleb(exp))) for rule in programme.thresholds if rule.active
        )

    def pending_until(self, occurred_at: datetime) -> datetime | None:
        """When order points earned at ``occurred_at`` are released (None: no window)."""
        return occurred_at + self.pending if self.pending is not None else None

    def tier_rank(self, tier_id: str | None) -> int:
        """As :func:`lealta.tiers.maths.rank`: unknown or None ranks as the entry tier."""
        return self.rank.get(tier_id, 0)


_designs: OrderedDict[int, _Design] = OrderedDict()


def _design(programme: Programme) -> _Design:
    """The derived lookups of ``programme``, kept for the last 32 programme objects met."""
    key = id(programme)
    hit = _designs.get(key)
    if hit is not None and hit.programme is programme:
        return hit
    design = _designs[key] = _Design(programme)
    _designs.move_to_end(key)
    while len(_designs) > 32:
        _designs.popitem(last=False)
    return design


# --- pure helpers shared with readers ----------------------------------------------------------


def expiry_for(programme: Programme, earned_at: datetime) -> datetime | None:
    """When points earned at ``earned_at`` expire under the programme (None: never)."""
    months, round_to = programme.expiry.months, programme.expiry.round_to
    if months is None:
        return None
    if round_to != "none" and _utc_offset_zero(earned_at):
        # Then the answer depends only on the month earned: compute it once per month.
        key = (earned_at.year, earned_at.month, months, round_to)
        hit = _expiry_by_month.get(key)
        if hit is None:
            hit = _expiry_by_month[key] = end_of(add_months(earned_at, months), round_to)
        return hit
    return end_of(add_months(earned_at, months), round_to)


_expiry_by_month: dict[tuple[int, int, int, str], datetime] = {}
_ZERO = timedelta(0)


def _utc_offset_zero(at: datetime) -> bool:
    """Whether ``at`` has a fixed offset of zero (UTC and the like, not a zone with DST)."""
    tz = at.tzinfo
    if tz is None:
        return False
    try:
        return tz.utcoffset(None) == _ZERO
    except Exception:  # a tzinfo that needs a moment
        return False


def pending_until(programme: Programme, occurred_at: datetime) -> datetime | None:
    """Order points wait out the return window; None when there is none."""
    return _design(programme).pending_until(occurred_at)


def lot_order(lot_id: int) -> tuple[int, int]:
    """Sort key of lot ids in creation order: stored lots by id, then new ones as created."""
    return (1, -lot_id) if lot_id < 0 else (0, lot_id)


_ID = attrgetter("id")
_EXPIRES_AT = attrgetter("expires_at")
_ORDER_ID = attrgetter("order_id")
_POINTS = attrgetter("points")


def _in_lot_order(lots: Collection[Lot]) -> list[Lot]:
    """``lots`` sorted by :func:`lot_order` of their ids (stored ones by id, then new ones as
    created), without a Python call per lot: stored and new lots are sorted apart."""
    stored = [lot for lot in lots if lot.id >= 0]
    new = [lot for lot in lots if lot.id < 0]
    stored.sort(key=_ID)
    if new:
        new.sort(key=_ID, reverse=True)
        stored.extend(new)
    return stored


def _ids_in_lot_order(ids: Iterable[int]) -> bool:
    """Whether ``ids`` come in :func:`lot_order` (stored ids ascending, then new ones
    descending), checked without building a key per id."""
    last: int | None = None
    for lot_id in ids:
        if last is not None:
            if last >= 0 and 0 <= lot_id <= last:  # a stored id after a greater one
                return False
            if last < 0 and lot_id >= last:  # a stored id, or an older new one, after a new one
                return False
        last = lot_id
    return True


def is_due(lot: Lot, at: datetime) -> bool:
    """Whether catching up to ``at`` acts on ``lot`` (release or expiry)."""
    if lot.pending and lot.available_at is not None and lot.available_at <= at:
        return True
    return lot.remaining > 0 and lot.expires_at is not None and lot.expires_at <= at


# --- the working copy ------------------------------------------------------------------------


class _Work:
    """A member's state being changed by one application; turned into an Outcome at the end."""

    __slots__ = (
        "_own_counters",
        "_own_orders",
        "allocations",
        "counters",
        "ctx",
        "design",
        "entries",
        "entries_paid",
        "events",
        "fig",
        "lots",
        "lots_ordered",
        "moves",
        "new_orders",
        "next_ref",
        "orders",
        "programme",
        "qualifying",
        "state",
        "touched_lots",
        "touched_orders",
    )

    def __init__(self, programme: Programme, state: MemberState, ctx: Context) -> None:
        self.programme = programme
        self.design = _design(programme)
        self.ctx = ctx
        self.state = state
        self.fig = state.figures.copy()
        self.lots: dict[int, Lot] = {lot.id: lot for lot in state.lots}
        # Whether self.lots iterates in lot order, so that a list read from it needs no sort:
        # true of every state the engine made, and kept by put_lot (new ids count down).
        self.lots_ordered = _ids_in_lot_order(self.lots)
        self.touched_lots: dict[int, Lot] = {}
        # The state's orders and counters are shared until changed (copied on first write).
        self.orders: Mapping[str, OrderState | None] = state.orders
        self._own_orders: dict[str, OrderState | None] | None = None
        self.touched_orders: dict[int, OrderState] = {}
        self.new_orders: list[NewOrder] = []
        self.counters: Mapping[str, RuleCounter] | None = state.counters
        self._own_counters: dict[str, RuleCounter] | None = None
        self.qualifying = state.qualifying
        self.entries_paid = state.tier_entries_paid
        self.next_ref = state.next_ref
        self.entries: list[NewEntry] = []
        self.allocations: list[Allocation] = []
        self.moves: list[TierMove] = []
        self.events: list[domain.DomainEvent | Crossing] = []

    # ids

    def ref(self) -> int:
        value = self.next_ref
        self.next_ref -= 1
        return value

    # orders

    def set_order(self, external_id: str, order: OrderState) -> None:
        own = self._own_orders
        if own is None:
            own = self._own_orders = dict(self.orders)
            self.orders = own
        own[external_id] = order
        self.touched_orders[order.id] = order

    # lots

    def put_lot(self, lot: Lot) -> None:
        lots = self.lots
        if self.lots_ordered and lots and lot.id not in lots:
            # A new lot goes last: is that still lot order? (A changed lot keeps its place.)
            self.lots_ordered = lot_order(next(reversed(lots))) < lot_order(lot.id)
        lots[lot.id] = lot
        self.touched_lots[lot.id] = lot

    def in_lot_order(self, lots: list[Lot]) -> list[Lot]:
        """``lots``, read from self.lots in its order, sorted by :func:`lot_order`."""
        return lots if self.lots_ordered else _in_lot_order(lots)

    def credit(
        self,
        *,
        entry_type: str,
        points: int,
        reason: str,
        source_type: str,
        source_ref: str | None,
        occurred_at: datetime,
        actor: str,
        rule_id: str | None = None,
        order_id: int | None = None,
        expires_at: datetime | None = None,
        pending_until: datetime | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> NewEntry:
        """Add ``points`` (> 0) as a new lot, pending until ``pending_until`` if given."""
        if points <= 0:
            raise ValueError("credit needs a positive amount")
        fig = self.fig
        if pending_until is not None:
            fig.points_pending += points
        else:
            fig.points_available += points
        if entry_type in ("earn", "adjust"):
            fig.lifetime_earned += points
        entry = NewEntry(
            self.ref(),  # id
            entry_type,
            points,
            fig.balance,  # balance_after
            0,  # shortfall
            reason,
            source_type,
            source_ref,
            order_id,
            rule_id,
            actor,
            dict(details) if details else {},  # details
            occurred_at,
        )
        self.entries.append(entry)
        self.put_lot(
            Lot(
                self.ref(),  # id
                entry.id,  # entry_id
                order_id,
                points,
                points,  # remaining
                occurred_at,  # earned_at
                expires_at,
                pending_until is not None,  # pending
                pending_until,  # available_at
            )
        )
        if entry_type in ("earn", "reverse"):
            self.count_points(occurred_at, points)
        return entry

    def debit(
        self,
        *,
        entry_type: str,
        points: int,
        reason: str,
        source_type: str,
        source_ref: str | None,
        occurred_at: datetime,
        actor: str,
        order_id: int | None = None,
        allow_shortfall: bool = False,
        prefer_order_id: int | None = None,
        only_lot: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> NewEntry:
        """Take ``points`` (> 0) from the lots, soonest-expiring first.

        Without ``allow_shortfall`` an uncovered amount is ``insufficient_points``. With it
        (refund reversals) the entry takes what there is and records the rest as shortfall.
        Pending points are not spendable; a refund may take back its own order's pending
        lots, and an expiry names its one lot.
        """
        if points <= 0:
            raise ValueError("debit needs a positive amount")
        fig = self.fig
        if only_lot is None and not allow_shortfall and points > fig.points_available:
            raise InsufficientPoints(
                f"The member has {fig.points_available} points available; {points} requested.",
                details={"available": fig.points_available, "requested": points},
            )
        if only_lot is None and not self.state.lots_complete:
            raise StateIncomplete("lots")
        ranked: list[Lot]
        taken_by_rank: list[tuple[int, int]]
        if only_lot is not None:
            # An expiry takes from its one lot: what allocate() does with a single lot.
            ranked = [self.lots[only_lot]]
            take = min(ranked[0].remaining, points)
            taken_by_rank = [(0, take)] if take > 0 else []
            shortfall = points - take if take > 0 else points
            taken_pending = take if take > 0 and ranked[0].pending else 0
        else:
            own = prefer_order_id
            candidates = [
                lot
                for lot in self.lots.values()
                if lot.remaining > 0
                and (not lot.pending or (own is not None and lot.order_id == own))
            ]
            # FIFO ties break on creation order: rank the lots so new (negative) ids sort last.
            ranked = self.in_lot_order(candidates)
            prefer = (
                [rank for rank, lot in enumerate(ranked) if lot.order_id == own]
                if own is not None
                else []
            )
            taken_by_rank, shortfall = allocate(
                [
                    OpenLot(rank, lot.remaining, lot.earned_at, lot.expires_at)
                    for rank, lot in enumerate(ranked)
                ],
                points,
                prefer=prefer,
            )
            taken_pending = sum(amount for rank, amount in taken_by_rank if ranked[rank].pending)
        if shortfall and not allow_shortfall:  # only an expiry of a lot with less left
            raise RuntimeError(f"lots cover {points - shortfall} of {points} points")
        taken = points - shortfall
        fig.points_available -= taken - taken_pending
        fig.points_pending -= taken_pending
        fig.points_shortfall += shortfall
        if entry_type == "redeem":
            fig.lifetime_spent += taken
        elif entry_type == "reverse":
            fig.lifetime_earned -= taken
        elif entry_type == "expire":
            fig.points_expired += taken
        entry = NewEntry(
            self.ref(),  # id
            entry_type,
            -taken,  # points
            fig.balance,  # balance_after
            shortfall,
            reason,
            source_type,
            source_ref,
            order_id,
            None,  # rule_id
            actor,
            dict(details) if details else {},  # details
            occurred_at,
            only_lot,  # source_lot
        )
        self.entries.append(entry)
        for rank, amount in taken_by_rank:
            lot = ranked[rank]
            self.put_lot(lot.with_remaining(lot.remaining - amount))
            self.allocations.append(Allocation(entry.id, lot.id, amount))
        if entry_type == "reverse":
            self.count_points(occurred_at, -taken)
        return entry

    # the tier's qualifying value

    def count_points(self, at: datetime, points: int) -> None:
        """A points entry adds to a points-based tier's qualifying history."""
        if self.design.basis != "points" or self.qualifying is None:
            return
        q = self.qualifying
        self.qualifying = q.with_recent((*q.recent, Contribution(at, points)))

    def count_order(self, order: OrderState, amount: int) -> None:
        """An order (``amount`` > 0) or a refund of it (< 0) changes net spend at the
        order's moment, for a spend-based tier."""
        if self.design.basis != "spend" or self.qualifying is None:
            return
        q = self.qualifying
        recent = q.recent
        if order.id in map(_ORDER_ID, recent):  # a refund (found without a Python loop)
            i = indexOf(map(_ORDER_ID, recent), order.id)
            c = recent[i]
            changed = Contribution(c.at, c.amount + amount, c.order_id)
            self.qualifying = q.with_recent((*recent[:i], changed, *recent[i + 1 :]))
            return
        if amount > 0 or q.horizon is None or order.occurred_at > q.horizon:
            self.qualifying = q.with_recent(
                (*recent, Contribution(order.occurred_at, amount, order.id))
            )
        else:
            self.qualifying = msgspec.structs.replace(q, base=q.base + amount)

    def qualifying_value(self, end: datetime) -> Decimal:
        """Net spend (currency units) or points earned in the tier window ending at ``end``."""
        tiers = self.programme.tiers
        assert tiers is not None
        start = tier_maths.window_start(tiers, end)
        fig = self.fig
        spend = tiers.basis == "spend"
        if spend and start is None and fig.last_order_at is not None and end >= fig.last_order_at:
            # Lifetime spend up to now is kept on the account: nothing more to know.
            return Decimal(fig.qualifying_spend_minor).scaleb(-self.design.exp)
        q = self.qualifying
        if q is None:
            raise StateIncomplete("qualifying", start)
        if start is None:
            if q.horizon is not None and end < q.horizon:
                raise StateIncomplete("qualifying", None)
            total = q.base + sum(c.amount for c in q.recent if c.at <= end)
        else:
            if q.horizon is not None and start < q.horizon:
                raise StateIncomplete("qualifying", start)
            total = sum(c.amount for c in q.recent if start < c.at <= end)
        return Decimal(total).scaleb(-self.design.exp) if spend else Decimal(total)

    # tiers

    def move(self, tier: Tier, direction: str, value: Decimal, reason: str, at: datetime) -> None:
        previous = self.fig.tier_id
        self.fig.tier_id = tier.id
        self.fig.tier_since = at
        self.moves.append(TierMove(previous, tier.id, direction, str(value), reason, at))
        if direction != "initial":
            self.events.append(
                domain.TierChanged(
                    from_tier=previous,
                    to_tier=tier.id,
                    direction=direction,
                    qualifying_value=value,
                    at=at,
                )
            )

    def floor(self, at: datetime) -> Tier | None:
        """The tier a paid plan holds the member in at ``at`` (None: no plan, or no floor)."""
        design = self.design
        plan = design.plans.get(self.state.profile.plan_at(at))
        if plan is None or plan.tier_floor is None:
            return None
        return design.tier_by_id.get(plan.tier_floor)

    def with_floor(self, earned: Tier, at: datetime) -> Tier:
        """``earned``, or the plan's floor at ``at`` when that is higher."""
        floor = self.floor(at)
        rank = self.design.tier_rank
        if floor is None or rank(floor.id) <= rank(earned.id):
            return earned
        return floor

    def plan_hold(self, hold: datetime | None, earned: Tier) -> datetime | None:
        """When the tier now held is next reviewed: ``hold``, or sooner, when the benefits of
        the plan end, if the plan's floor is what keeps the member above ``earned``."""
        profile = self.state.profile
        until = profile.plan_until
        if profile.plan_id is None or until is None:
            return hold
        design = self.design
        plan = design.plans.get(profile.plan_id)
        if plan is None or plan.tier_floor != self.fig.tier_id:
            return hold
        if design.tier_rank(self.fig.tier_id) <= design.tier_rank(earned.id):
            return hold
        return until if hold is None or until < hold else hold

    def plan_ended(self, floor_id: str, at: datetime) -> None:
        """A plan whose floor was ``floor_id`` stopped at ``at``: a tier only it held is
        reviewed now, on the value earned."""
        if self.fig.tier_id != floor_id or self.programme.tiers is None:
            return
        held = self.fig.tier_held_until
        if held is None or held > at:
            self.fig.tier_held_until = at
        self.review(at)

    def place(self, at: datetime) -> None:
        """Put a member without a tier into the entry tier (first contact with tiers)."""
        design = self.design
        if design.tiers is None or self.fig.tier_id in design.tier_by_id:
            return
        self.move(design.levels[0], "initial", Decimal(0), "Enrolled", at)
        self.fig.tier_held_until = None

    def review(self, at: datetime) -> None:
        """Every tier review due by ``at`` (several if history spans several periods)."""
        tiers = self.design.tiers
        if tiers is None:
            return
        self.place(at)
        rank = self.design.tier_rank
        while self.fig.tier_held_until is not None and self.fig.tier_held_until <= at:
            held = self.fig.tier_held_until
            period_end = tier_maths.review_period_end(tiers, held)
            value = self.qualifying_value(period_end)
            earned = tier_maths.level_for(tiers, value)
            target = self.with_floor(earned, held)
            if rank(target.id) < rank(self.fig.tier_id):
                reason = "Period review" if target is earned else "Period review (plan floor)"
                self.move(target, "downgrade", value, reason, held)
            if rank(self.fig.tier_id) == 0:
                next_hold = None
            else:
                next_hold = tier_maths.held_until(tiers, period_end + timedelta(microseconds=1))
            self.fig.tier_held_until = self.plan_hold(next_hold, earned)

    def upgrade(self, at: datetime) -> list[NewEntry]:
        """Upgrade at once if the value at ``at`` reaches a higher tier; every tier reached on
        the way pays its ``entry_points`` once per member lifetime."""
        tiers = self.design.tiers
        if tiers is None:
            return []
        self.place(at)
        value = self.qualifying_value(at)
        earned = tier_maths.level_for(tiers, value)
        target = self.with_floor(earned, at)
        rank = self.design.tier_rank
        before = rank(self.fig.tier_id)
        after = rank(target.id)
        if after <= before:
            return []
        if target is earned:
            self.move(target, "upgrade", value, "Qualifying value reached", at)
        else:
            self.move(target, "upgrade", value, "Paid plan", at)
        self.fig.tier_held_until = self.plan_hold(tier_maths.held_until(tiers, at), earned)
        # Entry points reward a tier earned, never one a paid plan lends.
        bonuses = []
        for level in tiers.levels[before + 1 : rank(earned.id) + 1]:
            if level.entry_points <= 0:
                continue
            if self.entries_paid is None:
                raise StateIncomplete("tier_entries")
            if level.id in self.entries_paid:
                continue
            self.entries_paid = self.entries_paid | {level.id}
            bonuses.append(
                self.credit(
                    entry_type="earn",
                    points=level.entry_points,
                    reason=f"Welcome to {level.name.es}",
                    source_type="tier",
                    source_ref=level.id,
                    occurred_at=at,
                    actor=SYSTEM,
                    rule_id=f"{TIER_ENTRY_PREFIX}{level.id}",
                    expires_at=expiry_for(self.programme, at),
                )
            )
        return bonuses

    # catching up

    def catch_up(self, at: datetime) -> None:
        """Release pending lots and expire lots due by ``at``, each at its own moment."""
        # is_due(), inlined: this runs for every lot of every event.
        released_due: list[Lot] = []
        expiry_due = False
        for lot in self.lots.values():
            if lot.pending and lot.available_at is not None and lot.available_at <= at:
                released_due.append(lot)
            # (A release changes neither ``remaining`` nor ``expires_at``.)
            if lot.remaining > 0 and lot.expires_at is not None and lot.expires_at <= at:
                expiry_due = True
        if released_due:
            released = self.in_lot_order(released_due)
            moved = sum(lot.remaining for lot in released)
            for lot in released:
                self.put_lot(lot.released())
            self.fig.points_pending -= moved
            self.fig.points_available += moved
            if moved:
                self.events.append(domain.PointsReleased(points=moved))
        if not expiry_due:
            return
        # By expiry, then creation order (a stable sort of lots in creation order).
        expiring = sorted(
            self.in_lot_order(
                [
                    lot
                    for lot in self.lots.values()
                    if lot.remaining > 0 and lot.expires_at is not None and lot.expires_at <= at
                ]
            ),
            key=_EXPIRES_AT,
        )
        expired = 0
        for lot in expiring:
            assert lot.expires_at is not None
            entry = self.debit(
                entry_type="expire",
                points=lot.remaining,
                reason="Points expired",
                source_type="expiry",
                source_ref=str(lot.id) if lot.id > 0 else None,
                occurred_at=lot.expires_at,
                actor=SYSTEM,
                only_lot=lot.id,
            )
            expired -= entry.points
        if expired:
            self.events.append(domain.PointsExpired(points=expired))

    # rules

    def usage(self, at: datetime) -> _Usage:
        """What each capped rule already gave, as of ``at``: read only for the rules whose
        conditions match, so counters are needed only when a capped rule could earn."""
        return _Usage(self.counters, at)

    def count_rule(self, rule_id: str, at: datetime, points: int) -> None:
        if self.counters is None or rule_id not in self.counters:
            return
        c = self.counters[rule_id]
        own = self._own_counters
        if own is None:
            own = self._own_counters = dict(self.counters)
            self.counters = own
        own[rule_id] = RuleCounter(
            since=c.since,
            earned=(*c.earned, (at, points)),
            points_lifetime=c.points_lifetime + points,
            times_lifetime=c.times_lifetime + 1,
        )

    def snapshot(self, event_type: str, at: datetime) -> MemberSnapshot:
        profile = self.state.profile
        return MemberSnapshot(
            self.state.member_id,
            profile.external_id,
            self.fig.tier_id,  # tier
            profile.attributes,
            profile.tags,
            self.fig.qualifying_spend_minor,
            self.fig.orders_count,
            profile.timezone,
            profile.language,
            self.usage(at),  # usage
            profile.plan_at(at),  # plan
            profile.segments,
            profile.boosts,
        )

    # the result

    def outcome(
        self,
        postings: list[NewEntry] | None = None,
        *,
        forfeited: int = 0,
    ) -> Outcome:
        values = self.lots.values()
        lots = values if self.lots_ordered else _in_lot_order(values)
        before = self.state
        # Every field of MemberState, in order (a test keeps this list complete): cheaper than
        # msgspec.structs.replace, which the engine would otherwise pay on every event. The hot
        # constructors of the engine take their fields by position: keywords cost a third more.
        state = MemberState(
            before.member_id,
            before.profile,
            self.fig,  # figures
            tuple([lot for lot in lots if lot.remaining > 0 or lot.pending]),  # lots
            before.lots_complete,
            self.orders,
            self.counters,
            self.qualifying,
            self.entries_paid,  # tier_entries_paid
            self.next_ref,
        )
        if postings:
            posting_ids = tuple(map(_ID, postings))
            delta = _sum(postings)
        else:
            posting_ids, delta = (), 0
        return Outcome(
            state,
            tuple(self.entries),  # entries
            tuple(self.allocations),  # allocations
            tuple(self.touched_lots.values()),  # lots
            tuple(self.touched_orders.values()),  # orders
            tuple(self.new_orders),  # new_orders
            tuple(self.moves),  # tier_moves
            tuple(self.events),  # events
            posting_ids,  # postings
            delta,  # points_delta
            forfeited,  # thresholds_forfeited
        )


TIER_ENTRY_PREFIX = "tier-entry:"


class _Usage(Mapping[str, RuleUsage]):
    """Rule usage read from the counters; a rule without a loaded counter (or one loaded from
    a later month) is a :class:`StateIncomplete`: the driver loads it and applies again."""

    def __init__(self, counters: Mapping[str, RuleCounter] | None, at: datetime) -> None:
        self._counters = counters
        self._at = at  # in UTC when first read: most events read no usage at all

    def __getitem__(self, rule_id: str) -> RuleUsage:
        counter = None if self._counters is None else self._counters.get(rule_id)
        at = self._at.astimezone(UTC)
        if counter is None or at < counter.since:
            raise StateIncomplete("counters", rule_id)
        day = at.date()
        today = [p for when, p in counter.earned if when.astimezone(UTC).date() == day]
        month = [
            p
            for when, p in counter.earned
            if (when.astimezone(UTC).year, when.astimezone(UTC).month) == (at.year, at.month)
            and when <= at
        ]
        return RuleUsage(
            points_day=sum(today),
            points_month=sum(month),
            points_lifetime=counter.points_lifetime,
            times_day=len(today),
            times_lifetime=counter.times_lifetime,
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._counters or ())

    def __len__(self) -> int:
        return len(self._counters or ())


# --- entry points ----------------------------------------------------------------------------


def _caught_up(programme: Programme, state: MemberState, ctx: Context, at: datetime) -> _Work:
    """The engine's work on ``state``, the member first brought to ``at`` (releases, expiries
    and tier reviews due by then): where every entry point starts."""
    work = _Work(programme, state, ctx)
    work.catch_up(at)
    work.review(at)
    return work


def catch_up(programme: Programme, state: MemberState, at: datetime) -> Outcome:
    """Bring the member to ``at``: releases, expiries and tier reviews due by then."""
    return _caught_up(programme, state, Context(), at).outcome()


def adjust(
    programme: Programme,
    state: MemberState,
    *,
    points: int,
    reason: str,
    actor: str,
    at: datetime,
    source_type: str = "adjustment",
    source_ref: str | None = None,
) -> Outcome:
    """A manual credit (``points`` > 0, a lot that never expires) or debit (< 0, refused with
    ``insufficient_points`` beyond what is available), dated ``at``, once the member is caught
    up to ``at`` (as for an event: a debit never takes points that expired before it).
    ``source_type`` and ``source_ref`` name what asked for it when it is not a person
    (``survey`` and its key)."""
    work = _caught_up(programme, state, Context(actor=actor), at)
    if points > 0:
        entry = work.credit(
            entry_type="adjust",
            points=points,
            reason=reason,
            source_type=source_type,
            source_ref=source_ref,
            occurred_at=at,
            actor=actor,
        )
    else:
        entry = work.debit(
            entry_type="adjust",
            points=-points,
            reason=reason,
            source_type=source_type,
            source_ref=source_ref,
            occurred_at=at,
            actor=actor,
        )
    return work.outcome([entry])


def spend(
    programme: Programme,
    state: MemberState,
    *,
    points: int,
    reason: str,
    actor: str,
    at: datetime,
    source_type: str,
    source_ref: str | None,
    details: Mapping[str, Any] | None = None,
) -> Outcome:
    """Spend ``points`` (> 0) from available lots, soonest-expiring first, or refuse with
    ``insufficient_points``: a balance never goes below zero. The member is first caught up
    to ``at`` (pending points released, expired points gone, tier reviewed), as for an
    event: points that expired before ``at`` are never spent."""
    work = _caught_up(programme, state, Context(actor=actor), at)
    entry = work.debit(
        entry_type="redeem",
        points=points,
        reason=reason,
        source_type=source_type,
        source_ref=source_ref,
        occurred_at=at,
        actor=actor,
        details=details,
    )
    return work.outcome([entry])


def plan_changed(
    programme: Programme, state: MemberState, *, at: datetime, ended_floor: str | None = None
) -> Outcome:
    """The member's paid plan started, renewed or ended at ``at`` (``state.profile`` already
    says which plan holds and until when): catch up, then lift the member to the plan's tier
    floor, or, when a plan whose floor was ``ended_floor`` ended, review a tier only it held."""
    work = _caught_up(programme, state, Context(), at)
    if ended_floor is not None:
        work.plan_ended(ended_floor, at)
        return work.outcome()
    # A renewal needs nothing more: the review due when the old benefits were to end finds
    # the floor still holding and holds the tier until the new end.
    return work.outcome(work.upgrade(at))


def upgrade(programme: Programme, state: MemberState, at: datetime) -> Outcome:
    """Upgrade the member at ``at`` if the qualifying value now reaches a higher tier (after a
    programme edit lowered thresholds); never a downgrade."""
    work = _Work(programme, state, Context())
    return work.outcome(work.upgrade(at))


def apply(
    programme: Programme, state: MemberState, event: EngineEvent, ctx: Context | None = None
) -> Outcome:
    """What ``event`` does to the member: catch up to its moment, then apply it.

    Raises a :class:`~lealta.kit.errors.LealtaError` when the event is refused (nothing of
    it applies) and :class:`StateIncomplete` when ``state`` lacks a part it needs.
    """
    work = _caught_up(programme, state, ctx or Context(), event.occurred_at)
    if isinstance(event, PaidOrder):
        postings, forfeited = _order_paid(work, event)
        work.events.append(domain.OrderPaid(event.key, state.profile.external_id, _sum(postings)))
        return work.outcome(postings, forfeited=forfeited)
    if isinstance(event, Refund):
        postings = _order_refunded(work, event)
        work.events.append(
            domain.OrderRefunded(event.key, state.profile.external_id, _sum(postings))
        )
        return work.outcome(postings)
    postings = _custom(work, event)
    work.events.append(
        domain.EventProcessed(event.type, event.key, state.profile.external_id, _sum(postings))
    )
    return work.outcome(postings)


def _sum(entries: list[NewEntry]) -> int:
    return sum(map(_POINTS, entries))


def _currency(programme: Programme, currency: str) -> str:
    if currency == programme.currency:  # the programme's own code is already normalised
        return currency
    code = normalise_currency(currency)
    if code != programme.currency:
        raise InvalidInput(
            f"The programme runs in {programme.currency}; this amount is in {code}.",
            code="currency_mismatch",
            details={"expected": programme.currency, "got": code},
        )
    return code


def _minor(ctx: Context, amount: Decimal, currency: str, field_name: str) -> int:
    """``amount`` in minor units, within ``ctx.max_amount`` (else ``amount_too_large``)."""
    return check_max_amount(
        _to_minor(amount, currency, field=field_name), currency, ctx.max_amount, field=field_name
    )


def _earn(
    work: _Work,
    facts: EventFacts,
    *,
    source_type: str,
    source_ref: str,
    order_id: int | None,
    pending: bool,
) -> list[NewEntry]:
    programme = work.programme
    postings = evaluate(programme, work.snapshot(facts.event_type, facts.occurred_at), facts)
    if not postings:
        return []
    at = facts.occurred_at
    expires_at = expiry_for(programme, at)
    until = work.design.pending_until(at) if pending else None
    entries = []
    for p in postings:
        entries.append(
            work.credit(
                entry_type="earn",
                points=p.points,
                reason=p.reason,
                source_type=source_type,
                source_ref=source_ref,
                occurred_at=at,
                actor=work.ctx.actor,
                rule_id=p.rule_id,
                order_id=order_id,
                expires_at=expires_at,
                pending_until=until,
                details={"event_id": facts.event_id},
            )
        )
        work.count_rule(p.rule_id, at, p.points)
    return entries


def _order_paid(work: _Work, event: PaidOrder) -> tuple[list[NewEntry], int]:
    programme, ctx = work.programme, work.ctx
    currency = _currency(programme, event.currency)
    total_minor = _minor(ctx, event.total, currency, "order.total")
    lines = (
        tuple(
            OrderLine(
                line.sku,
                line.category,
                line.quantity,
                _minor(ctx, line.unit_price, currency, f"order.items.{n}.unit_price"),
            )
            for n, line in enumerate(event.lines)
        )
        if event.lines
        else ()
    )
    if work.orders.get(event.order_id) is not None:
        raise OrderAlreadyRecorded(
            f"Order '{event.order_id}' was already recorded by another event.",
            details={"order_id": event.order_id},
        )
    facts = EventFacts(
        ORDER_PAID,  # event_type
        event.occurred_at,
        event.properties,
        event.key,  # event_id
        event.order_id,
        total_minor,  # order_total_minor
        currency,
        event.channel,
        event.store,
        tuple(Item(x.sku, x.category, x.quantity, x.unit_price_minor) for x in lines)
        if lines
        else (),  # items
    )
    order_ref = work.ref()
    entries = _earn(
        work,
        facts,
        source_type="order",
        source_ref=event.order_id,
        order_id=order_ref,
        pending=True,
    )
    order = OrderState(
        order_ref,  # id
        work.state.member_id,
        event.order_id,  # external_id
        total_minor,
        0,  # refunded_minor
        currency,
        _sum(entries),  # points_earned
        0,  # points_reversed
        event.occurred_at,
        "paid",  # status
    )
    work.set_order(event.order_id, order)
    work.new_orders.append(NewOrder(order, event.channel, event.store, lines))
    work.count_order(order, total_minor)
    fig = work.fig
    last = fig.last_order_at
    fig.qualifying_spend_minor += total_minor
    fig.orders_count += 1
    fig.last_order_at = event.occurred_at if last is None or event.occurred_at > last else last
    entries.extend(work.upgrade(event.occurred_at))
    forfeited = _spend_thresholds(work, event)
    return entries, forfeited


def _spend_thresholds(work: _Work, event: PaidOrder) -> int:
    """Seed 003: each multiple of ``every`` crossed by net spend issues the rule's reward once.

    A high-water mark of net spend makes a refunded and re-bought 500 € count once. One event
    issues at most the rule's ``max_per_event`` rewards (the lowest crossings); the rest are
    forfeited, the high-water mark moves past them all, and ``threshold.forfeited`` records
    them. Returns how many crossings were forfeited.
    """
    fig = work.fig
    before = fig.spend_high_water_minor
    after = max(before, fig.qualifying_spend_minor)
    fig.spend_high_water_minor = after
    if after == before:
        return 0
    exp = work.design.exp
    forfeited_total = 0
    for rule, step in work.design.thresholds:
        first, last = before // step + 1, after // step
        issued_to = min(last, first + rule.max_per_event - 1)
        for multiple in range(first, issued_to + 1):
            work.events.append(
                Crossing(
                    rule_id=rule.id,
                    reward_id=rule.reward,
                    crossed=Decimal(multiple * step).scaleb(-exp),
                    order_id=event.order_id,
                    at=event.occurred_at,
                )
            )
        forfeited = max(0, last - issued_to)
        if forfeited:
            forfeited_total += forfeited
            work.events.append(
                domain.ThresholdForfeited(
                    rule_id=rule.id,
                    reward_id=rule.reward,
                    order_id=event.order_id,
                    event_id=event.key,
                    issued=issued_to - first + 1,
                    forfeited=forfeited,
                    max_per_event=rule.max_per_event,
                    at=event.occurred_at,
                )
            )
    return forfeited_total


def _order_refunded(work: _Work, event: Refund) -> list[NewEntry]:
    if event.order_id not in work.orders:
        raise StateIncomplete("orders", event.order_id)
    order = work.orders[event.order_id]
    external_id = work.state.profile.external_id
    if order is None or order.member_id != work.state.member_id:
        raise OrderNotFound(
            f"No order '{event.order_id}' for customer '{external_id}'.",
            details={"order_id": event.order_id},
        )
    if event.occurred_at < order.occurred_at:
        raise RefundBeforeOrder(
            f"The refund is dated before order '{order.external_id}' was paid.",
            details={
                "order_id": order.external_id,
                "order_occurred_at": order.occurred_at.isoformat(),
                "occurred_at": event.occurred_at.isoformat(),
            },
        )
    if event.currency is not None and normalise_currency(event.currency) != order.currency:
        raise InvalidInput(
            f"Order '{order.external_id}' was paid in {order.currency}.",
            code="currency_mismatch",
            details={"expected": order.currency, "got": event.currency},
        )
    left = order.total_minor - order.refunded_minor
    amount = (
        left
        if event.amount is None
        else _minor(work.ctx, event.amount, order.currency, "refund.amount")
    )
    if event.amount is not None and amount == 0:
        raise InvalidInput(
            "A refund amount must be greater than zero.",
            code="invalid_amount",
            details={"field": "refund.amount", "value": str(event.amount)},
        )
    if amount <= 0 or amount > left:
        raise RefundExceedsOrder(
            f"Order '{order.external_id}' has {left} minor units left to refund;"
            f" {amount} requested.",
            details={
                "order_id": order.external_id,
                "refundable_minor": left,
                "requested_minor": amount,
            },
        )
    refunded_after = order.refunded_minor + amount
    points = reversal_points(
        earned=order.points_earned,
        reversed_before=order.points_reversed,
        total_minor=order.total_minor,
        refunded_after_minor=refunded_after,
    )
    entries: list[NewEntry] = []
    reversed_after = order.points_reversed
    if points > 0:
        entries.append(
            work.debit(
                entry_type="reverse",
                points=points,
                reason=f"Refund of order {order.external_id}",
                source_type="order",
                source_ref=order.external_id,
                occurred_at=event.occurred_at,
                actor=work.ctx.actor,
                order_id=order.id,
                allow_shortfall=True,
                prefer_order_id=order.id,
                details={"event_id": event.key, "refund_minor": amount},
            )
        )
        # The order's debt is settled whether the points were still there or not; what could
        # not be taken back is on the entry (and the account) as shortfall.
        reversed_after += points
    changed = msgspec.structs.replace(
        order,
        refunded_minor=refunded_after,
        points_reversed=reversed_after,
        status="refunded" if refunded_after == order.total_minor else "partially_refunded",
    )
    work.set_order(event.order_id, changed)
    work.count_order(order, -amount)
    work.fig.qualifying_spend_minor -= amount
    return entries


def _custom(work: _Work, event: Custom) -> list[NewEntry]:
    facts = EventFacts(
        event.type,  # event_type
        event.occurred_at,
        event.properties,
        event.key,  # event_id
    )
    entries = _earn(
        work, facts, source_type="event", source_ref=event.key, order_id=None, pending=False
    )
    tiers = work.programme.tiers
    if tiers is not None and tiers.basis == "points" and entries:
        entries.extend(work.upgrade(event.occurred_at))
    return entries


__all__ = [
    "Context",
    "Custom",
    "EngineEvent",
    "Figures",
    "Line",
    "PaidOrder",
    "Refund",
    "apply",
    "catch_up",
]
