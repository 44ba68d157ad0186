"""Money is ``Decimal`` at the edges and integer minor units in storage.

Integer minor units keep sums exact on every database (SQLite has no true decimal type).
Currency codes and their precision come from Babel's CLDR data.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from babel.numbers import get_currency_precision, list_currencies

from lealta.kit.errors import InvalidInput

# ISO 4217 codes that are not money: "no currency", testing, precious metals, bond units.
_NOT_MONEY = frozenset(
    {"XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA"}
)


@lru_cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies()) - _NOT_MONEY


def normalise_currency(code: str) -> str:
    """Upper-case and check an ISO 4217 code, or raise ``invalid_currency``."""
    upper = code.strip().upper()
    if len(upper) != 3 or upper not in _currencies():
        raise InvalidInput(
            f"'{code}' is not an ISO 4217 currency code.",
            code="invalid_currency",
            details={"currency": code},
        )
    return upper


@lru_cache
def exponent(currency: str) -> int:
    return int(get_currency_precision(currency))


def to_minor(amount: Decimal, currency: str, *, field: str = "amount") -> int:
    """Convert ``amount`` to integer minor units, refusing sub-unit precision and negatives."""
    exp = exponent(currency)
    scaled = amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise InvalidInput(
            f"{field} has more decimals than {currency} allows ({exp}).",
            code="invalid_amount",
            details={"field": field, "value": str(amount)},
        )
    if amount < 0:
        raise InvalidInput(
            f"{field} must not be negative.",
            code="negative_amount",
            details={"field": field, "value": str(amount)},
        )
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


DEFAULT_MAX_AMOUNT = Decimal("10000000")
"""Largest single amount accepted (``LEALTA_MAX_ORDER_AMOUNT``), in major units."""


class AmountTooLarge(InvalidInput):
    code = "amount_too_large"


def check_max_amount(minor: int, currency: str, maximum: Decimal, *, field: str = "amount") -> int:
    """``minor`` if it is at most ``maximum`` major units of ``currency``, else
    ``amount_too_large`` (422): one order must not be able to do unbounded work."""
    limit = int(maximum.scaleb(exponent(currency)))
    if minor > limit:
        raise AmountTooLarge(
            f"{field} is larger than the maximum of {maximum} {currency}.",
            details={
                "field": field,
                "value": str(from_minor(minor, currency)),
                "max": str(maximum),
            },
        )
    return minor
