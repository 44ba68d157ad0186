from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from lealta.kit.ids import ExternalId
from lealta.kit.storable import check_storable
from lealta.members.schemas import MemberFields

ORDER_PAID = "order.paid"
ORDER_REFUNDED = "order.refunded"

Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
# The cap keeps every amount, in minor units of any currency, inside a 64-bit integer column.
MAX_AMOUNT = Decimal("1000000000000")
Amount = Annotated[Decimal, Field(ge=0, le=MAX_AMOUNT, max_digits=18, allow_inf_nan=False)]
# Checked by the service (``invalid_currency``), so any string up to a sane length gets there.
Currency = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=16),
    Field(description="ISO 4217 code of the programme's currency, e.g. EUR."),
]


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Ref
    category: Ref | None = None
    quantity: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    unit_price: Amount


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Ref = Field(description="The shop's order id; an order is recorded once.")
    total: Amount = Field(description="Amount paid, in the currency's units (e.g. 59.90).")
    currency: Currency
    items: list[OrderItemIn] = Field(default_factory=list, max_length=500)
    channel: Annotated[str, StringConstraints(max_length=32)] | None = None
    store: Annotated[str, StringConstraints(max_length=64)] | None = None


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: Ref
    amount: Amount | None = Field(
        default=None, description="Refunded amount; omitted means whatever is left of the order."
    )
    currency: Currency | None = None


class EventIn(BaseModel):
    """One event. ``id`` (or the ``Idempotency-Key`` header) makes it idempotent."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "evt_1001",
                    "type": "order.paid",
                    "customer_id": "cust-42",
                    "occurred_at": "2026-11-20T10:15:00Z",
                    "order": {
                        "id": "ORD-1001",
                        "total": "120.50",
                        "currency": "EUR",
                        "channel": "web",
                        "items": [
                            {
                                "sku": "TSHIRT-1",
                                "category": "apparel",
                                "quantity": 2,
                                "unit_price": "30.25",
                            },
                            {
                                "sku": "MUG-9",
                                "category": "home",
                                "quantity": 1,
                                "unit_price": "60.00",
                            },
                        ],
                    },
                },
                {
                    "id": "evt_1002",
                    "type": "order.refunded",
                    "customer_id": "cust-42",
                    "occurred_at": "2026-11-22T09:00:00Z",
                    "refund": {"order_id": "ORD-1001", "amount": "60.00"},
                },
                {
                    "id": "evt_1003",
                    "type": "review.posted",
                    "customer_id": "cust-42",
                    "occurred_at": "2026-11-23T18:00:00Z",
                    "properties": {"product": "MUG-9", "stars": 5},
                },
            ]
        },
    )

    id: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    type: Annotated[
        str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$", max_length=64)
    ]
    customer_id: ExternalId
    occurred_at: AwareDatetime
    properties: dict[str, Any] = Field(default_factory=dict)
    order: OrderIn | None = None
    refund: RefundIn | None = None
    customer: MemberFields | None = Field(
        default=None, description="Profile used if this event enrols the customer."
    )

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_storable(data)

    @model_validator(mode="after")
    def _payload_matches_type(self) -> EventIn:
        if self.type == ORDER_PAID and self.order is None:
            raise ValueError("an order.paid event needs an 'order'")
        if self.type == ORDER_REFUNDED and self.refund is None:
            raise ValueError("an order.refunded event needs a 'refund'")
        if self.type not in (ORDER_PAID,) and self.order is not None:
            raise ValueError("only order.paid events carry an 'order'")
        if self.type != ORDER_REFUNDED and self.refund is not None:
            raise ValueError("only order.refunded events carry a 'refund'")
        return self


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]] = Field(
        min_length=1, description="Up to 1,000 events, each as for POST /v1/events, with an id."
    )


class PostingOut(BaseModel):
    entry_id: int
    entry_type: str
    points: int
    rule_id: str | None
    reason: str
    shortfall: int = 0


class EventResult(BaseModel):
    event_id: str
    type: str
    customer_id: str
    occurred_at: datetime
    postings: list[PostingOut]
    points_delta: int
    balance: dict[str, Any]
    thresholds_forfeited: int = Field(
        default=0,
        description="Spend-threshold crossings beyond the reward's max_per_event: not issued.",
    )


class NonMemberResult(BaseModel):
    """The answer for an order or refund of a customer who is not a member."""

    id: str | None
    type: str
    customer_id: str
    member: bool = False
    order_id: str
    amount: str
    currency: str
    points: int = 0


class BatchItemResult(BaseModel):
    index: int
    status: str = Field(description="processed, replayed or rejected")
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class BatchResult(BaseModel):
    processed: int
    replayed: int
    rejected: int
    results: list[BatchItemResult]
