"""API shapes of predicted CLV. Money is a decimal string in the programme's currency."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class BgNbdOut(BaseModel):
    r: float
    alpha: float
    a: float
    b: float


class GammaGammaOut(BaseModel):
    p: float
    q: float
    gamma: float


class ClvModelOut(BaseModel):
    name: str = Field(
        default="bg_nbd+gamma_gamma",
        description="BG/NBD (Fader, Hardie & Lee 2005) for purchases, Gamma-Gamma for spend.",
    )
    fitted_at: datetime
    time_unit: str = Field(default="week", description="Unit of the BG/NBD alpha parameter.")
    customers: int = Field(description="Members with a purchase when the model was fitted.")
    log_likelihood: float
    bg_nbd: BgNbdOut
    gamma_gamma: GammaGammaOut


class MemberClvOut(BaseModel):
    external_id: str
    currency: str
    transactions: int = Field(description="Days with a net purchase (refunds deducted).")
    first_purchase: date
    last_purchase: date
    average_repeat_value: str | None = Field(
        description="Average net value of the repeat purchase days (null with one purchase)."
    )
    expected_purchases_90d: float
    expected_purchases_365d: float
    probability_alive: float = Field(ge=0, le=1)
    expected_order_value: str
    predicted_clv: str = Field(
        description="Discounted expected revenue over the horizon, in the programme's currency."
    )
    horizon_months: int
    annual_discount_rate: float
    model: ClvModelOut


class ClvBucketOut(BaseModel):
    lower: str
    upper: str | None
    members: int
    clv: str


class ClvAggregateOut(BaseModel):
    currency: str
    population: str = Field(
        description="Whose CLV is predicted: `members` (every order belongs to a member)."
    )
    members: int
    members_with_purchases: int
    total_clv: str
    average_clv: str
    median_clv: str
    expected_purchases_365d: float
    average_probability_alive: float
    quantiles: dict[str, str]
    buckets: list[ClvBucketOut]
    horizon_months: int
    annual_discount_rate: float
    model: ClvModelOut
