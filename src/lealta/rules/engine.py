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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from lealta.kit.money import exponent
from lealta.ledger.maths import round_points
from lealta.programme.schema import EarningRule, Programme
from lealta.rules.cel import CelCompileError, CelRuntimeError, Expression, compile_expression

BASE_RULE_ID = "base"


@dataclass(frozen=True, slots=True)
class RuleUsage:
    """What one capped rule already gave this member, at the event's time."""

    points_day: int = 0
    points_month: int = 0
    points_lifetime: int = 0
    times_day: int = 0
    times_lifetime: int = 0


@dataclass(frozen=True, slots=True)
class MemberSnapshot:
    member_id: int
    external_id: str
    tier: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    qualifying_spend_minor: int = 0
    orders_count: int = 0
    timezone: str = "UTC"
    language: str = "es"
    usage: Mapping[str, RuleUsage] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Item:
    sku: str
    category: str | None
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True, slots=True)
class EventFacts:
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


@dataclass(frozen=True, slots=True)
class Posting:
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


@dataclass(frozen=True)
class CompiledProgramme:
    programme: Programme
    rules: tuple[CompiledRule, ...]
    eligibility: Mapping[str, Expression]

    def rules_for(self, event_type: str) -> list[CompiledRule]:
        return [r for r in self.rules if r.rule.event == event_type and r.rule.active]


def compile_programme(programme: Programme) -> CompiledProgramme:
    """Parse every CEL expression once; raise :class:`ProgrammeCompileError` with its path."""
    compiled: list[CompiledRule] = []
    for i, rule in enumerate(programme.rules):
        condition = _compile(f"rules.{i}.condition", rule.condition)
        per = _compile(f"rules.{i}.per", rule.per)
        compiled.append(CompiledRule(rule, condition, per))
    eligibility: dict[str, Expression] = {}
    for i, reward in enumerate(programme.rewards):
        expr = _compile(f"rewards.{i}.eligibility", reward.eligibility)
        if expr is not None:
            eligibility[reward.id] = expr
    return CompiledProgramme(programme, tuple(compiled), eligibility)


def _compile(path: str, source: str | None) -> Expression | None:
    if source is None:
        return None
    try:
        return compile_expression(source)
    except CelCompileError as exc:
        raise ProgrammeCompileError(path, str(exc)) from exc


def activation(member: MemberSnapshot, event: EventFacts, currency: str) -> dict[str, Any]:
    """The variables CEL expressions see: ``event``, ``order``, ``items``, ``member``, ``time``."""
    exp = exponent(currency)
    items = [
        {
            "sku": i.sku,
            "category": i.category or "",
            "quantity": i.quantity,
            "unit_price": float(Decimal(i.unit_price_minor).scaleb(-exp)),
            "total": float(Decimal(i.unit_price_minor * i.quantity).scaleb(-exp)),
        }
        for i in event.items
    ]
    order: dict[str, Any] = {}
    if event.order_total_minor is not None:
        order = {
            "id": event.order_id or "",
            "total": float(Decimal(event.order_total_minor).scaleb(-exp)),
            "currency": event.currency or currency,
            "channel": event.channel or "",
            "store": event.store or "",
            "items": items,
        }
    local = event.occurred_at.astimezone(_zone(member.timezone))
    return {
        "event": {
            "type": event.event_type,
            "id": event.event_id or "",
            "properties": dict(event.properties),
        },
        "order": order,
        "items": items,
        "member": {
            "id": member.external_id,
            "tier": member.tier or "",
            "tags": list(member.tags),
            "attributes": dict(member.attributes),
            "qualifying_spend": float(Decimal(member.qualifying_spend_minor).scaleb(-exp)),
            "orders_count": member.orders_count,
            "language": member.language,
        },
        "time": {
            "weekday": local.weekday(),
            "hour": local.hour,
            "day": local.day,
            "month": local.month,
            "year": local.year,
            "date": local.date().isoformat(),
            "timestamp": event.occurred_at.astimezone(UTC),
        },
    }


_compiled_cache: OrderedDict[int, CompiledProgramme] = OrderedDict()


def compiled_for(programme: Programme | CompiledProgramme) -> CompiledProgramme:
    """The compiled form of ``programme``, compiled once and kept (LRU of 32 versions)."""
    if isinstance(programme, CompiledProgramme):
        return programme
    key = id(programme)
    hit = _compiled_cache.get(key)
    if hit is not None and hit.programme is programme:
        _compiled_cache.move_to_end(key)
        return hit
    compiled = compile_programme(programme)
    _compiled_cache[key] = compiled
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
    env: dict[str, Any] | None = None

    def get_env() -> dict[str, Any]:
        nonlocal env
        if env is None:
            env = activation(member, event, programme.currency)
        return env

    base_exact = Decimal(0)
    if event.event_type == "order.paid" and event.order_total_minor is not None:
        total = Decimal(event.order_total_minor).scaleb(-exponent(programme.currency))
        if total >= programme.earning.minimum_order:
            tier = programme.tier(member.tier)
            multiplier = tier.multiplier if tier else Decimal(1)
            base_exact = total * programme.earning.points_per_unit * multiplier
            points = round_points(base_exact, rounding)
            if points > 0:
                label = f" x {multiplier} ({tier.name.es})" if tier else ""
                postings.append(
                    Posting(
                        points,
                        BASE_RULE_ID,
                        f"{programme.earning.points_per_unit} pt/{programme.currency}{label}",
                    )
                )
    for rule in compiled.rules_for(event.event_type):
        if not _applies(rule, member, event, get_env):
            continue
        r = rule.rule
        if r.kind == "multiplier":
            assert r.factor is not None
            exact = base_exact * (r.factor - 1)
        elif r.kind == "points":
            assert r.points is not None
            exact = r.points
        else:
            assert r.points is not None and rule.per is not None
            quantity = _quantity(rule.per, get_env())
            if quantity is None:
                continue
            exact = r.points * quantity
        usage = member.usage.get(r.id, RuleUsage()) if r.caps is not None else RuleUsage()
        points = _apply_caps(r, usage, round_points(exact, rounding))
        if points > 0:
            postings.append(Posting(points, r.id, r.label("en")))
    return postings


def _applies(rule: CompiledRule, member: MemberSnapshot, event: EventFacts, get_env: Any) -> bool:
    r = rule.rule
    if r.window is not None and not r.window.contains(event.occurred_at):
        return False
    if r.tiers is not None and member.tier not in r.tiers:
        return False
    if r.tags is not None and not set(r.tags) & set(member.tags):
        return False
    return rule.condition is None or rule.condition.test(get_env())


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
