"""Typed payloads of the Lealta API.

Requests are built from the ``*In``-free names below (``Event``, ``Order``, ``NewMember``,
``Cart`` …), which refuse unknown fields so a typo fails here rather than on the server.
Responses are parsed into models that keep fields a newer server adds (``model_extra``).
Money travels as decimal strings and is read as :class:`~decimal.Decimal`; every moment is a
timezone-aware :class:`~datetime.datetime`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr

Language = Literal["es", "en"]
ConsentPurpose = Literal["marketing_email", "marketing_sms", "marketing_push", "data_processing"]
AttributeValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """How a call was answered: the final HTTP status, whether the server replayed a stored
    first response (``Idempotent-Replayed: true``), its request id, the idempotency key the
    client sent (the same on every attempt) and how many attempts it took."""

    status_code: int
    replayed: bool
    request_id: str | None
    idempotency_key: str | None
    attempts: int


# --- requests ---------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderItem(_Request):
    sku: str
    category: str | None = None
    quantity: int = 1
    unit_price: Decimal


class Order(_Request):
    id: str = Field(description="The shop's order id; an order is recorded once.")
    total: Decimal
    currency: str
    items: list[OrderItem] = Field(default_factory=list)
    channel: str | None = None
    store: str | None = None


class Refund(_Request):
    order_id: str
    amount: Decimal | None = Field(
        default=None, description="Omitted means whatever is left of the order."
    )
    currency: str | None = None


class MemberProfile(_Request):
    """Profile fields; on an update only the fields set are sent (``None`` clears a field,
    and an attribute set to ``None`` is removed)."""

    email: str | None = None
    phone: str | None = None
    name: str | None = None
    birthday: date | None = None
    language: Language | None = None
    timezone: str | None = None
    attributes: dict[str, AttributeValue] | None = None
    tags: list[str] | None = None


class Consent(_Request):
    purpose: ConsentPurpose
    granted: bool
    source: str = "api"


class NewMember(MemberProfile):
    external_id: str
    enrolment_channel: str = "api"
    consents: list[Consent] = Field(default_factory=list)


class MemberUpdate(MemberProfile):
    pass


class Event(_Request):
    """One event: ``order.paid`` (with ``order``), ``order.refunded`` (with ``refund``) or any
    custom type with ``properties``. ``id`` is the event's natural key."""

    id: str | None = None
    type: str
    customer_id: str
    occurred_at: AwareDatetime
    properties: dict[str, Any] = Field(default_factory=dict)
    order: Order | None = None
    refund: Refund | None = None
    customer: MemberProfile | None = Field(
        default=None, description="Profile used if this event enrols the customer."
    )

    @classmethod
    def order_paid(
        cls,
        customer_id: str,
        order: Order,
        *,
        occurred_at: datetime,
        id: str | None = None,
        customer: MemberProfile | None = None,
    ) -> Event:
        return cls(
            id=id,
            type="order.paid",
            customer_id=customer_id,
            occurred_at=occurred_at,
            order=order,
            customer=customer,
        )

    @classmethod
    def order_refunded(
        cls, customer_id: str, refund: Refund, *, occurred_at: datetime, id: str | None = None
    ) -> Event:
        return cls(
            id=id,
            type="order.refunded",
            customer_id=customer_id,
            occurred_at=occurred_at,
            refund=refund,
        )


class CartItem(_Request):
    sku: str
    category: str | None = None
    quantity: int = 1
    unit_price: Decimal


class Cart(_Request):
    """The cart a coupon is checked against; ``total`` is what the customer pays."""

    total: Decimal
    currency: str
    items: list[CartItem] = Field(default_factory=list)


# --- responses --------------------------------------------------------------------------------


class ApiModel(BaseModel):
    """Base of every response model. Fields a newer server adds are kept in ``model_extra``."""

    model_config = ConfigDict(extra="allow")

    _response_info: ResponseInfo | None = PrivateAttr(default=None)

    @property
    def response_info(self) -> ResponseInfo | None:
        """How this object was answered (``None`` for objects nested in a response)."""
        return self._response_info


class ErrorBody(ApiModel):
    code: str
    message: str
    details: Any = None


class NextExpiry(ApiModel):
    at: datetime
    points: int


class Balance(ApiModel):
    external_id: str
    available: int
    pending: int
    lifetime_earned: int
    lifetime_spent: int
    expired: int
    shortfall: int
    qualifying_spend: Decimal
    currency: str
    tier: str | None = None
    expiring_soon: int = 0
    next_expiry: NextExpiry | None = None


class Posting(ApiModel):
    entry_id: int
    entry_type: str
    points: int
    rule_id: str | None
    reason: str
    shortfall: int = 0


class EventResult(ApiModel):
    event_id: str
    type: str
    customer_id: str
    occurred_at: datetime
    postings: list[Posting]
    points_delta: int
    balance: Balance
    thresholds_forfeited: int = 0


class BatchItem(ApiModel):
    index: int
    status: str = Field(description="processed, replayed or rejected")
    result: EventResult | None = None
    error: ErrorBody | None = None


class BatchResult(ApiModel):
    processed: int
    replayed: int
    rejected: int
    results: list[BatchItem]


class ConsentRecord(ApiModel):
    purpose: str
    granted: bool
    source: str
    recorded_at: datetime


