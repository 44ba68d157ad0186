"""Referral rules without a database: codes, the offer in words, fraud checks, caps, masks.

Everything here is pure (tested without a database); :mod:`lealta.referrals.service` reads
and writes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from lealta.programme.types import name_in
from lealta.referrals.schema import Referrals

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
"""No 0/O, 1/I/L: a code read aloud or copied by hand stays the same code."""
CODE_LENGTH = 8
_CODE = re.compile(f"^[{ALPHABET}]{{4,16}}$")

TRAIT_KEYS = ("address_hash", "payment_fingerprint", "device_id")
"""Hashed attributes the shop may send (on the member or in an order's ``properties``)."""

STATUSES = ("pending", "waiting", "rewarded", "flagged", "refused", "rejected", "reversed", "void")
"""pending: signed up, no qualifying order yet; waiting: qualifying order inside the return
window; rewarded; flagged: held for review; refused: blocked on claim (self-referral, cap);
rejected: by a reviewer; reversed: the qualifying order was refunded after the reward;
void: the qualifying order was refunded before the reward."""


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str | None) -> str | None:
    """The code as stored (upper case, without spaces or dashes), or None if it cannot be one."""
    if raw is None:
        return None
    code = re.sub(r"[\s-]", "", raw).upper()
    return code if _CODE.match(code) else None


def signup_link(template: str | None, code: str) -> str | None:
    return template.replace("{code}", code) if template else None


@dataclass(frozen=True, slots=True)
class ReferralOffer:
    """The offer as a member in ``tier_id`` sees it, in one language."""

    title: str
    friend_text: str
    referrer_points: int
    friend_points: int
    friend_reward_id: str | None
    friend_reward_name: str | None
    friend_rewarded_at: str
    minimum_order: Decimal
    currency: str
    return_window_days: int


def offer_for(programme: Any, tier_id: str | None, language: str) -> ReferralOffer | None:
    """The referral offer of ``programme`` for a referrer in ``tier_id`` (None when the
    programme has no referral offer). Texts in ``language`` (``es``/``en``)."""
    section: Referrals = programme.referrals
    if not section.enabled:
        return None
    en = language == "en"
    reward = programme.reward(section.friend_reward) if section.friend_reward else None
    reward_name = name_in(reward.name, language) if reward is not None else None
    points = section.referrer_points_for(tier_id)
    if section.name is not None:
        title = name_in(section.name, language)
    else:
        title = "Refer a friend" if en else "Recomienda a un amigo"
    if section.friend_offer is not None:
        friend_text = name_in(section.friend_offer, language)
    else:
        parts = []
        if section.friend_points:
            parts.append(
                f"{section.friend_points} points" if en else f"{section.friend_points} puntos"
            )
        if reward_name:
            parts.append(reward_name)
        joined = (" and " if en else " y ").join(parts)
        if not joined:
            friend_text = ""
        else:
            friend_text = f"Your friend gets {joined}." if en else f"Tu amigo recibe {joined}."
    return ReferralOffer(
        title=title,
        friend_text=friend_text,
        referrer_points=points,
        friend_points=section.friend_points,
        friend_reward_id=section.friend_reward,
        friend_reward_name=reward_name,
        friend_rewarded_at=section.friend_rewarded_at,
        minimum_order=section.minimum_order,
        currency=programme.currency,
        return_window_days=section.return_window_days,
    )


# --- fraud checks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Traits:
    """What identifies a person beyond the member id, normalised for comparison."""

    values: frozenset[tuple[str, str]] = field(default_factory=frozenset)


def _phone(raw: str) -> str:
    digits = re.sub(r"\D", "", raw)
    return digits[-9:]  # the national number, whatever prefix the shop wrote


def traits(
    *,
    email: str | None = None,
    phone: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    extra: Iterable[Mapping[str, Any]] = (),
) -> Traits:
    """A person's traits from the member's fields, its attributes and any order properties."""
    found: set[tuple[str, str]] = set()
    if email and email.strip():
        local, _, domain = email.strip().lower().partition("@")
        found.add(("email", f"{local.split('+', 1)[0]}@{domain}"))
    if phone and len(_phone(phone)) >= 6:
        found.add(("phone", _phone(phone)))
    for source in (attributes or {}, *extra):
        for key in TRAIT_KEYS:
            value = source.get(key)
            if isinstance(value, str | int) and str(value).strip():
                found.add((key, str(value).strip().lower()))
    return Traits(frozenset(found))


def shared_traits(referrer: Traits, friend: Traits) -> list[str]:
    """The kinds of trait the two share (``email``, ``phone``, ``device_id`` …), sorted."""
    return sorted({kind for kind, _ in referrer.values & friend.values})


def month_start(now: datetime) -> datetime:
    at = now.astimezone(UTC)
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def cap_breaches(section: Referrals, *, this_month: int, total: int) -> list[str]:
    """Caps the referrer's next referral would exceed, given the counts so far."""
    out = []
    if section.max_per_month is not None and this_month >= section.max_per_month:
        out.append("cap_month")
    if section.max_total is not None and total >= section.max_total:
        out.append("cap_total")
    return out


def window_cleared(order_at: datetime, now: datetime, days: int) -> bool:
    return order_at + timedelta(days=days) <= now


def mask_name(name: str | None, email: str | None) -> str:
    """``Ana García`` → ``Ana G.``; ``lucia@x.com`` → ``l***@x.com``; nothing → ``***``."""
    if name and name.strip():
        parts = name.split()
        first = parts[0]
        return f"{first} {parts[-1][0]}." if len(parts) > 1 else first
    if email and "@" in email:
        local, _, domain = email.partition("@")
        return f"{local[:1]}***@{domain}"
    return "***"
