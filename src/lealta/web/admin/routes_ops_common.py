"""Helpers shared by the console's operations pages (programme, rewards, coupons, till).

Service errors carry English messages and stable codes; the pages show them in the reader's
language by code (:func:`explain`), falling back to the service's own message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request

from lealta.kit.errors import InvalidInput, LealtaError
from lealta.web import i18n

# Source strings (English) by error code; the Spanish lives in admin_ops.po.
MESSAGES: dict[str, str] = {
    "coupon_not_found": "No coupon has this code.",
    "coupon_unknown": "No coupon has this code.",
    "coupon_void": "This coupon was cancelled.",
    "coupon_wrong_member": "This coupon belongs to another customer.",
    "coupon_not_yet_valid": "This coupon is not valid yet.",
    "coupon_expired": "This coupon has expired.",
    "coupon_used_up": "This coupon has already been used.",
    "coupon_currency_mismatch": "The order is in a different currency from the coupon.",
    "coupon_minimum_order": "The order is below the coupon's minimum order.",
    "coupon_no_eligible_items": "No item in the order is covered by this coupon.",
    "coupon_already_used_for_order": "This coupon is already applied to this order.",
    "coupon_use_not_found": "This coupon was not used on that order.",
    "already_rolled_back": "This was already rolled back.",
    "coupon_already_used": "The coupon was already used at checkout; roll that use back first.",
    "insufficient_points": "The member does not have enough points.",
    "out_of_stock": "This reward is out of stock.",
    "reward_not_found": "This reward is not in the programme.",
    "not_redeemable": "This reward is issued automatically by a spending threshold.",
    "not_available_yet": "This reward is not available yet.",
    "no_longer_available": "This reward is no longer available.",
    "tier_required": "This reward needs a higher tier.",
    "segment_required": "This reward is only for members of a particular group.",
    "not_eligible": "The member does not meet this reward's conditions.",
    "limit_reached": "The member reached this reward's per-member limit.",
    "member_not_found": "No member matches.",
    "not_a_number": "Give the order amount as a number, e.g. 49.90.",
    "invalid_amount": "The amount has more decimals than the currency allows.",
    "negative_amount": "The order amount must not be negative.",
    "missing_order_ref": "Give the order reference.",
    "invalid_points": "Points are a whole number.",
    "idempotency_key_reused": "This form was already used for another action; reload the page.",
    "programme_changed": "The programme changed since you validated it; validate it again.",
    "tampered_document": "The validated document was altered; validate it again.",
    "invalid_activation": "Give the activation time as date and time, or leave it empty.",
    "activation_in_past": "The activation time cannot be in the past.",
    "forbidden_for_role": "Your role does not allow this.",
}

# Short reasons for locked rewards at the till, by lock code.
LOCKED: dict[str, str] = {
    "not_redeemable": "Issued automatically",
    "not_available_yet": "Not available yet",
    "no_longer_available": "No longer available",
    "tier_required": "Needs a higher tier",
    "segment_required": "Not in the right group",
    "not_eligible": "Not eligible",
    "limit_reached": "Limit reached",
    "out_of_stock": "Out of stock",
    "insufficient_points": "Not enough points",
}


def translator(request: Request) -> Callable[..., str]:
    return i18n.gettext_for(i18n.negotiate(request))


def explain(request: Request, exc: LealtaError) -> str:
    """The error in the reader's language when its code is known, else the service's text."""
    source = MESSAGES.get(exc.code)
    if source is None:
        return exc.message
    return translator(request)(source)


def parse_amount(text: str) -> Decimal:
    """A money amount typed at a till: ``49.90`` or ``49,90``."""
    cleaned = text.strip().replace(" ", "").replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidInput(f"'{text}' is not an amount.", code="not_a_number") from None
    if not value.is_finite():
        raise InvalidInput(f"'{text}' is not an amount.", code="not_a_number")
    if value < 0:
        raise InvalidInput("The amount must not be negative.", code="negative_amount")
    return value


def parse_local_datetime(text: str) -> datetime | None:
    """A ``datetime-local`` field (read as UTC) or a full ISO time; empty means none."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"'{text}' is not a date and time.", code="invalid_activation") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def to_local_input(value: datetime | None) -> str:
    """A time for a ``datetime-local`` field, in UTC."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def show_value(value: Any, limit: int = 160) -> str:
    """A programme value for a diff cell: JSON, shortened."""
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
