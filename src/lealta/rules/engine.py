"""Rule evaluation: a pure function of (compiled programme, member snapshot, event facts).

No database and no clock: ingestion gathers the member snapshot (tier, tags, attributes and
how much each capped rule already gave) and turns the returned postings into ledger credits.
A programme version is compiled once (CEL parsed, tiers indexed) and cached by the caller.

Semantics, in order, for one event:
1. ``order.paid`` at or above ``earning.minimum_order`` earns the base rate times the tier
   multiplier of the tier the member holds when the order occurs (rule id ``base``).
2. Each active ``multiplier`` rule that matches adds ``(factor - 1)`` times the base points.
3. Each active ``points`` / ``per_unit`` rule listening to the event type that matches adds
   its points, clipped by its caps.
Each posting is rounded on its own by the programme's rounding policy (default: down).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from lealta.kit.money import exponent
from lealta.ledger.maths import round_points
from lealta.plans.schema import Plan
from lealta.programme.schema import EarningRule, Programme
from lealta.rules.cel import (
    CelCompileError,
    CelRuntimeError,
    Expression,
    compile_expression,
    memo_key_of,
)

BASE_RULE_ID = "base"
PLAN_RULE_PREFIX = "plan:"
CAMPAIGN_RULE_PREFIX = "campaign:"
"""Rule id of the points a paid plan's multiplier adds (``plan:<plan id>``)."""


class RuleUsage(msgspec.Struct, frozen=True, gc=False):
    """What one capped rule already gave this member, at the event's time."""

    points_day: int = 0
    points_month: int = 0
    points_lifetime: int = 0
    times_day: int = 0
    times_lifetime: int = 0


class Boost(msgspec.Struct, frozen=True, gc=False):
    """A campaign's temporary earning multiplier for one member: ``factor`` on the base points
    of orders paid from ``starts`` (when the campaign reached the member) until ``until``."""

    campaign_id: str
    factor: Decimal
    starts: datetime
    until: datetime

    def holds(self, at: datetime) -> bool:
        return self.starts <= at < self.until


class MemberSnapshot(msgspec.Struct, frozen=True, gc=False):
    member_id: int
    external_id: str
    tier: str | None = None
    attributes: Mapping[str, Any] = msgspec.field(default_factory=dict)
    tags: tuple[str, ...] = ()
    qualifying_spend_minor: int = 0
    orders_count: int = 0
    timezone: str = "UTC"
    language: str = "es"
    usage: Mapping[str, RuleUsage] = msgspec.field(default_factory=dict)
    plan: str | None = None
    """The paid plan whose benefits hold at the event (None: none)."""
    segments: tuple[str, ...] = ()
    """Keys of the member's segments (:mod:`lealta.segments`)."""
    boosts: tuple[Boost, ...] = ()
    """Campaign multipliers the member was given (:mod:`lealta.campaigns`)."""


class Item(msgspec.Struct, frozen=True, gc=False):
    sku: str
    category: str | None
    quantity: int
    unit_price_minor: int


class EventFacts(msgspec.Struct, frozen=True, gc=False):
    """The event as rules see it: type, time, properties and (for orders) the order."""

    event_type: str
    occurred_at: datetime
    properties: Mapping[str, Any]
    event_id: str | None = None
    order_id: str | None = None
    order_total_minor: int | None = None
    currency: str | None = None
    channel: str | None = None
    store: str | None = None
    items: tuple[Item, ...] = ()


class Posting(msgspec.Struct, frozen=True, gc=False):
    points: int
    rule_id: str
    reason: str


class ProgrammeCompileError(ValueError):
    """A programme whose CEL does not compile; ``path`` is where in the document."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class CompiledRule:
    rule: EarningRule
    condition: Expression | None
    per: Expression | None
    tags: frozenset[str] | None = None
    label: str = ""
    """The posting's reason (the rule's English name)."""
    starts: datetime | None = None
    ends: datetime | None = None
    """The rule's window in UTC (an instant compares the same in any zone; UTC compares
    fastest)."""
    segments: frozenset[str] | None = None
    """The rule's segments; None when it has none (an empty list, too, means any member)."""

    def in_window(self, at: datetime) -> bool:
        """As ``rule.window.contains(at)``; True without a window."""
        return (self.starts is None or at >= self.starts) and (self.ends is None or at < self.ends)


