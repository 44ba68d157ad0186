"""Pure tier arithmetic over the programme's ``Tiers`` block. No database, no clock.

Semantics (documented in the README):
- The qualifying value is net spend (orders minus refunds, in currency units) or points
  earned, over the tier window: all time (``lifetime``), the last N months (``rolling``), or
  the calendar year so far (``calendar_year``).
- Upgrades are immediate, as soon as the value reaches a higher threshold (skipping tiers if
  it jumps over several).
- A tier is held until the end of the period in which it was reached (month end for rolling
  windows, year end for calendar years) plus ``grace_days``. At that review the member keeps
  the tier if the value over the period just ended still qualifies, else moves down to the
  tier that value supports. Lifetime tiers never go down. Refunds lower the value at once but
  never downgrade mid-period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from lealta.kit.periods import add_months, end_of, start_of_year
from lealta.programme.schema import Tier, Tiers


def rank(tiers: Tiers, tier_id: str | None) -> int:
    """Position of ``tier_id`` (0 = entry tier); unknown or None ranks as the entry tier."""
    for i, level in enumerate(tiers.levels):
        if level.id == tier_id:
            return i
    return 0


def level_for(tiers: Tiers, value: Decimal) -> Tier:
    """The highest tier whose threshold ``value`` reaches."""
    chosen = tiers.levels[0]
    for level in tiers.levels:
        if value >= level.threshold:
            chosen = level
    return chosen


def next_level(tiers: Tiers, tier_id: str | None) -> Tier | None:
    position = rank(tiers, tier_id)
    return tiers.levels[position + 1] if position + 1 < len(tiers.levels) else None


def window_start(tiers: Tiers, end: datetime) -> datetime | None:
    """Start of the qualification window ending at ``end`` (None: since the beginning)."""
    if tiers.period == "lifetime":
        return None
    if tiers.period == "rolling":
        assert tiers.rolling_months is not None
        return add_months(end, -tiers.rolling_months)
    return start_of_year(end)


def held_until(tiers: Tiers, reached_at: datetime) -> datetime | None:
    """When a tier reached at ``reached_at`` is next reviewed (None: never)."""
    if tiers.period == "lifetime":
        return None
    period_end = end_of(reached_at, "month_end" if tiers.period == "rolling" else "year_end")
    return period_end + timedelta(days=tiers.grace_days)


def review_period_end(tiers: Tiers, held: datetime) -> datetime:
    """The period end a review at ``held`` judges (the hold date less the grace)."""
    return held - timedelta(days=tiers.grace_days)


@dataclass(frozen=True, slots=True)
class Progress:
    current: Tier
    next: Tier | None
    value: Decimal
    percent: Decimal | None
    needed: Decimal | None
    estimated_date: date | None


def progress(
    tiers: Tiers,
    current_id: str | None,
    value: Decimal,
    *,
    rate_per_day: Decimal | None,
    today: date,
) -> Progress:
    """Progress toward the tier above the current one.

    ``percent`` is value / next threshold (seed 000: 3.000 / 5.000 = 60 %), ``needed`` the
    difference, and ``estimated_date`` today plus needed / the member's own daily rate.
    """
    current = tiers.levels[rank(tiers, current_id)]
    upcoming = next_level(tiers, current.id)
    if upcoming is None:
        return Progress(current, None, value, None, None, None)
    needed = max(Decimal(0), upcoming.threshold - value)
    percent = min(Decimal(100), value * 100 / upcoming.threshold).quantize(
        Decimal("0.1"), rounding=ROUND_DOWN
    )
    estimate = None
    if needed == 0:
        estimate = today
    elif rate_per_day is not None and rate_per_day > 0:
        days = int((needed / rate_per_day).to_integral_value(rounding="ROUND_CEILING"))
        if days <= 3650:
            estimate = today + timedelta(days=days)
    return Progress(current, upcoming, value, percent, needed, estimate)


def spending_rate(value_last_year: Decimal, days_observed: int) -> Decimal | None:
    """Average qualifying value per day over the observed span (at least 30 days)."""
    if value_last_year <= 0:
        return None
    return value_last_year / max(30, min(365, days_observed))
