"""The lift maths of :mod:`lealta.experiments.stats` (pure): the Newcombe interval against
the published worked examples, a real difference detected on a simulated population, the
~95 % coverage under identical arms, the Welch interval by hand and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lealta.experiments import stats


def test_wilson_and_newcombe_match_the_published_examples() -> None:
    # Newcombe (1998), table II: 81/263 -> Wilson 0.2553 to 0.3662.
    low, high = stats.wilson(81, 263, 0.95) or (0, 0)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    # Method 10 of the same paper (table II): 56/70 - 48/80 -> 0.0524 to 0.3339;
    # 9/10 - 3/10 -> 0.1705 to 0.8090.
    for (x1, n1, x0, n0), expected in [
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
    ]:
        e = stats.rate_difference(x1, n1, x0, n0, 0.95)
        assert e.low is not None and e.high is not None
        assert (round(e.low, 4), round(e.high, 4)) == expected
        assert e.value == pytest.approx(x1 / n1 - x0 / n0)


def test_a_variant_that_truly_converts_better_shows_positive_lift() -> None:
    rng = np.random.default_rng(20261206)
    n = 5000
    variant = int((rng.random(n) < 0.12).sum())
    holdout = int((rng.random(n) < 0.08).sum())
    e = stats.rate_difference(variant, n, holdout, n, 0.95)
    assert e.low is not None and e.high is not None and e.value is not None
    assert e.low > 0 and e.direction == 1
    assert e.low < 0.04 < e.high  # the true difference is inside
    lift = stats.relative_lift(variant, n, holdout, n)
    assert lift is not None and lift > 0.2


def test_identical_arms_are_covered_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    n, p, runs = 2000, 0.1, 1000
    a = rng.binomial(n, p, size=runs)
    b = rng.binomial(n, p, size=runs)
    covered = 0
    for x1, x0 in zip(a, b, strict=True):
        e = stats.rate_difference(int(x1), n, int(x0), n, 0.95)
        assert e.low is not None and e.high is not None
        covered += e.low <= 0 <= e.high
    # Binomial tolerance around 95 %: sd = sqrt(0.95 x 0.05 / 1000) = 0.7 points.
    assert 930 <= covered <= 970, covered
    # At 90 % confidence the interval is narrower and covers less often.
    narrow = sum(
        (e := stats.rate_difference(int(x1), n, int(x0), n, 0.90)).low <= 0 <= e.high  # type: ignore[operator]
        for x1, x0 in zip(a, b, strict=True)
    )
    assert 870 <= narrow <= 930 and narrow < covered


def test_welch_revenue_interval_covers_about_95_percent_with_identical_arms() -> None:
    rng = np.random.default_rng(5)
    covered, runs = 0, 400
    for _ in range(runs):
        # Most members buy nothing; buyers spend a skewed amount (minor units).
        a = np.where(rng.random(800) < 0.1, rng.gamma(2.0, 2500, 800), 0).round().astype(int)
        b = np.where(rng.random(800) < 0.1, rng.gamma(2.0, 2500, 800), 0).round().astype(int)
        e = stats.welch_moments(stats.Moments.of(a.tolist()), stats.Moments.of(b.tolist()), 0.95)
        assert e.low is not None and e.high is not None
        covered += e.low <= 0 <= e.high
    assert 365 <= covered <= 395, covered  # 95 % of 400 = 380, sd 4.4


def test_welch_by_hand() -> None:
    a, b = [0, 0, 10, 20], [0, 5, 0, 0, 0]
    # means 7.5 and 1; variances 275/3 and 20/4; se² = 275/12 + 1 = 23.9167
    se2 = 275 / 12 + 1
    df = se2**2 / ((275 / 12) ** 2 / 3 + 1 / 4)
    assert df == pytest.approx(3.26288, abs=1e-5)
    # t quantile at 0.975 with 3.26288 degrees of freedom (tables: 3.0422)
    half = 3.0422 * math.sqrt(se2)
    for e in (
        stats.welch(a, b, 0.95),
        stats.welch_moments(stats.Moments.of(a), stats.Moments.of(b), 0.95),
    ):
        assert e.value == pytest.approx(6.5)
        assert e.low == pytest.approx(6.5 - half, abs=1e-3)
        assert e.high == pytest.approx(6.5 + half, abs=1e-3)
        assert e.direction == 0


@pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation")
@given(
    st.lists(st.integers(0, 10**9), min_size=2, max_size=40),
    st.lists(st.integers(0, 10**9), min_size=2, max_size=40),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_moments_agree_with_scipy_ttest_ind(a: list[int], b: list[int], c: float) -> None:
    by_scipy = stats.welch(a, b, c)
    by_moments = stats.welch_moments(stats.Moments.of(a), stats.Moments.of(b), c)
    assert by_scipy.reason == by_moments.reason
    assert by_moments.value == pytest.approx(by_scipy.value, rel=1e-9, abs=1e-6)
    if by_scipy.low is not None:
        assert by_moments.low == pytest.approx(by_scipy.low, rel=1e-7, abs=1e-4)
        assert by_moments.high == pytest.approx(by_scipy.high, rel=1e-7, abs=1e-4)


def test_moments_are_exact_for_large_integers() -> None:
    # Sums of squares beyond 2**63 and values where float cancellation would show.
    big = 10**12
    m = stats.Moments.of([big, big + 1, big + 2])
    assert m.variance == 1.0 and m.mean == big + 1


@given(st.integers(0, 300), st.integers(1, 300), st.integers(0, 300), st.integers(1, 300))
def test_newcombe_interval_is_ordered_and_bounded(x1: int, n1: int, x0: int, n0: int) -> None:
    x1, x0 = min(x1, n1), min(x0, n0)
    e = stats.rate_difference(x1, n1, x0, n0, 0.95)
    assert e.low is not None and e.high is not None and e.value is not None
    assert -1 <= e.low <= e.value <= e.high <= 1


def test_edge_cases_give_no_interval_with_a_reason_or_a_sane_one() -> None:
    assert stats.rate_difference(0, 0, 5, 10, 0.95).reason == stats.EMPTY_ARM
    assert stats.rate_difference(5, 10, 0, 0, 0.95).value is None
    assert stats.wilson(0, 0, 0.95) is None
    # 0 % and 100 % conversion: Wilson still gives a proper interval.
    assert stats.wilson(0, 20, 0.95) == (0.0, pytest.approx(0.1611, abs=1e-4))
    assert stats.wilson(20, 20, 0.95) == (pytest.approx(0.8389, abs=1e-4), 1.0)
    none_converted = stats.rate_difference(0, 50, 0, 50, 0.95)
    assert none_converted.value == 0 and none_converted.direction == 0
    everyone = stats.rate_difference(50, 50, 50, 50, 0.95)
    assert everyone.value == 0 and everyone.low < 0 < everyone.high  # type: ignore[operator]
    # n = 1 in each arm: an interval, very wide.
    one = stats.rate_difference(1, 1, 0, 1, 0.95)
    assert one.low is not None and one.low < 0 and one.high == 1.0
    assert stats.relative_lift(3, 10, 0, 10) is None  # no baseline conversions
    assert stats.relative_lift(3, 10, 2, 10) == pytest.approx(0.5)
    # Welch: empty arm, a single member, no variance anywhere.
    assert stats.welch_moments(stats.Moments(0), stats.Moments(5, 10, 20), 0.95).reason == (
        stats.EMPTY_ARM
    )
    single = stats.welch_moments(stats.Moments(1, 500, 250000), stats.Moments.of([0, 0]), 0.95)
    assert single.reason == stats.TOO_FEW and single.value == 500 and single.low is None
    flat = stats.welch([0, 0, 0], [0, 0], 0.95)
    assert flat.reason == stats.NO_VARIANCE and flat.value == 0 and flat.direction is None
    assert stats.welch([], [1.0, 2.0], 0.95).reason == stats.EMPTY_ARM
    # One arm flat, the other not: still an interval.
    assert stats.welch_moments(stats.Moments.of([0, 0, 0]), stats.Moments.of([0, 9]), 0.9).low
    with pytest.raises(ValueError, match="confidence"):
        stats.rate_difference(1, 2, 1, 2, 1.5)
