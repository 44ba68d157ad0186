from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class BenefitsOut(BaseModel):
    discount_percent: str
    birthday_discount_percent: str
    free_shipping: bool
    flags: list[str]


class TierRef(BaseModel):
    id: str
    name: str
    threshold: str
    multiplier: str


class TierChangeOut(BaseModel):
    from_tier: str | None
    to_tier: str
    direction: str
    qualifying_value: str
    reason: str
    occurred_at: datetime


class TierOut(BaseModel):
    external_id: str
    basis: str = Field(description="spend (net, in currency units) or points")
    period: str = Field(description="lifetime, rolling or calendar_year")
    tier: TierRef
    benefits: BenefitsOut
    since: datetime | None
    held_until: datetime | None = Field(description="Next review; null for lifetime tiers.")
    qualifying_value: str
    next_tier: TierRef | None
    progress_percent: str | None = Field(description="Qualifying value / next threshold.")
    amount_needed: str | None
    estimated_date: date | None = Field(
        description="From the member's own rate over the last year; null without history."
    )
    history: list[TierChangeOut]


class MemberBenefitsOut(BaseModel):
    external_id: str
    tier: str | None
    benefits: BenefitsOut
