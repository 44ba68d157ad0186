"""Coupon API payloads. Money travels as decimal strings in the cart's currency."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lealta.kit.ids import ExternalId

Amount = Annotated[Decimal, Field(ge=0, max_digits=18, allow_inf_nan=False)]
CouponCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
OrderRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
CustomerId = ExternalId
CouponStatus = Literal["active", "redeemed", "expired", "void"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CartItemIn(_In):
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    category: Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)] | None = None
    quantity: Annotated[int, Field(ge=1, le=100_000)]
    unit_price: Amount


class CartIn(_In):
    """The shopping cart a coupon is checked against; ``total`` is what the customer pays."""

    total: Amount
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    items: list[CartItemIn] = Field(default_factory=list, max_length=1000)


class ValidateIn(_In):
    code: CouponCode
    customer_id: CustomerId | None = None
    cart: CartIn


class RedeemIn(_In):
    order_id: OrderRef
    customer_id: CustomerId | None = None
    cart: CartIn


class RollbackIn(_In):
    order_id: OrderRef


class ValidationOut(BaseModel):
    """Whether the coupon applies to this cart, and for how much.

    ``reason_code`` is one of: ``unknown``, ``void``, ``wrong_member``, ``not_yet_valid``,
    ``expired``, ``used_up``, ``currency_mismatch``, ``minimum_order``, ``no_eligible_items``.
    """

    code: str
    valid: bool
    discount: str
    currency: str
    free_shipping: bool
    eligible_total: str
    reason_code: str | None = None
    reason: str | None = None


class CouponOut(BaseModel):
    code: str
    reward_id: str
    source: str
    status: CouponStatus
    customer_id: str | None
    currency: str
    percent_off: str | None
    amount_off: str | None
    free_shipping: bool
    minimum_order: str
    skus: list[str] | None
    categories: list[str] | None
    valid_from: datetime
    valid_until: datetime
    uses_allowed: int
    uses: int
    created_at: datetime


class CouponUseOut(BaseModel):
    order_id: str
    discount: str
    used_at: datetime
    rolled_back_at: datetime | None


class RedeemOut(BaseModel):
    coupon: CouponOut
    use: CouponUseOut
    free_shipping: bool


class RollbackOut(BaseModel):
    coupon: CouponOut
    use: CouponUseOut


class WalletOut(BaseModel):
    customer_id: str
    items: list[CouponOut]
