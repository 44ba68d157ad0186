"""Removing one person's data from stored JSON and text (pure functions, no database).

A :class:`Needles` value holds what identifies the person (email, name, phone, the shop's
customer id) and what each is replaced with. :func:`scrub` walks any JSON-like value and
returns a copy where every occurrence of a needle inside a string (any case) is replaced, and
where the value of any key that names a personal field (``email``, ``phone``, ``address``, …)
is dropped to :data:`ERASED` whatever it holds. The customer id is replaced by the member's
pseudonym rather than erased, so stored events still point at the same (anonymous) account.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ERASED = "[erased]"
"""What a personal value becomes."""

MIN_NEEDLE = 3
"""Shorter values are not searched for (``"Al"`` would blank half of every text)."""

PERSONAL_KEYS = frozenset(
    {
        "email",
        "e_mail",
        "mail",
        "phone",
        "mobile",
        "telephone",
        "name",
        "full_name",
        "first_name",
        "last_name",
        "given_name",
        "family_name",
        "surname",
        "birthday",
        "birth_date",
        "date_of_birth",
        "address",
        "address1",
        "address2",
        "street",
        "postcode",
        "postal_code",
        "zip",
        "shipping_address",
        "billing_address",
        "ip",
        "client_ip",
        "to",
    }
)
"""Keys whose values are personal wherever they appear in a payload (compared in lower case,
with ``-`` read as ``_``)."""


@dataclass(frozen=True, slots=True)
class Needles:
    """What identifies one person, each with its replacement.

    Built with :func:`needles_for`; ``pattern`` matches any of them (longest first, any case).
    """

    replacements: dict[str, str]
    pattern: re.Pattern[str] | None = field(default=None, compare=False)

    def __bool__(self) -> bool:
        return bool(self.replacements)

    @property
    def values(self) -> list[str]:
        """The searched values, longest first."""
        return sorted(self.replacements, key=len, reverse=True)


def needles_for(
    *,
    pseudonym: str,
    external_id: str | None = None,
    erased: Iterable[str | None] = (),
) -> Needles:
    """Needles for a member: ``erased`` values (email, name, phone, …) become :data:`ERASED`,
    ``external_id`` becomes ``pseudonym``. Values shorter than :data:`MIN_NEEDLE` (after
    trimming) are skipped."""
    replacements: dict[str, str] = {}
    for value in erased:
        text = (value or "").strip()
        if len(text) >= MIN_NEEDLE:
            replacements[text.lower()] = ERASED
    if external_id and len(external_id.strip()) >= MIN_NEEDLE:
        replacements[external_id.strip().lower()] = pseudonym
    if not replacements:
        return Needles({})
    ordered = sorted(replacements, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(v) for v in ordered), re.IGNORECASE)
    return Needles(replacements, pattern)


def scrub_text(text: str, needles: Needles) -> str:
    """``text`` with every needle replaced (any case)."""
    if needles.pattern is None:
        return text
    return needles.pattern.sub(lambda m: needles.replacements[m.group(0).lower()], text)


def _personal_key(key: str) -> bool:
    return key.lower().replace("-", "_") in PERSONAL_KEYS


def scrub(value: Any, needles: Needles) -> Any:
    """A copy of the JSON-like ``value`` without the person's data (see the module doc)."""
    if isinstance(value, str):
        return scrub_text(value, needles)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new_key = scrub_text(key, needles) if isinstance(key, str) else key
            if isinstance(key, str) and _personal_key(key) and item is not None:
                out[new_key] = ERASED if not isinstance(item, bool) else item
            else:
                out[new_key] = scrub(item, needles)
        return out
    if isinstance(value, list):
        return [scrub(item, needles) for item in value]
    return value


def contains(value: Any, needles: Needles) -> bool:
    """Whether ``value`` (JSON-like) still holds a needle anywhere, keys included."""
    if needles.pattern is None:
        return False
    if isinstance(value, str):
        return needles.pattern.search(value) is not None
    if isinstance(value, dict):
        return any(contains(k, needles) or contains(v, needles) for k, v in value.items())
    if isinstance(value, list):
        return any(contains(v, needles) for v in value)
    return False
