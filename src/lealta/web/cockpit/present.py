"""Words for the cockpit pages: locked reasons, reward terms, entry types, tier perks.

Services speak English with stable codes; these helpers turn the codes into the member's
language, so the catalogue and the redeem step explain themselves in Spanish or English.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

from lealta.kit.errors import LealtaError
from lealta.programme.schema import Benefits, CouponSpec, Programme, Reward
from lealta.rewards.service import LockedReason
from lealta.web import describe

Gettext = Callable[..., str]


def points(value: int | Decimal, lang: str) -> str:
    return format_decimal(value, locale=lang)


def money(value: Decimal | str, currency: str, lang: str) -> str:
    return format_currency(Decimal(str(value)), currency, locale=lang)


def day(value: Any, lang: str) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.date()
    return format_date(value, "d MMM y", locale=lang)


def lock_text(_: Gettext, lock: LockedReason, programme: Programme, lang: str) -> str:
    """One locked reason in the member's language."""
    details = lock.details
    match lock.code:
        case "insufficient_points":
            return _(
                "You need %(points)s more points.",
                points=points(int(details.get("points_needed", 0)), lang),
            )
        case "tier_required":
            names = [
                t.name.get(lang) for t in (programme.tier(i) for i in details.get("tiers", [])) if t
            ]
            return _("Only for members in tier %(tiers)s.", tiers=" / ".join(names))
        case "segment_required":
            return _("Only for members of a particular group.")
        case "not_eligible":
            return _("You do not meet this reward's conditions.")
        case "limit_reached":
            return _("Limited to %(limit)s per member.", limit=details.get("limit", ""))
        case "out_of_stock":
            return _("This reward is out of stock.")
        case "not_available_yet":
            return _("Available from %(date)s.", date=_iso_day(details.get("available_from"), lang))
        case "no_longer_available":
            return _("This reward is no longer available.")
        case "not_redeemable":
            return _("Issued automatically when you reach a spending threshold.")
    return lock.message


def error_text(_: Gettext, exc: LealtaError, programme: Programme, lang: str) -> str:
    """A refused redemption in the member's language."""
    known = {
        "reward_not_found": _("This reward is not in the catalogue any more."),
        "idempotency_key_reused": _("This confirmation was already used for another reward."),
        "invalid_idempotency_key": _("The form is incomplete; open the reward again."),
        "missing_idempotency_key": _("The form is incomplete; open the reward again."),
    }
    if exc.code in known:
        return known[exc.code]
    details = exc.details if isinstance(exc.details, dict) else {}
    if exc.code == "insufficient_points" and "requested" in details:
        details = {"points_needed": int(details["requested"]) - int(details.get("available", 0))}
    return lock_text(_, LockedReason(exc.code, exc.message, details), programme, lang)


def _iso_day(value: Any, lang: str) -> str:
    if isinstance(value, str):
        try:
            return day(datetime.fromisoformat(value), lang)
        except ValueError:
            return value
    return ""


def reward_kind(_: Gettext, reward_type: str) -> str:
    return {
        "coupon": _("Discount coupon"),
        "free_shipping": _("Free shipping"),
        "product": _("Product"),
        "experience": _("Experience"),
        "pay_with_points": _("Pay with points"),
    }.get(reward_type, reward_type)


def terms(
    _: Gettext,
    *,
    percent_off: Decimal | str | None,
    amount_off: Decimal | str | None,
    free_shipping: bool,
    minimum_order: Decimal | str,
    categories: list[str] | None,
    currency: str,
    lang: str,
) -> str:
    """What a coupon gives, e.g. "5 € off · on orders of 30 € or more"."""
    parts: list[str] = []
    if percent_off is not None:
        parts.append(
            _("%(percent)s%% off", percent=format_decimal(Decimal(percent_off), locale=lang))
        )
    if amount_off is not None:
        parts.append(_("%(amount)s off", amount=money(amount_off, currency, lang)))
    if free_shipping:
        parts.append(_("Free shipping"))
    if Decimal(str(minimum_order)) > 0:
        parts.append(
            _("on orders of %(amount)s or more", amount=money(minimum_order, currency, lang))
        )
    if categories:
        parts.append(_("on %(categories)s", categories=", ".join(categories)))
    return " · ".join(parts)


def spec_terms(_: Gettext, spec: CouponSpec | None, currency: str, lang: str) -> str:
    if spec is None:
        return ""
    return terms(
        _,
        percent_off=spec.percent_off,
        amount_off=spec.amount_off,
        free_shipping=spec.free_shipping,
        minimum_order=spec.minimum_order,
        categories=spec.categories,
        currency=currency,
        lang=lang,
    )


def reward_terms(_: Gettext, reward: Reward, currency: str, lang: str) -> str:
    if reward.type == "pay_with_points" and reward.value_per_point is not None:
        return _(
            "Each point is worth %(value)s",
            value=money(reward.value_per_point, currency, lang),
        )
    if reward.type == "free_shipping" and reward.coupon is None:
        return _("Free shipping")
    return spec_terms(_, reward.coupon, currency, lang)


def benefits(_: Gettext, perks: Benefits, lang: str) -> list[str]:
    """The tier's benefits as sentences."""
    out: list[str] = []
    if perks.discount_percent > 0:
        out.append(
            _(
                "%(percent)s%% discount on every purchase",
                percent=format_decimal(perks.discount_percent, locale=lang),
            )
        )
    if perks.birthday_discount_percent > 0:
        out.append(
            _(
                "%(percent)s%% birthday discount",
                percent=format_decimal(perks.birthday_discount_percent, locale=lang),
            )
        )
    if perks.free_shipping:
        out.append(_("Free shipping"))
    out.extend(describe.benefit_flag(_, flag) for flag in perks.flags)
    return out


def entry_kind(_: Gettext, entry_type: str) -> str:
    return {
        "earn": _("Earned"),
        "redeem": _("Redeemed"),
        "expire": _("Expired"),
        "reverse": _("Reversed"),
        "adjust": _("Adjustment"),
        "release": _("Released"),
    }.get(entry_type, entry_type)


def coupon_status(_: Gettext, status: str) -> str:
    return {
        "active": _("Ready to use"),
        "redeemed": _("Used"),
        "expired": _("No longer valid"),
        "void": _("Cancelled"),
    }.get(status, status)


CONSENT_PURPOSES = ("marketing_email", "marketing_sms", "marketing_push", "data_processing")


consent_label = describe.consent_label