class Member(ApiModel):
    external_id: str
    email: str | None
    phone: str | None
    name: str | None
    birthday: date | None
    language: str
    timezone: str
    attributes: dict[str, Any]
    tags: list[str]
    enrolled_at: datetime
    enrolment_channel: str
    consents: list[ConsentRecord]
    created_at: datetime
    updated_at: datetime


class MemberSummary(ApiModel):
    """One member of ``GET /v1/members``: the profile fields a list shows and the figures."""

    external_id: str
    name: str | None
    email: str | None
    phone: str | None
    tier: str | None
    tags: list[str]
    attributes: dict[str, Any]
    points_available: int
    points_pending: int
    lifetime_earned: int
    orders_count: int
    last_order_at: datetime | None
    enrolled_at: datetime


class MemberPage(ApiModel):
    items: list[MemberSummary]
    next_cursor: str | None


class OrderLine(ApiModel):
    sku: str
    category: str | None
    quantity: int
    unit_price: Decimal


class OrderRecord(ApiModel):
    order_id: str
    total: Decimal
    refunded: Decimal
    currency: str
    channel: str | None
    store: str | None
    status: str
    points_earned: int
    points_reversed: int
    occurred_at: datetime
    items: list[OrderLine]


class OrderPage(ApiModel):
    items: list[OrderRecord]
    next_cursor: str | None


class LedgerEntry(ApiModel):
    id: int
    entry_type: str
    points: int
    balance_after: int
    shortfall: int
    reason: str
    source_type: str
    source_ref: str | None
    rule_id: str | None
    actor: str
    occurred_at: datetime
    recorded_at: datetime


class LedgerPage(ApiModel):
    items: list[LedgerEntry]
    next_cursor: str | None


class PointsWriteResult(ApiModel):
    entry: LedgerEntry
    balance: Balance


class Benefits(ApiModel):
    discount_percent: Decimal
    birthday_discount_percent: Decimal
    free_shipping: bool
    flags: list[str]


class TierRef(ApiModel):
    id: str
    name: str
    threshold: Decimal
    multiplier: Decimal


class TierChange(ApiModel):
    from_tier: str | None
    to_tier: str
    direction: str
    qualifying_value: Decimal
    reason: str
    occurred_at: datetime


class TierStatus(ApiModel):
    external_id: str
    basis: str
    period: str
    tier: TierRef
    benefits: Benefits
    since: datetime | None
    held_until: datetime | None
    qualifying_value: Decimal
    next_tier: TierRef | None
    progress_percent: Decimal | None
    amount_needed: Decimal | None
    estimated_date: date | None
    history: list[TierChange]


class MemberBenefits(ApiModel):
    external_id: str
    tier: str | None
    benefits: Benefits


class Programme(ApiModel):
    version: int | None
    activated_at: datetime | None
    document: dict[str, Any]


class ProgrammeChange(ApiModel):
    path: str
    kind: str
    old: Any = None
    new: Any = None


class ApplyResult(ApiModel):
    version: int | None
    dry_run: bool
    activated_at: datetime | None
    changes: list[ProgrammeChange]


class ProgrammeVersion(ApiModel):
    version: int
    applied_by: str
    activated_at: datetime
    created_at: datetime


class LockedReason(ApiModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class CouponTerms(ApiModel):
    percent_off: Decimal | None
    amount_off: Decimal | None
    free_shipping: bool
    minimum_order: Decimal
    skus: list[str] | None
    categories: list[str] | None
    valid_days: int


class Reward(ApiModel):
    id: str
    type: str
    name: str
    description: str | None
    cost: int
    redeemable: bool
    locked_reasons: list[LockedReason]
    stock_left: int | None
    per_member_limit: int | None
    redeemed_by_member: int
    available_from: datetime | None
    available_until: datetime | None
    tiers: list[str] | None
    coupon: CouponTerms | None
    value_per_point: Decimal | None


class RewardCatalogue(ApiModel):
    customer_id: str
    points_available: int
    tier: str | None
    currency: str
    items: list[Reward]


class Coupon(ApiModel):
    code: str
    reward_id: str
    source: str
    status: str = Field(description="active, redeemed, expired or void")
    customer_id: str | None
    currency: str
    percent_off: Decimal | None
    amount_off: Decimal | None
    free_shipping: bool
    minimum_order: Decimal
    skus: list[str] | None
    categories: list[str] | None
    valid_from: datetime
    valid_until: datetime
    uses_allowed: int
    uses: int
    created_at: datetime


class Redemption(ApiModel):
    id: int
    customer_id: str
    reward_id: str
    reward_type: str
    points: int
    status: str
    coupon: Coupon | None
    value: Decimal | None
    currency: str
    fulfilment: dict[str, Any]
    created_at: datetime
    rolled_back_at: datetime | None
    points_available: int | None = None


class RedemptionPage(ApiModel):
    items: list[Redemption]


class CouponValidation(ApiModel):
    code: str
    valid: bool
    discount: Decimal
    currency: str
    free_shipping: bool
    eligible_total: Decimal
    reason_code: str | None = None
    reason: str | None = None


class CouponUse(ApiModel):
    order_id: str
    discount: Decimal
    used_at: datetime
    rolled_back_at: datetime | None


class CouponRedemption(ApiModel):
    coupon: Coupon
    use: CouponUse
    free_shipping: bool


class CouponRollback(ApiModel):
    coupon: Coupon
    use: CouponUse


class Wallet(ApiModel):
    customer_id: str
    items: list[Coupon]


class Health(ApiModel):
    status: str
