"""Rewards API payloads: the member's catalogue and redemptions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lealta.coupons.schemas import CouponOut


class LockedReasonOut(BaseModel):
    """Why a reward cannot be redeemed now.

    ``code`` is one of ``not_redeemable``, ``not_available_yet``, ``no_longer_available``,
    ``tier_required``, ``segment_required``, ``not_eligible``, ``limit_reached``, ``out_of_stock``,
    ``insufficient_points`` (``details.points_needed`` says how many more).
    """

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class CouponTermsOut(BaseModel):
    percent_off: str | None
    amount_off: str | None
    free_shipping: bool
    minimum_order: str
    skus: list[str] | None
    categories: list[str] | None
    valid_days: int


class RewardOut(BaseModel):
    id: str
    type: str
    name: str
    description: str | None
    cost: int
    redeemable: bool
    locked_reasons: list[LockedReasonOut]
    stock_left: int | None
    per_member_limit: int | None
    redeemed_by_member: int
    available_from: datetime | None
    available_until: datetime | None
    tiers: list[str] | None
    coupon: CouponTermsOut | None
    value_per_point: str | None


class MemberRewardsOut(BaseModel):
    customer_id: str
    points_available: int
    tier: str | None
    currency: str
    items: list[RewardOut]


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    points: Annotated[int, Field(ge=1, le=100_000_000)] | None = Field(
        default=None,
        description="pay_with_points only: points to convert (at least the reward's cost).",
    )


class RedemptionOut(BaseModel):
    id: int
    customer_id: str
    reward_id: str
    reward_type: str
    points: int
    status: str
    coupon: CouponOut | None
    value: str | None = Field(description="pay_with_points: the currency value of the points.")
    currency: str
    fulfilment: dict[str, Any]
    created_at: datetime
    rolled_back_at: datetime | None
    points_available: int | None = Field(
        default=None, description="The member's spendable points after this operation."
    )


class RedemptionPage(BaseModel):
    items: list[RedemptionOut]
