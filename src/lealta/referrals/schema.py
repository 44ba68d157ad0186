"""The ``referrals`` section of the programme document.

A member shares a code (link ``/r/<code>``); a friend who signs up or orders with it is
*referred*. The friend gets a welcome reward (points and/or a coupon reward) at sign-up or at
qualification; the referrer is rewarded when the friend's first order of at least
``minimum_order`` is older than ``return_window_days`` and not refunded. Amounts for the
referrer may differ per tier (``referrer_points_by_tier``, seed 000: double for Platino).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from lealta.programme.types import Model, Money, Name, Slug

Policy = Literal["refuse", "flag"]


class Referrals(Model):
    """The referral programme: who earns what, when, and the fraud checks."""

    enabled: bool = False
    name: Name | None = Field(
        default=None, description="Title of the offer (cockpit, landing page)."
    )
    friend_offer: Name | None = Field(
        default=None, description="What the friend gets, in words (landing page)."
    )
    referrer_points: Annotated[int, Field(ge=0, le=10_000_000)] = Field(
        default=0, description="Points for the referrer when a referral qualifies."
    )
    referrer_points_by_tier: dict[Slug, Annotated[int, Field(ge=0, le=10_000_000)]] = Field(
        default_factory=dict, description="Referrer points per tier id (else referrer_points)."
    )
    friend_points: Annotated[int, Field(ge=0, le=10_000_000)] = Field(
        default=0, description="Welcome points for the friend."
    )
    friend_reward: Slug | None = Field(
        default=None, description="A coupon reward id issued to the friend as welcome."
    )
    friend_rewarded_at: Literal["signup", "qualified"] = Field(
        default="signup", description="When the friend gets the welcome reward."
    )
    minimum_order: Money = Field(
        default=Decimal(0),
        description="Smallest order total that qualifies a referral.",
    )
    return_window_days: Annotated[int, Field(ge=0, le=365)] = Field(
        default=30, description="Days the qualifying order must stay unrefunded."
    )
    max_per_month: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None, description="Referrals per referrer per calendar month (UTC)."
    )
    max_total: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, description="Referrals per referrer ever."
    )
    on_cap: Policy = Field(default="flag", description="A referral over a cap: refuse or flag.")
    on_self_referral: Policy = Field(
        default="refuse",
        description="Friend sharing email, phone, address, payment or device: refuse or flag.",
    )
    signup_url: Annotated[str, Field(max_length=500)] | None = Field(
        default=None, description="The shop's sign-up page; {code} is replaced by the code."
    )

    @field_validator("signup_url")
    @classmethod
    def _signup_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://", "/")):
            raise ValueError("signup_url must be an http(s) URL or a path")
        return value

    def referrer_points_for(self, tier_id: str | None) -> int:
        if tier_id is not None and tier_id in self.referrer_points_by_tier:
            return self.referrer_points_by_tier[tier_id]
        return self.referrer_points


def check(programme: Any) -> None:
    """Cross-references of the section (tiers, rewards), as ValueError."""
    section: Referrals = programme.referrals
    tier_ids = {t.id for t in programme.tiers.levels} if programme.tiers else set()
    for tier in section.referrer_points_by_tier:
        if tier not in tier_ids:
            raise ValueError(f"referrals.referrer_points_by_tier: unknown tier '{tier}'")
    if section.friend_reward is not None:
        reward = programme.reward(section.friend_reward)
        if reward is None:
            raise ValueError(f"referrals.friend_reward: unknown reward '{section.friend_reward}'")
        if reward.coupon is None:
            raise ValueError(
                f"referrals.friend_reward: reward '{section.friend_reward}' issues no coupon"
            )
