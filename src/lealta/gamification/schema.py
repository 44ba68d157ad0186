"""The ``badges``, ``challenges``, ``streaks`` and ``leaderboards`` sections.

Badge conditions are metric thresholds (orders, spend, count of a custom event type, tier
reached) rather than free CEL, so that a new badge can be backfilled over every member with
one ``INSERT ... SELECT`` and evaluated for one member with a few indexed counts.
Challenges count events of a type (optionally filtered by CEL in the earning rules'
environment) or add up spend, per period; streaks count consecutive months with an order.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from lealta.programme.types import Cel, EventType, Model, Name, Slug

Icon = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
BADGE_METRICS = ("orders", "spend", "events", "tier")


class BadgeCondition(Model):
    """``orders`` / ``spend`` (major units) / ``events`` of ``event_type``: at least
    ``at_least``; ``tier``: the member's tier is ``tier`` or a higher one."""

    metric: Literal["orders", "spend", "events", "tier"]
    at_least: Annotated[Decimal, Field(gt=0, max_digits=18, allow_inf_nan=False)] = Decimal(1)
    event_type: EventType | None = None
    tier: Slug | None = None

    @model_validator(mode="after")
    def _fields(self) -> BadgeCondition:
        if self.metric == "events" and self.event_type is None:
            raise ValueError("an events condition needs event_type")
        if self.metric != "events" and self.event_type is not None:
            raise ValueError("only an events condition has event_type")
        if self.metric == "tier" and self.tier is None:
            raise ValueError("a tier condition needs tier")
        if self.metric != "tier" and self.tier is not None:
            raise ValueError("only a tier condition has tier")
        if self.metric in ("orders", "events") and self.at_least != int(self.at_least):
            raise ValueError("a count threshold is a whole number")
        return self


class Badge(Model):
    id: Slug
    name: Name
    description: Name | None = None
    icon: Icon = Field(default="star", description="An SVG under /static/badges/<icon>.svg.")
    condition: BadgeCondition
    points: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    active: bool = True


class ChallengeGoal(Model):
    """``count`` events, or ``spend`` (major units, order totals) in one period."""

    measure: Literal["count", "spend"] = "count"
    target: Annotated[Decimal, Field(gt=0, max_digits=18, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _whole(self) -> ChallengeGoal:
        if self.measure == "count" and self.target != int(self.target):
            raise ValueError("a count target is a whole number")
        return self


class Challenge(Model):
    id: Slug
    name: Name
    description: Name | None = None
    event_type: EventType = "order.paid"
    when: Cel | None = Field(
        default=None,
        description="Optional CEL filter over event, order, items, member, time (as in rules).",
    )
    goal: ChallengeGoal
    period: Literal["fixed", "month", "week"] = "month"
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    clock: Literal["member", "programme"] = Field(
        default="member", description="Whose time zone cuts months and weeks."
    )
    points: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    reward: Slug | None = Field(default=None, description="A reward id issued as a coupon.")

    @model_validator(mode="after")
    def _window(self) -> Challenge:
        if self.period == "fixed" and (self.starts_at is None or self.ends_at is None):
            raise ValueError("a fixed challenge needs starts_at and ends_at")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.goal.measure == "spend" and self.event_type != "order.paid":
            raise ValueError("a spend goal counts order.paid events")
        return self

    def live(self, at: datetime) -> bool:
        if self.starts_at is not None and at < self.starts_at:
            return False
        return self.ends_at is None or at < self.ends_at


class Rung(Model):
    months: Annotated[int, Field(ge=2, le=120)]
    points: Annotated[int, Field(ge=1, le=1_000_000)]


class Streak(Model):
    """Orders in consecutive calendar months of the member's time zone."""

    id: Slug
    name: Name
    description: Name | None = None
    event_type: EventType = "order.paid"
    ladder: Annotated[list[Rung], Field(min_length=1, max_length=20)]

    @model_validator(mode="after")
    def _ladder(self) -> Streak:
        months = [r.months for r in self.ladder]
        if months != sorted(set(months)):
            raise ValueError("ladder rungs go up in months, each once")
        return self


class Leaderboard(Model):
    id: Slug
    name: Name
    metric: Literal["points", "challenge"] = "points"
    challenge: Slug | None = Field(default=None, description="metric challenge: whose progress.")
    period: Literal["month", "week", "all"] = "month"
    size: Annotated[int, Field(ge=3, le=100)] = 10

    @model_validator(mode="after")
    def _metric(self) -> Leaderboard:
        if (self.metric == "challenge") != (self.challenge is not None):
            raise ValueError("metric challenge needs challenge (and only it)")
        return self


def _unique(where: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise ValueError(f"{where}.{i}.id: duplicate id '{value}'")
        seen.add(value)


def check(programme: Any) -> None:
    """Cross-references of the sections, as ValueError."""
    _unique("badges", [b.id for b in programme.badges])
    _unique("challenges", [c.id for c in programme.challenges])
    _unique("streaks", [s.id for s in programme.streaks])
    _unique("leaderboards", [b.id for b in programme.leaderboards])
    tier_ids = {t.id for t in programme.tiers.levels} if programme.tiers else set()
    reward_ids = {r.id for r in programme.rewards}
    challenge_ids = {c.id for c in programme.challenges}
    for i, badge in enumerate(programme.badges):
        if badge.condition.tier is not None and badge.condition.tier not in tier_ids:
            raise ValueError(f"badges.{i}.condition.tier: unknown tier '{badge.condition.tier}'")
    for i, challenge in enumerate(programme.challenges):
        if challenge.reward is not None and challenge.reward not in reward_ids:
            raise ValueError(f"challenges.{i}.reward: unknown reward '{challenge.reward}'")
        if challenge.points == 0 and challenge.reward is None:
            raise ValueError(f"challenges.{i}: give points or a reward")
    for i, board in enumerate(programme.leaderboards):
        if board.challenge is not None and board.challenge not in challenge_ids:
            raise ValueError(f"leaderboards.{i}.challenge: unknown challenge '{board.challenge}'")
