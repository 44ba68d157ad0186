"""Pure tier arithmetic, checked against seed 000's numbers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lealta.programme.schema import Tiers
from lealta.tiers import maths
from tests.test_rules_engine import DEMO

assert DEMO.tiers is not None
TIERS: Tiers = DEMO.tiers


@pytest.mark.parametrize(
    ("spend", "tier"),
    [
        ("0", "basico"),
        ("999.99", "basico"),
        ("1000", "plata"),
        ("4999.99", "plata"),
        ("5000", "oro"),
        ("14999.99", "oro"),
        ("15000", "platino"),
        ("250000", "platino"),
    ],
)
def test_seed_000_thresholds(spend: str, tier: str) -> None:
    assert maths.level_for(TIERS, Decimal(spend)).id == tier


def test_maria_progress_line() -> None:
    """Seed 000: María, Plata with 3.000 € -> 60 % toward Oro, 2.000 € needed."""
    # María spent 3.000 € over the last 6 months: 16.67 €/day -> 120 days for 2.000 €.
    rate = maths.spending_rate(Decimal(3000), 180)
    progress = maths.progress(
        TIERS, "plata", Decimal(3000), rate_per_day=rate, today=date(2026, 1, 1)
    )
    assert progress.current.id == "plata"
    assert progress.next is not None and progress.next.id == "oro"
    assert progress.percent == Decimal("60.0")
    assert progress.needed == Decimal(2000)
    assert progress.estimated_date == date(2026, 1, 1) + timedelta(days=120)


def test_top_tier_has_no_next() -> None:
    progress = maths.progress(
        TIERS, "platino", Decimal(20000), rate_per_day=None, today=date(2026, 1, 1)
    )
    assert progress.next is None and progress.percent is None and progress.needed is None


def test_no_rate_means_no_estimate() -> None:
    progress = maths.progress(
        TIERS, "basico", Decimal(0), rate_per_day=None, today=date(2026, 1, 1)
    )
    assert progress.estimated_date is None
    assert progress.needed == Decimal(1000)


def test_hold_and_review_dates_by_period() -> None:
    at = datetime(2026, 5, 10, tzinfo=UTC)
    assert maths.held_until(TIERS, at) is None  # lifetime: never reviewed
    rolling = TIERS.model_copy(update={"period": "rolling", "rolling_months": 12, "grace_days": 10})
    held = maths.held_until(rolling, at)
    assert held is not None
    assert maths.review_period_end(rolling, held).date() == date(2026, 5, 31)
    assert maths.window_start(rolling, datetime(2026, 5, 31, tzinfo=UTC)) == datetime(
        2025, 5, 31, tzinfo=UTC
    )
    yearly = TIERS.model_copy(update={"period": "calendar_year"})
    held_year = maths.held_until(yearly, at)
    assert held_year is not None and held_year.date() == date(2026, 12, 31)
    assert maths.window_start(yearly, at) == datetime(2026, 1, 1, tzinfo=UTC)


@given(st.decimals(min_value=0, max_value=10**7, places=2))
def test_level_for_is_the_highest_reached_threshold(value: Decimal) -> None:
    tier = maths.level_for(TIERS, value)
    assert tier.threshold <= value
    above = maths.next_level(TIERS, tier.id)
    assert above is None or above.threshold > value


@given(st.decimals(min_value=0, max_value=20000, places=2))
def test_progress_percent_and_needed_are_consistent(value: Decimal) -> None:
    current = maths.level_for(TIERS, value)
    progress = maths.progress(
        TIERS, current.id, value, rate_per_day=Decimal(10), today=date(2026, 1, 1)
    )
    if progress.next is None:
        return
    assert progress.needed == progress.next.threshold - value
    assert progress.percent is not None and Decimal(0) <= progress.percent <= Decimal(100)
