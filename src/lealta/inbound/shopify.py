"""Shopify webhooks as Lealta events, without I/O: the signature check and the mapping.

Shopify signs each webhook with ``X-Shopify-Hmac-Sha256``: the base64 HMAC-SHA256 of the raw
request body under the app's shared secret. The body is checked before it is parsed, and the
comparison takes constant time.

Mapping (documented in the README, "Inbound: Shopify"):

- ``orders/paid`` → ``order.paid`` for customer ``str(customer.id)`` (the shop's customer id
  *is* the member's external id), order id ``str(order.id)``, ``total_price`` in ``currency``,
  one item per line item (``sku``, else ``variant-<id>``, ``product-<id>`` or ``line-<id>``),
  at ``processed_at`` (else ``created_at``). The event id is ``shopify:order:<order id>``, so
  the same order delivered twice, under any webhook id, is recorded once.
- ``refunds/create`` → ``order.refunded`` of ``order_id`` for the sum of the successful
  ``refund`` transactions (else of the refund line items' ``subtotal``), event id
  ``shopify:refund:<refund id>``. The refund names no customer: the service finds the order's
  member.

What cannot become an event is a :class:`Skip` with a stable reason: an order without a
customer (guest checkout) or a refund of nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from lealta.events.schemas import ORDER_PAID, ORDER_REFUNDED, EventIn
from lealta.kit.errors import LealtaError, Unauthorized
from lealta.members.schemas import MemberFields

SOURCE = "shopify"
ORDERS_PAID = "orders/paid"
REFUNDS_CREATE = "refunds/create"
SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
SHOP_HEADER = "X-Shopify-Shop-Domain"

# Shopify ids are positive 64-bit integers; some apps send them as strings.
ShopifyId = int | Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]
Price = Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=18)]


class MissingSignature(Unauthorized):
    code = "missing_signature"


class InvalidSignature(Unauthorized):
    code = "invalid_signature"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value of ``body`` under ``secret``."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(secret: str, body: bytes, header: str | None) -> None:
    """Return if ``header`` signs ``body`` under ``secret``; else ``401 missing_signature`` or
    ``401 invalid_signature``."""
    if not header or not header.strip():
        raise MissingSignature(
            f"Shopify webhooks must carry the '{SIGNATURE_HEADER}' header.",
        )
    if not hmac.compare_digest(signature(secret, body).encode(), header.strip().encode()):
        raise InvalidSignature(
            "The webhook signature does not match its body; check the shared secret"
            " (LEALTA_SHOPIFY_WEBHOOK_SECRET).",
        )


M = TypeVar("M", bound=BaseModel)


class _Shopify(BaseModel):
    # Shopify sends dozens of fields and adds more; only the ones read here are validated.
    model_config = ConfigDict(extra="ignore")


class Customer(_Shopify):
    id: ShopifyId
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class LineItem(_Shopify):
    id: ShopifyId | None = None
    sku: str | None = None
    product_id: ShopifyId | None = None
    variant_id: ShopifyId | None = None
    quantity: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    price: Price = Decimal(0)


class Order(_Shopify):
    id: ShopifyId
    customer: Customer | None = None
    total_price: Price
    currency: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    line_items: list[LineItem] = Field(default_factory=list, max_length=500)
    created_at: AwareDatetime
    processed_at: AwareDatetime | None = None
    source_name: str | None = None


class Transaction(_Shopify):
    amount: Price
    kind: str = "refund"
    status: str | None = None
    currency: str | None = None


class RefundLineItem(_Shopify):
    quantity: int = 0
    subtotal: Price | None = None


class Refund(_Shopify):
    id: ShopifyId
    order_id: ShopifyId
    created_at: AwareDatetime
    processed_at: AwareDatetime | None = None
    transactions: list[Transaction] = Field(default_factory=list, max_length=500)
    refund_line_items: list[RefundLineItem] = Field(default_factory=list, max_length=500)


@dataclass(frozen=True, slots=True)
class Skip:
    """A delivery with nothing to record, and why (a stable code)."""

    reason: str
    customer_id: str | None = None


class InvalidWebhook(LealtaError):
    """The body is JSON but not the shape of this topic."""

    status_code = 422
    code = "invalid_webhook_payload"


def parse_order(payload: Any) -> Order:
    """The order of an ``orders/paid`` body, or ``422 invalid_webhook_payload``."""
    return _parse(Order, payload)


def parse_refund(payload: Any) -> Refund:
    """The refund of a ``refunds/create`` body, or ``422 invalid_webhook_payload``."""
    return _parse(Refund, payload)


def _parse(model: type[M], payload: Any, *, what: str | None = None) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        details = [
            {"loc": [str(p) for p in err["loc"]], "message": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        where = ".".join(details[0]["loc"]) or "body"
        raise InvalidWebhook(
            f"Not a Shopify {what or model.__name__.lower()}: {where}: {details[0]['message']}",
            details=details,
        ) from None


def order_event_id(order_id: int | str) -> str:
    return f"shopify:order:{order_id}"


def refund_event_id(refund_id: int | str) -> str:
    return f"shopify:refund:{refund_id}"


def _sku(item: LineItem) -> str:
    sku = (item.sku or "").strip()[:128]
    if sku:
        return sku
    for prefix, value in (("variant", item.variant_id), ("product", item.product_id)):
        if value is not None:
            return f"{prefix}-{value}"
    return f"line-{item.id if item.id is not None else 'unknown'}"


def _profile(customer: Customer) -> MemberFields | None:
    name = " ".join(p.strip() for p in (customer.first_name, customer.last_name) if p and p.strip())
    fields: dict[str, Any] = {}
    if name:
        fields["name"] = name[:200]
    if customer.email:
        fields["email"] = customer.email.strip()
    try:
        return MemberFields.model_validate(fields) if fields else None
    except ValidationError:
        # An address Shopify accepted but we do not: enrol without it rather than drop points.
        fields.pop("email", None)
        return MemberFields.model_validate(fields) if fields else None


def order_event(order: Order, *, store: str | None = None) -> EventIn | Skip:
    """The ``order.paid`` event of a paid Shopify order, or why there is none."""
    if order.customer is None:
        return Skip("no_customer")
    items = [
        {"sku": _sku(i), "quantity": i.quantity, "unit_price": i.price}
        for i in order.line_items
        if i.quantity > 0
    ]
    return _parse(
        EventIn,
        {
            "id": order_event_id(order.id),
            "type": ORDER_PAID,
            "customer_id": str(order.customer.id),
            "occurred_at": order.processed_at or order.created_at,
            "order": {
                "id": str(order.id),
                "total": order.total_price,
                "currency": order.currency,
                "items": items,
                "channel": "shopify",
                "store": store[:64] if store else None,
            },
            "customer": _profile(order.customer),
        },
        what="order that Lealta can record",
    )


def refunded_amount(refund: Refund) -> Decimal:
    """What the refund gave back: its successful ``refund`` transactions, or, when it lists
    none (an app-made refund), its line items' subtotals."""
    money = [
        t.amount
        for t in refund.transactions
        if t.kind == "refund" and (t.status is None or t.status == "success")
    ]
    if refund.transactions:
        return sum(money, Decimal(0))
    return sum((r.subtotal or Decimal(0) for r in refund.refund_line_items), Decimal(0))


def refund_currency(refund: Refund) -> str | None:
    return next((t.currency for t in refund.transactions if t.currency), None)


def refund_event(refund: Refund, customer_id: str) -> EventIn | Skip:
    """The ``order.refunded`` event of a Shopify refund of ``customer_id``'s order."""
    amount = refunded_amount(refund)
    if amount <= 0:
        return Skip("nothing_refunded", customer_id)
    occurred_at: datetime = refund.processed_at or refund.created_at
    return _parse(
        EventIn,
        {
            "id": refund_event_id(refund.id),
            "type": ORDER_REFUNDED,
            "customer_id": customer_id,
            "occurred_at": occurred_at,
            "refund": {
                "order_id": str(refund.order_id),
                "amount": amount,
                "currency": refund_currency(refund),
            },
        },
        what="refund that Lealta can record",
    )
