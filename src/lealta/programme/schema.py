"""The programme document, validated by Pydantic.

One document holds the whole programme: currency, earning rules, tiers, rewards, and the
pending and expiry policies. It is kept as code (YAML or JSON, see ``examples/``), applied as
a new version, and its JSON Schema is published (``lealta programme schema``). Models use
``extra="forbid"`` so a typo is an error with its exact path, never a silent default.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from lealta.gamification import schema as gamification_schema
from lealta.gamification.schema import Badge, Challenge, Leaderboard, Streak
from lealta.kit.money import normalise_currency
from lealta.ledger.maths import Rounding
from lealta.plans import schema as plans_schema
from lealta.plans.schema import Plan
from lealta.programme.types import (
    DEFAULT_TIMEZONE,
    Cel,
    EventType,
    Model,
    Money,
    Name,
    Percent,
    Slug,
    Text,
    Translations,
    check_timezone,
    name_in,
)

__all__ = [
    "DEFAULT_PROGRAMME",
    "Name",
    "Programme",
    "Slug",
    "Translations",
    "json_schema",
    "name_in",
]
from lealta.campaigns import schema as campaigns_schema
from lealta.campaigns.schema import Campaign
from lealta.referrals import schema as referrals_schema
from lealta.referrals.schema import Referrals
from lealta.segments import schema as segments_schema
from lealta.segments.schema import Segment
from lealta.workflows import schema as workflows_schema
from lealta.workflows.schema import Workflow

# --- earning ----------------------------------------------------------------------------


class Earning(Model):
    points_per_unit: Annotated[Decimal, Field(ge=0, le=10_000)] = Field(
        default=Decimal(1), description="Base points per currency unit on paid orders."
    )
    rounding: Rounding = Field(default="down", description="Per order: down, half_up or up.")
    minimum_order: Money = Field(
        default=Decimal(0), description="Orders below this total earn no base points."
    )


class Caps(Model):
    """Limits on how many points one rule gives one member (fraud and cost control)."""

    per_day: Annotated[int, Field(ge=1)] | None = None
    per_month: Annotated[int, Field(ge=1)] | None = None
    lifetime: Annotated[int, Field(ge=1)] | None = None
    times_per_day: Annotated[int, Field(ge=1)] | None = None
    times_lifetime: Annotated[int, Field(ge=1)] | None = None


class Window(Model):
    """When a rule is in force (event time), e.g. a weekend promotion."""

    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def contains(self, at: datetime) -> bool:
        return (self.starts_at is None or at >= self.starts_at) and (
            self.ends_at is None or at < self.ends_at
        )


class EarningRule(Model):
    """A way to earn beyond the base rate.

    ``kind``:
    - ``points``: fixed ``points`` when the event matches;
    - ``per_unit``: ``points`` per unit of the CEL expression ``per`` (e.g. minutes ridden,
      or ``order.total``), rounded by the programme's rounding policy;
    - ``multiplier``: multiplies the base points of a matching ``order.paid`` by ``factor``
      ("double points this weekend": ``factor: 2`` adds the same again).
    """

    id: Slug
    name: Name
    kind: Literal["points", "per_unit", "multiplier"] = "points"
    event: EventType = Field(description="Event type this rule listens to.")
    condition: Cel | None = Field(
        default=None,
        description="CEL over event, order, items, member and time; true means the rule applies.",
    )
    points: Annotated[Decimal, Field(ge=0, le=1_000_000)] | None = None
    per: Cel | None = Field(default=None, description="CEL giving the quantity for per_unit.")
    factor: Annotated[Decimal, Field(gt=0, le=100)] | None = None
    tiers: list[Slug] | None = Field(default=None, description="Only members in these tiers.")
    tags: list[str] | None = Field(default=None, description="Only members with one of these.")
    segments: list[Slug] | None = Field(
        default=None, description="Only members in one of these segments (their keys)."
    )
    window: Window | None = None
    caps: Caps | None = None
    active: bool = True

    def label(self, language: str) -> str:
        return name_in(self.name, language)

    @model_validator(mode="after")
    def _kind_fields(self) -> EarningRule:
        if self.kind in ("points", "per_unit") and self.points is None:
            raise ValueError(f"a '{self.kind}' rule needs 'points'")
        if self.kind == "per_unit" and self.per is None:
            raise ValueError("a 'per_unit' rule needs 'per' (a CEL expression)")
        if self.kind == "multiplier":
            if self.factor is None:
                raise ValueError("a 'multiplier' rule needs 'factor'")
            if self.event != "order.paid":
                raise ValueError("multiplier rules apply to 'order.paid'")
        return self


class SpendThresholdRule(Model):
    """Seed 003: every time cumulative spend crosses a multiple of ``every``, issue a reward."""

    id: Slug
    name: Name
    every: Annotated[Decimal, Field(gt=0)]
    reward: Slug = Field(description="Reward id issued free of points each time.")
    max_per_event: Annotated[int, Field(ge=1, le=100)] = Field(
        default=10,
        description=(
            "Most rewards one event may issue. Crossings beyond it in one event are forfeited"
            " (not issued, not carried); they are reported on the event and in the outbox."
        ),
    )
    active: bool = True

    def label(self, language: str) -> str:
        return name_in(self.name, language)


# --- tiers ------------------------------------------------------------------------------


class Benefits(Model):
    """Tier benefits as data, readable by checkout (``GET /v1/members/{id}/benefits``)."""

    discount_percent: Percent = Decimal(0)
    birthday_discount_percent: Percent = Decimal(0)
    free_shipping: bool = False
    flags: list[Slug] = Field(
        default_factory=list,
        description="Named perks: exclusive_products, priority_support, vip_events, …",
    )


class Tier(Model):
    id: Slug
    name: Translations
    threshold: Annotated[Decimal, Field(ge=0)] = Field(
        description="Qualifying value (currency units or points) from which the tier applies."
    )
    multiplier: Annotated[Decimal, Field(gt=0, le=100)] = Decimal(1)
    benefits: Benefits = Benefits()
    entry_points: Annotated[int, Field(ge=0, le=10_000_000)] = Field(
        default=0,
        description="Welcome points on first reaching this tier, also for each tier skipped.",
    )


class Tiers(Model):
    basis: Literal["spend", "points"] = Field(
        default="spend", description="Net spend, or points earned, counts toward tiers."
    )
    period: Literal["lifetime", "rolling", "calendar_year"] = "lifetime"
    rolling_months: Annotated[int, Field(ge=1, le=120)] | None = None
    grace_days: Annotated[int, Field(ge=0, le=366)] = Field(
        default=0, description="Extra days a tier is kept after its period ends."
    )
    levels: list[Tier] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _levels(self) -> Tiers:
        if self.period == "rolling" and self.rolling_months is None:
            raise ValueError("a rolling period needs 'rolling_months'")
        if self.levels[0].threshold != 0:
            raise ValueError("the first tier must have threshold 0 (everybody starts there)")
        for lower, upper in zip(self.levels, self.levels[1:], strict=False):
            if upper.threshold <= lower.threshold:
                raise ValueError(
                    f"tier '{upper.id}' must have a higher threshold than '{lower.id}'"
                )
        ids = [t.id for t in self.levels]
        if len(set(ids)) != len(ids):
            raise ValueError("tier ids must be unique")
        return self


# --- points lifecycle -------------------------------------------------------------------


class Pending(Model):
    days: Annotated[int, Field(ge=0, le=365)] = Field(
        default=0, description="Order points stay pending this many days (return window)."
    )


class Expiry(Model):
    months: Annotated[int, Field(ge=1, le=120)] | None = Field(
        default=None, description="Points expire this many months after they are earned."
    )
    round_to: Literal["none", "month_end", "quarter_end", "year_end"] = Field(
        default="none", description="Move each expiry date to the end of its period."
    )
    warn_days: Annotated[int, Field(ge=0, le=365)] = Field(
        default=30, description="Points expiring within this many days show as expiring soon."
    )


class Refunds(Model):
    allow_negative_balance: bool = Field(
        default=False,
        description="Reserved: a refund of spent points records a shortfall instead.",
    )


# --- rewards ----------------------------------------------------------------------------


class CouponSpec(Model):
    percent_off: Percent | None = None
    amount_off: Money | None = None
    free_shipping: bool = False
    minimum_order: Money = Decimal(0)
    skus: list[str] | None = None
    categories: list[str] | None = None
    valid_days: Annotated[int, Field(ge=1, le=3650)] = 30
    code_pattern: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9-]*#[#A-Z0-9-]*$")] = (
        "LEA-####-####-####"
    )
    uses_per_coupon: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _one_discount(self) -> CouponSpec:
        given = sum(x is not None for x in (self.percent_off, self.amount_off))
        if given > 1:
            raise ValueError("a coupon has either percent_off or amount_off, not both")
        if given == 0 and not self.free_shipping:
            raise ValueError("a coupon needs percent_off, amount_off or free_shipping")
        return self


class Reward(Model):
    id: Slug
    type: Literal["coupon", "free_shipping", "product", "experience", "pay_with_points"]
    name: Translations
    description: Translations | None = None
    cost: Annotated[int, Field(ge=0, le=100_000_000)] = Field(description="Points it costs.")
    coupon: CouponSpec | None = None
    stock: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Units available; omitted means unlimited."
    )
    available_from: AwareDatetime | None = None
    available_until: AwareDatetime | None = None
    eligibility: Cel | None = Field(
        default=None, description="CEL over member (tier, tags, attributes); true = eligible."
    )
    tiers: list[Slug] | None = Field(default=None, description="Only members in these tiers.")
    segments: list[Slug] | None = Field(
        default=None, description="Only members in one of these segments (their keys)."
    )
    per_member_limit: Annotated[int, Field(ge=1)] | None = None
    value_per_point: Money | None = Field(
        default=None, description="pay_with_points: currency value of one point."
    )

    @model_validator(mode="after")
    def _type_fields(self) -> Reward:
        if self.type == "coupon" and self.coupon is None:
            raise ValueError("a coupon reward needs 'coupon'")
        if self.type == "pay_with_points" and self.value_per_point is None:
            raise ValueError("a pay_with_points reward needs 'value_per_point'")
        if (
            self.available_from
            and self.available_until
            and self.available_until <= self.available_from
        ):
            raise ValueError("available_until must be after available_from")
        return self


# --- the document -----------------------------------------------------------------------


class Programme(Model):
    """The whole programme."""

    name: Text
    currency: str = "EUR"
    timezone: str = Field(
        default=DEFAULT_TIMEZONE,
        description="IANA time zone of the programme (e.g. Europe/Madrid): periodic jobs run"
        " on their cron schedule in it, across daylight-saving changes.",
    )
    earning: Earning = Earning()
    rules: list[EarningRule] = Field(default_factory=list, max_length=500)
    thresholds: list[SpendThresholdRule] = Field(default_factory=list, max_length=50)
    tiers: Tiers | None = None
    pending: Pending = Pending()
    expiry: Expiry = Expiry()
    refunds: Refunds = Refunds()
    rewards: list[Reward] = Field(default_factory=list, max_length=1000)
    attributes: dict[Slug, Literal["string", "int", "float", "bool", "date"]] = Field(
        default_factory=dict, description="Custom member attributes and their types."
    )
    workflows: list[Workflow] = Field(default_factory=list, max_length=200)
    referrals: Referrals = Referrals()
    badges: list[Badge] = Field(default_factory=list, max_length=200)
    challenges: list[Challenge] = Field(default_factory=list, max_length=200)
    streaks: list[Streak] = Field(default_factory=list, max_length=50)
    leaderboards: list[Leaderboard] = Field(default_factory=list, max_length=20)
    segments: list[Segment] = Field(default_factory=list, max_length=200)
    plans: list[Plan] = Field(default_factory=list, max_length=20)
    campaigns: list[Campaign] = Field(default_factory=list, max_length=200)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalise_currency(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _references(self) -> Programme:
        _unique("rules", [r.id for r in self.rules])
        _unique("rewards", [r.id for r in self.rewards])
        tier_ids = {t.id for t in self.tiers.levels} if self.tiers else set()
        reward_ids = {r.id for r in self.rewards}
        for i, rule in enumerate(self.rules):
            for tier in rule.tiers or ():
                if tier not in tier_ids:
                    raise ValueError(f"rules.{i}.tiers: unknown tier '{tier}'")
        for i, reward in enumerate(self.rewards):
            for tier in reward.tiers or ():
                if tier not in tier_ids:
                    raise ValueError(f"rewards.{i}.tiers: unknown tier '{tier}'")
        for i, threshold in enumerate(self.thresholds):
            if threshold.reward not in reward_ids:
                raise ValueError(f"thresholds.{i}.reward: unknown reward '{threshold.reward}'")
        workflows_schema.check(self)
        referrals_schema.check(self)
        gamification_schema.check(self)
        segments_schema.check(self)
        plans_schema.check(self)
        campaigns_schema.check(self)
        return self

    def tier(self, tier_id: str | None) -> Tier | None:
        if self.tiers is None or tier_id is None:
            return None
        return next((t for t in self.tiers.levels if t.id == tier_id), None)

    def reward(self, reward_id: str) -> Reward | None:
        return next((r for r in self.rewards if r.id == reward_id), None)

    def plan(self, plan_id: str | None) -> Plan | None:
        return next((p for p in self.plans if p.id == plan_id), None)

    def rule(self, rule_id: str) -> EarningRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def _unique(where: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise ValueError(f"{where}.{i}.id: duplicate id '{value}'")
        seen.add(value)


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of the programme document."""
    return Programme.model_json_schema(mode="validation")


DEFAULT_PROGRAMME = Programme(name="Lealta", currency="EUR")