@dataclass(frozen=True)
class CompiledProgramme:
    programme: Programme
    rules: tuple[CompiledRule, ...]
    eligibility: Mapping[str, Expression]
    by_event: Mapping[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    """The active rules listening to each event type, in programme order."""
    base: Mapping[str | None, tuple[Decimal, str]] = field(default_factory=dict)
    """Per tier id (None and unknown ids: no tier) the base multiplier and posting reason."""
    plans: Mapping[str | None, Plan] = field(default_factory=dict)
    """The programme's plans by id (the first with an id, as Programme.plan() finds it; the
    engine reads them too)."""

    def rules_for(self, event_type: str) -> list[CompiledRule]:
        return list(self.by_event.get(event_type, ()))


def compile_programme(programme: Programme) -> CompiledProgramme:
    """Parse every CEL expression once; raise :class:`ProgrammeCompileError` with its path."""
    compiled: list[CompiledRule] = []
    for i, rule in enumerate(programme.rules):
        condition = _compile(f"rules.{i}.condition", rule.condition)
        per = _compile(f"rules.{i}.per", rule.per)
        tags = frozenset(rule.tags) if rule.tags is not None else None
        window = rule.window
        starts = window.starts_at.astimezone(UTC) if window and window.starts_at else None
        ends = window.ends_at.astimezone(UTC) if window and window.ends_at else None
        segments = frozenset(rule.segments) if rule.segments else None
        label = rule.label("en")
        compiled.append(CompiledRule(rule, condition, per, tags, label, starts, ends, segments))
    eligibility: dict[str, Expression] = {}
    for i, reward in enumerate(programme.rewards):
        expr = _compile(f"rewards.{i}.eligibility", reward.eligibility)
        if expr is not None:
            eligibility[reward.id] = expr
    by_event: dict[str, list[CompiledRule]] = {}
    for c in compiled:
        if c.rule.active:
            by_event.setdefault(c.rule.event, []).append(c)
    rate = f"{programme.earning.points_per_unit} pt/{programme.currency}"
    base: dict[str | None, tuple[Decimal, str]] = {None: (Decimal(1), rate)}
    for level in reversed(programme.tiers.levels if programme.tiers is not None else []):
        # Reversed, so that the first level with an id wins, as Programme.tier() finds it.
        base[level.id] = (level.multiplier, f"{rate} x {level.multiplier} ({level.name.es})")
    return CompiledProgramme(
        programme,
        tuple(compiled),
        eligibility,
        {event: tuple(rules) for event, rules in by_event.items()},
        base,
        {plan.id: plan for plan in reversed(programme.plans)},
    )


def _compile(path: str, source: str | None) -> Expression | None:
    if source is None:
        return None
    try:
        return compile_expression(source)
    except CelCompileError as exc:
        raise ProgrammeCompileError(path, str(exc)) from exc


_NAMES = ("event", "order", "items", "member", "time")
_ORDER_FIELDS = ("id", "total", "currency", "channel", "store", "items")


class Activation(Mapping[str, Any]):
    """The variables CEL expressions see (``event``, ``order``, ``items``, ``member``,
    ``time``), each built the first time an expression reads it, then kept."""

    __slots__ = ("_currency", "_event", "_member", "_values")

    def __init__(self, member: MemberSnapshot, event: EventFacts, currency: str) -> None:
        self._member = member
        self._event = event
        self._currency = currency
        self._values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        values = self._values
        if name in values:
            return values[name]
        if name == "event":
            event = self._event
            value: Any = {
                "type": event.event_type,
                "id": event.event_id or "",
                "properties": dict(event.properties),
            }
        elif name == "items":
            value = self._items()
        elif name == "order":
            value = self._order()
        elif name == "member":
            value = self._member_part()
        elif name == "time":
            value = self._time()
        else:
            raise KeyError(name)
        values[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        return name in _NAMES

    def __iter__(self) -> Iterator[str]:
        return iter(_NAMES)

    def __len__(self) -> int:
        return len(_NAMES)

    def _items(self) -> list[dict[str, Any]]:
        exp = exponent(self._currency)
        return [
            {
                "sku": i.sku,
                "category": i.category or "",
                "quantity": i.quantity,
                "unit_price": float(Decimal(i.unit_price_minor).scaleb(-exp)),
                "total": float(Decimal(i.unit_price_minor * i.quantity).scaleb(-exp)),
            }
            for i in self._event.items
        ]

    def _order(self) -> dict[str, Any]:
        return self._order_fields(_ORDER_FIELDS)

    def part(self, name: str, keys: Iterable[str]) -> Any:
        """``{k: self[name][k] for k in keys if k in self[name]}`` of a map variable (any
        other value whole), computing only those fields of ``order`` (a condition on
        ``order.total`` alone needs neither the items nor the rest)."""
        if name == "order" and name not in self._values:
            return self._order_fields(keys)
        value = self[name]
        return {k: value[k] for k in keys if k in value} if isinstance(value, dict) else value

    def _order_fields(self, keys: Iterable[str]) -> dict[str, Any]:
        """The fields ``keys`` of the ``order`` variable (empty for an event without one)."""
        event = self._event
        if event.order_total_minor is None:
            return {}
        out: dict[str, Any] = {}
        for key in keys:
            if key == "id":
                out[key] = event.order_id or ""
            elif key == "total":
                exp = exponent(self._currency)
                out[key] = float(Decimal(event.order_total_minor).scaleb(-exp))
            elif key == "currency":
                out[key] = event.currency or self._currency
            elif key == "channel":
                out[key] = event.channel or ""
            elif key == "store":
                out[key] = event.store or ""
            elif key == "items":
                out[key] = self["items"]
        return out

    def memo_key(self, reads: Iterable[tuple[str, frozenset[str] | None]]) -> Hashable | None:
        """A key equal for two activations only if ``Expression.bindings`` would hand CEL the
        same values for ``reads`` (each name with the fields read, None: whole), or None (not
        to be remembered). ``order`` and ``items`` are keyed by the event's raw fields, without
        building them; the other variables by their frozen value."""
        out: list[Hashable] = []
        for name, keys in reads:
            if name not in _NAMES:
                continue  # a comprehension variable: never bound
            if name == "order":
                key = self._order_key(_ORDER_FIELDS if keys is None else keys)
            elif name == "items":
                key = self._items_key()
            else:
                key = memo_key_of(self[name] if keys is None else self.part(name, keys))
            if key is None:
                return None
            out.append(key)
        return tuple(out)

    def _order_key(self, keys: Collection[str]) -> Hashable | None:
        """The key of ``_order_fields(keys)``: the raw values its fields are made of."""
        event = self._event
        if event.order_total_minor is None:
            return ("order",)  # no order: {}
        out: list[Hashable] = ["order"]
        for key in keys:
            if key == "total":
                if type(event.order_total_minor) is not int:
                    return self._frozen_order(keys)
                out.append((event.order_total_minor, self._currency))
            elif key == "items":
                items = self._items_key()
                if items is None:
                    return None
                out.append(items)
            elif key in _ORDER_FIELDS:
                text = self._order_fields((key,))[key]
                if type(text) is not str:
                    return self._frozen_order(keys)
                out.append(text)
        return tuple(out)

    def _items_key(self) -> Hashable | None:
        """The key of ``_items()``: each item's raw fields (exact types only, else frozen)."""
        out: list[Hashable] = ["items", self._currency]
        for i in self._event.items:
            sku, category, quantity, price = i.sku, i.category, i.quantity, i.unit_price_minor
            if (
                type(sku) is not str
                or (category is not None and type(category) is not str)
                or type(quantity) is not int
                or type(price) is not int
            ):
                frozen: Hashable | None = memo_key_of(self["items"])
                return frozen
            out.append((sku, category, quantity, price))
        return tuple(out)

    def _frozen_order(self, keys: Collection[str]) -> Hashable | None:
        frozen: Hashable | None = memo_key_of(self._order_fields(keys))
        return frozen

    def _member_part(self) -> dict[str, Any]:
        member = self._member
        exp = exponent(self._currency)
        return {
            "id": member.external_id,
            "tier": member.tier or "",
            "tags": list(member.tags),
            "attributes": dict(member.attributes),
            "qualifying_spend": float(Decimal(member.qualifying_spend_minor).scaleb(-exp)),
            "orders_count": member.orders_count,
            "language": member.language,
            "plan": member.plan or "",
            "segments": list(member.segments),
        }

    def _time(self) -> dict[str, Any]:
        at = self._event.occurred_at
        local = at.astimezone(_zone(self._member.timezone))
        return {
            "weekday": local.weekday(),
            "hour": local.hour,
            "day": local.day,
            "month": local.month,
            "year": local.year,
            "date": local.date().isoformat(),
            "timestamp": at.astimezone(UTC),
        }


def activation(member: MemberSnapshot, event: EventFacts, currency: str) -> dict[str, Any]:
    """The variables CEL expressions see: ``event``, ``order``, ``items``, ``member``, ``time``."""
    return dict(Activation(member, event, currency))


_compiled_cache: OrderedDict[int, CompiledProgramme] = OrderedDict()
_compiled_last: list[CompiledProgramme | None] = [None]
"""The programme compiled last: nearly every call asks for it again."""


def compiled_for(programme: Programme | CompiledProgramme) -> CompiledProgramme:
    """The compiled form of ``programme``, compiled once and kept (LRU of 32 versions)."""
    if isinstance(programme, CompiledProgramme):
        return programme
    last = _compiled_last[0]
    if last is not None and last.programme is programme:
        return last
    key = id(programme)
    hit = _compiled_cache.get(key)
    if hit is not None and hit.programme is programme:
        _compiled_cache.move_to_end(key)
        _compiled_last[0] = hit
        return hit
    compiled = compile_programme(programme)
    _compiled_cache[key] = compiled
    _compiled_last[0] = compiled
    while len(_compiled_cache) > 32:
        _compiled_cache.popitem(last=False)
    return compiled


def evaluate(
    programme_or_compiled: Programme | CompiledProgramme,
    member: MemberSnapshot,
    event: EventFacts,
) -> list[Posting]:
    """Postings this event earns for this member under this programme."""
    compiled = compiled_for(programme_or_compiled)
    programme = compiled.programme
    rounding = programme.earning.rounding
    postings: list[Posting] = []
    env: Activation | None = None

    base_exact = Decimal(0)
    event_type = event.event_type
    if event_type == "order.paid" and event.order_total_minor is not None:
        total = Decimal(event.order_total_minor).scaleb(-exponent(programme.currency))
        if total >= programme.earning.minimum_order:
            multiplier, reason = compiled.base.get(member.tier) or compiled.base[None]
            base_exact = total * programme.earning.points_per_unit * multiplier
            points = round_points(base_exact, rounding)
            if points > 0:
                postings.append(Posting(points, BASE_RULE_ID, reason))
            plan = compiled.plans.get(member.plan) if member.plan is not None else None
            if plan is not None and plan.multiplier != 1:
                extra = round_points(base_exact * (plan.multiplier - 1), rounding)
                if extra > 0:
                    label = f"Plan {plan.name.es} x {plan.multiplier}"
                    postings.append(Posting(extra, f"{PLAN_RULE_PREFIX}{plan.id}", label))
            for boost in member.boosts:
                if boost.factor > 1 and boost.holds(event.occurred_at):
                    extra = round_points(base_exact * (boost.factor - 1), rounding)
                    if extra > 0:
                        label = f"Campaign {boost.campaign_id} x {boost.factor}"
                        rule_id = f"{CAMPAIGN_RULE_PREFIX}{boost.campaign_id}"
                        postings.append(Posting(extra, rule_id[:100], label))
    for rule in compiled.by_event.get(event_type, ()):
        r = rule.rule
        if r.window is not None and not rule.in_window(event.occurred_at):
            continue
        if r.tiers is not None and member.tier not in r.tiers:
            continue
        if rule.tags is not None and rule.tags.isdisjoint(member.tags):
            continue
        if rule.segments is not None and rule.segments.isdisjoint(member.segments):
            continue
        if rule.condition is not None or rule.per is not None:
            if env is None:
                env = Activation(member, event, programme.currency)
            if rule.condition is not None and not rule.condition.test(env):
                continue
        if r.kind == "multiplier":
            assert r.factor is not None
            exact = base_exact * (r.factor - 1)
        elif r.kind == "points":
            assert r.points is not None
            exact = r.points
        else:
            assert r.points is not None and rule.per is not None and env is not None
            quantity = _quantity(rule.per, env)
            if quantity is None:
                continue
            exact = r.points * quantity
        usage = member.usage.get(r.id, _NO_USAGE) if r.caps is not None else _NO_USAGE
        points = _apply_caps(r, usage, round_points(exact, rounding))
        if points > 0:
            postings.append(Posting(points, r.id, rule.label))
    return postings


_NO_USAGE = RuleUsage()
"""What a rule gave a member who has no usage recorded for it (immutable, so shared)."""


def _quantity(expr: Expression, env: Mapping[str, Any]) -> Decimal | None:
    try:
        value = expr.evaluate(env)
    except CelRuntimeError:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    quantity = Decimal(str(value))
    return quantity if quantity > 0 else None


def _apply_caps(rule: EarningRule, usage: RuleUsage, points: int) -> int:
    caps = rule.caps
    if caps is None or points <= 0:
        return points
    if caps.times_per_day is not None and usage.times_day >= caps.times_per_day:
        return 0
    if caps.times_lifetime is not None and usage.times_lifetime >= caps.times_lifetime:
        return 0
    for cap, used in (
        (caps.per_day, usage.points_day),
        (caps.per_month, usage.points_month),
        (caps.lifetime, usage.points_lifetime),
    ):
        if cap is not None:
            points = min(points, max(0, cap - used))
    return points


def _zone(name: str) -> ZoneInfo | Any:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return UTC
