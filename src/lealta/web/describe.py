"""Stored records told in the viewer's language.

Services write an English ``reason`` into ledger entries and tier changes (the API returns
it as is). Pages do not show that sentence: they rebuild the text from what the row records
as codes (entry type, source, rule id, reference) and the programme, through ``_()``. Only
text a person typed (a manual adjustment's reason, a reason given through the API) is shown
as it was written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lealta.models import LedgerEntry, TierChange
from lealta.programme.schema import Programme
from lealta.rules.engine import BASE_RULE_ID

Gettext = Callable[..., str]

# Reasons the services write themselves for an API spend without a reason of its own.
_DEFAULT_SPEND_REASON = "Points spent"


def entry_text(_: Gettext, entry: LedgerEntry, programme: Programme, lang: str) -> str:
    """What a ledger entry was for, e.g. "Recompensa: Café gratis" or "Reembolso del pedido"."""
    source = entry.source_type
    ref = entry.source_ref or ""
    if entry.entry_type == "earn":
        if entry.rule_id == BASE_RULE_ID:
            if source == "order" and ref:
                return _("Points for order %(order)s", order=ref)
            return _("Points for a purchase")
        if entry.rule_id and entry.rule_id.startswith("tier-entry:"):
            tier = programme.tier(entry.rule_id.removeprefix("tier-entry:"))
            name = tier.name.get(lang) if tier is not None else ref
            return _("Welcome to %(tier)s", tier=name)
        rule = programme.rule(entry.rule_id) if entry.rule_id else None
        if rule is not None:
            return rule.label(lang)
        return entry.reason
    if entry.entry_type == "reverse" and source == "order":
        return _("Refund of order %(order)s", order=ref)
    if entry.entry_type == "reverse" and source == "redemption":
        details: dict[str, Any] = entry.details or {}
        original = str(details.get("ref") or "")
        return _(
            "Redemption %(id)s rolled back",
            id=original.removeprefix("redemption:") or ref.removeprefix("restores:"),
        )
    if entry.entry_type == "redeem" and source == "redemption" and ref.startswith("reward:"):
        reward_id = ref.removeprefix("reward:")
        reward = next((r for r in programme.rewards if r.id == reward_id), None)
        return _("Reward: %(reward)s", reward=reward.name.get(lang) if reward else reward_id)
    if entry.entry_type == "expire" and source == "expiry":
        return _("Points expired")
    if source == "survey":
        return _("Survey answered: %(survey)s", survey=entry.reason)
    if source == "spend" and entry.reason == _DEFAULT_SPEND_REASON:
        return _("Points spent")
    return entry.reason


def tier_change_text(_: Gettext, change: TierChange) -> str:
    """Why a member's tier changed, from the change's direction."""
    return {
        "initial": _("Entry tier on enrolment"),
        "upgrade": _("Qualifying value reached"),
        "downgrade": _("Period review"),
    }.get(change.direction, change.reason)


def benefit_flag(_: Gettext, flag: str) -> str:
    """A tier's named perk (``benefits.flags``), e.g. ``vip_events`` → "Eventos VIP"."""
    names = {
        "exclusive_products": _("Exclusive products"),
        "priority_support": _("Priority support"),
        "vip_events": _("VIP events"),
        "dedicated_account_manager": _("A dedicated account manager"),
    }
    return names.get(flag, flag.replace("_", " ").capitalize())


def consent_label(_: Gettext, purpose: str) -> str:
    """A consent purpose code, e.g. ``marketing_email`` → "Novedades y ofertas por email"."""
    return {
        "marketing_email": _("News and offers by email"),
        "marketing_sms": _("News and offers by SMS"),
        "marketing_push": _("Notifications on your phone"),
        "data_processing": _("Personalised offers from your purchases"),
    }.get(purpose, purpose)
