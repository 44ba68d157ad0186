"""The ``plans`` section of the programme document (seed 001's paid membership)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from lealta.programme.types import Model, Money, Slug, Translations


class Perk(Model):
    """A benefit held as data (free returns, early access, …): shown, not computed."""

    id: Slug
    name: Translations


class Plan(Model):
    """A paid plan: what it costs, how often, and what it gives while paid for."""

    id: Slug
    name: Translations
    description: Translations | None = None
    fee: Annotated[Money, Field(gt=0)] = Field(description="Price per billing period.")
    period: Literal["month", "year"] = "month"
    trial_days: Annotated[int, Field(ge=0, le=365)] = 0
    grace_days: Annotated[int, Field(ge=0, le=60)] = Field(
        default=7, description="Benefits kept this long after a failed renewal payment."
    )
    tier_floor: Slug | None = Field(
        default=None, description="While the plan holds, the member is at least in this tier."
    )
    multiplier: Annotated[Decimal, Field(ge=1, le=20)] = Field(
        default=Decimal(1), description="Extra factor on an order's base points (1 = none)."
    )
    perks: list[Perk] = Field(default_factory=list, max_length=50)
    active: bool = Field(default=True, description="Open to new subscriptions.")

    @model_validator(mode="after")
    def _unique_perks(self) -> Plan:
        ids = [p.id for p in self.perks]
        if len(set(ids)) != len(ids):
            raise ValueError("perks: duplicate id")
        return self


def check(programme: Any) -> None:
    """Plan ids are unique and a tier floor names a tier of the programme."""
    seen: set[str] = set()
    tiers = {t.id for t in programme.tiers.levels} if programme.tiers else set()
    for i, plan in enumerate(programme.plans):
        if plan.id in seen:
            raise ValueError(f"plans.{i}.id: duplicate id '{plan.id}'")
        seen.add(plan.id)
        if plan.tier_floor is not None and plan.tier_floor not in tiers:
            raise ValueError(f"plans.{i}.tier_floor: unknown tier '{plan.tier_floor}'")
