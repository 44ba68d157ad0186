"""Lift of an experiment arm over the holdout, with confidence intervals (pure maths).

Two figures are compared between a variant (``1``) and the holdout (``0``):

**Conversion rate** (members who converted / members reached). The difference
``p1 - p0`` gets the *Newcombe hybrid score interval* (Newcombe 1998, "Interval estimation
for the difference between independent proportions", method 10): a Wilson score interval
``[l, u]`` is computed for each arm, and the interval of the difference is

    low  = (p1 - p0) - sqrt((p1 - l1)² + (u0 - p0)²)
    high = (p1 - p0) + sqrt((u1 - p1)² + (p0 - l0)²)

It stays inside ``[-1, 1]``, behaves at 0 % and 100 % conversion and with small arms (where
the textbook Wald interval collapses to a point), and its coverage is close to nominal. The
*relative lift* ``(p1 - p0) / p0`` is given as a point estimate (none when ``p0`` is 0).

**Revenue per member** (net revenue of the arm / members reached, members who bought nothing
counted as 0). The difference of means gets the *Welch t interval* (unequal variances,
Welch-Satterthwaite degrees of freedom), exactly what
``scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)`` returns for
the per-member vectors. :func:`welch_moments` computes it from each arm's count, sum and
sum of squares (exact integers in minor units), so a million members need no vector in
memory; :func:`welch` takes the vectors and calls ``ttest_ind`` itself (the tests check that
the two agree).

An interval that excludes 0 means the difference is statistically detectable at the chosen
confidence; one that contains 0 means no difference was detected (not that there is none).
When an interval cannot be computed (an empty arm, fewer than two members for Welch, no
variance in either arm) it is ``None`` and ``reason`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

EMPTY_ARM = "empty_arm"
TOO_FEW = "too_few_members"
NO_VARIANCE = "no_variance"
NO_BASELINE = "no_baseline"


@dataclass(frozen=True, slots=True)
class Estimate:
    """A difference (variant - holdout) with its interval, or why there is no interval."""

    value: float | None
    low: float | None = None
    high: float | None = None
    reason: str | None = None

    @property
    def direction(self) -> int | None:
        """``1``/``-1`` when the interval lies entirely above/below 0, ``0`` when it contains 0,
        ``None`` without an interval."""
        if self.low is None or self.high is None:
            return None
        if self.low > 0:
            return 1
        if self.high < 0:
            return -1
        return 0


def _scipy_stats() -> Any:
    """``scipy.stats``, imported on first use: it is the largest import of the application
    (about a fifth of a server process's start) and only experiment results need it."""
    from scipy import stats

    return stats


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    return float(_scipy_stats().norm.ppf((1 + confidence) / 2))


def wilson(successes: int, n: int, confidence: float) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``successes / n`` (``None`` when n is 0)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    z = _z(confidence)
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Exact bounds at 0 % and 100 % (rounding could leave them a hair off).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def rate_difference(x1: int, n1: int, x0: int, n0: int, confidence: float) -> Estimate:
    """Conversion rate of the variant (``x1`` of ``n1``) minus the holdout's (``x0`` of
    ``n0``), with the Newcombe hybrid score interval (method 10)."""
    if n1 <= 0 or n0 <= 0:
        return Estimate(None, reason=EMPTY_ARM)
    w1, w0 = wilson(x1, n1, confidence), wilson(x0, n0, confidence)
    assert w1 is not None and w0 is not None
    (l1, u1), (l0, u0) = w1, w0
    p1, p0 = x1 / n1, x0 / n0
    d = p1 - p0
    low = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return Estimate(d, max(-1.0, low), min(1.0, high))


def relative_lift(x1: int, n1: int, x0: int, n0: int) -> float | None:
    """``(p1 - p0) / p0``: 0.25 means the variant converts 25 % more often than the holdout
    (``None`` when an arm is empty or the holdout never converted)."""
    if n1 <= 0 or n0 <= 0 or x0 == 0:
        return None
    p1, p0 = x1 / n1, x0 / n0
    return (p1 - p0) / p0


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, sum and sum of squares of one arm's per-member values (members with value 0
    included in ``n``). Integers stay exact: the variance is computed without cancellation."""

    n: int
    total: int | float = 0
    squares: int | float = 0

    @classmethod
    def of(cls, values: Sequence[int | float]) -> Moments:
        return cls(len(values), sum(values), sum(v * v for v in values))

    @property
    def mean(self) -> float:
        return float(Fraction(self.total) / self.n) if self.n else 0.0

    @property
    def variance(self) -> float:
        """The sample variance (``n - 1`` denominator); 0 below two members."""
        if self.n < 2:
            return 0.0
        n, s, q = self.n, Fraction(self.total), Fraction(self.squares)
        return float(max((n * q - s * s) / (n * (n - 1)), Fraction(0)))


def welch_moments(a: Moments, b: Moments, confidence: float) -> Estimate:
    """Mean of ``a`` minus mean of ``b`` with the Welch t interval: standard error
    ``sqrt(va/na + vb/nb)``, Welch-Satterthwaite degrees of freedom
    ``se⁴ / ((va/na)²/(na-1) + (vb/nb)²/(nb-1))``, half-width ``t(df) x se``."""
    if a.n <= 0 or b.n <= 0:
        return Estimate(None, reason=EMPTY_ARM)
    d = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Estimate(d, reason=TOO_FEW)
    _z(confidence)
    ea, eb = a.variance / a.n, b.variance / b.n
    se2 = ea + eb
    if se2 <= 0:
        return Estimate(d, reason=NO_VARIANCE)
    df = se2 * se2 / (ea * ea / (a.n - 1) + eb * eb / (b.n - 1))
    half = float(_scipy_stats().t.ppf((1 + confidence) / 2, df)) * math.sqrt(se2)
    return Estimate(d, d - half, d + half)


def welch(a: Sequence[float], b: Sequence[float], confidence: float) -> Estimate:
    """Mean of ``a`` minus mean of ``b`` with ``scipy.stats.ttest_ind(equal_var=False)`` and
    its ``confidence_interval``; the same figures as :func:`welch_moments`."""
    if not a or not b:
        return Estimate(None, reason=EMPTY_ARM)
    d = sum(a) / len(a) - sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return Estimate(d, reason=TOO_FEW)
    if Moments.of(a).variance == 0 and Moments.of(b).variance == 0:
        return Estimate(d, reason=NO_VARIANCE)
    result = _scipy_stats().ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(confidence_level=confidence)
    return Estimate(d, float(ci.low), float(ci.high))
