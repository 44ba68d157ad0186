"""The BG/NBD and Gamma-Gamma maths of predicted CLV: published estimates and properties.

CDNOW data: the 2,357-customer CDNOW sample (39-week calibration period) as shipped, with
each customer's average repeat-transaction value (``zbar``), inside the ``lifetimes`` package
installed from PyPI (test dependency; the file is read, the package is not imported).
"""

from __future__ import annotations

import csv
from importlib.metadata import distribution

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from lealta.analytics import clv


def _cdnow() -> dict[str, np.ndarray]:
    path = distribution("lifetimes").locate_file(
        "lifetimes/datasets/cdnow_customers_summary_with_transactions.csv"
    )
    with open(str(path), newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in ("x", "t_x", "T", "zbar")}


@pytest.fixture(scope="module")
def cdnow() -> dict[str, np.ndarray]:
    return _cdnow()


@pytest.fixture(scope="module")
def cdnow_bgnbd(cdnow: dict[str, np.ndarray]) -> clv.Fit[clv.BgNbdParams]:
    return clv.fit_bgnbd(cdnow["x"], cdnow["t_x"], cdnow["T"])


def test_cdnow_sample_is_the_published_one(cdnow: dict[str, np.ndarray]) -> None:
    assert len(cdnow["x"]) == 2357
    assert int(cdnow["x"].sum()) == 2457  # repeat transactions in the calibration period
    assert int(np.count_nonzero(cdnow["x"] > 0)) == 946


def test_bgnbd_reproduces_the_published_cdnow_estimates(
    cdnow_bgnbd: clv.Fit[clv.BgNbdParams],
) -> None:
    """Fader, Hardie and Lee (2005), "Counting Your Customers the Easy Way: An Alternative to
    the Pareto/NBD Model", Marketing Science 24(2), 275-284, section 4: on the CDNOW sample
    (2,357 customers, 39-week calibration) r = 0.243, alpha = 4.414, a = 0.793, b = 2.426,
    log-likelihood -9582.4."""
    p = cdnow_bgnbd.params
    assert p.r == pytest.approx(0.243, abs=0.001)
    assert p.alpha == pytest.approx(4.414, abs=0.002)
    assert p.a == pytest.approx(0.793, abs=0.002)
    assert p.b == pytest.approx(2.426, abs=0.003)
    assert cdnow_bgnbd.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert cdnow_bgnbd.customers == 2357


def test_bgnbd_conditional_expectation_matches_the_papers_worked_example(
    cdnow_bgnbd: clv.Fit[clv.BgNbdParams],
) -> None:
    """Same paper, section 4: a customer with x = 2, t_x = 30.43, T = 38.86 is expected to
    make 1.226 purchases in the next 39 weeks."""
    got = clv.expected_purchases(cdnow_bgnbd.params, 39, 2, 30.43, 38.86)
    assert float(got) == pytest.approx(1.226, abs=0.001)


def test_gamma_gamma_reproduces_the_published_cdnow_estimates(
    cdnow: dict[str, np.ndarray],
) -> None:
    """Fader, Hardie and Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
    Analysis", Journal of Marketing Research 42(4), and Fader and Hardie (2013), "The
    Gamma-Gamma Model of Monetary Value": on the 946 CDNOW repeat customers p = 6.25,
    q = 3.74, gamma = 15.44 (mean spend of the population p*gamma/(q-1) = 35.2)."""
    fit = clv.fit_gamma_gamma(cdnow["x"], cdnow["zbar"])
    p = fit.params
    assert fit.customers == 946
    assert p.p == pytest.approx(6.25, abs=0.01)
    assert p.q == pytest.approx(3.74, abs=0.01)
    assert p.gamma == pytest.approx(15.44, abs=0.02)
    assert p.population_mean == pytest.approx(35.2, abs=0.1)


def _direct_expectation(params: clv.BgNbdParams, t: float, x: float, t_x: float, T: float) -> float:
    """Eq. 10 exactly as printed (no Euler transformation), for moderate inputs."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    denominator = 1 + (x > 0) * (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return float(numerator / denominator)


CDNOW_PARAMS = clv.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
OTHER_PARAMS = clv.BgNbdParams(r=1.7, alpha=12.0, a=2.5, b=6.0)


@st.composite
def customers(draw: st.DrawFn) -> tuple[float, float, float]:
    T = draw(st.floats(0.5, 200))
    x = draw(st.integers(0, 40))
    t_x = 0.0 if x == 0 else draw(st.floats(0.0, T))
    return float(x), t_x, T


@settings(max_examples=150, deadline=None)
@given(customers(), st.floats(0.5, 104), st.sampled_from([CDNOW_PARAMS, OTHER_PARAMS]))
def test_euler_form_equals_the_printed_formula(
    c: tuple[float, float, float], t: float, params: clv.BgNbdParams
) -> None:
    x, t_x, T = c
    assert float(clv.expected_purchases(params, t, x, t_x, T)) == pytest.approx(
        _direct_expectation(params, t, x, t_x, T), rel=1e-6, abs=1e-9
    )


@settings(max_examples=200, deadline=None)
@given(customers(), st.sampled_from([CDNOW_PARAMS, OTHER_PARAMS]))
def test_probability_alive_is_a_probability_and_falls_with_silence(
    c: tuple[float, float, float], params: clv.BgNbdParams
) -> None:
    x, t_x, T = c
    alive = float(clv.probability_alive(params, x, t_x, T))
    assert 0.0 <= alive <= 1.0
    later = float(clv.probability_alive(params, x, t_x, T + 10))
    if x == 0:
        assert alive == later == 1.0  # no purchase yet: no chance to have dropped out
    else:
        assert later < alive
        # a more recent last purchase means more likely alive
        assert float(clv.probability_alive(params, x, T, T)) >= alive


@settings(max_examples=150, deadline=None)
@given(customers(), st.sampled_from([CDNOW_PARAMS, OTHER_PARAMS]))
def test_expected_purchases_grow_with_the_horizon(
    c: tuple[float, float, float], params: clv.BgNbdParams
) -> None:
    x, t_x, T = c
    horizons = np.array([0.0, 1.0, 13.0, 52.0, 156.0])
    values = clv.expected_purchases(params, horizons, x, t_x, T)
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(values) > 0)
    assert np.all(np.isfinite(values))


def test_heavy_buyers_stay_finite() -> None:
    """Thousands of purchases would overflow the printed hypergeometric term; ~25 a week,
    the last one today, is ~25 a week ahead too (slightly fewer: some risk of dropping out)."""
    got = float(clv.expected_purchases(CDNOW_PARAMS, 52, 5000, 200.0, 200.0))
    assert 1000 < got < 52 * 25
    # the same buyer silent for the last week has almost surely dropped out
    assert float(clv.expected_purchases(CDNOW_PARAMS, 52, 5000, 199.0, 200.0)) < 0.01


def test_new_customer_expectation_is_the_mean_of_a_fresh_customer() -> None:
    """E[X(t)] (eq. 9) equals E[Y(t) | x = 0, T = 0] (a customer just acquired)."""
    t = np.array([1.0, 39.0, 78.0])
    assert np.allclose(
        clv.expected_purchases_new_customer(CDNOW_PARAMS, t),
        clv.expected_purchases(CDNOW_PARAMS, t, 0, 0, 0),
    )


GG = clv.GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.floats(0.5, 5000))
def test_expected_value_shrinks_own_mean_towards_the_population(x: int, m: float) -> None:
    value = float(clv.expected_average_value(GG, x, m))
    low, high = sorted((GG.population_mean, m))
    assert low - 1e-9 <= value <= high + 1e-9
    # more observed transactions: closer to the customer's own mean
    more = float(clv.expected_average_value(GG, x + 10, m))
    assert abs(more - m) <= abs(value - m) + 1e-9


def test_expected_value_without_repeat_purchase_is_the_population_mean() -> None:
    assert float(clv.expected_average_value(GG, 0, 0.0)) == pytest.approx(GG.population_mean)


def test_lifetime_value_grows_with_horizon_and_falls_with_discount() -> None:
    x, t_x, T, m = (
        np.array([0.0, 2, 7]),
        np.array([0.0, 30.43, 35]),
        np.full(3, 38.86),
        np.array([0.0, 20, 45]),
    )
    short = clv.lifetime_value(CDNOW_PARAMS, GG, x, t_x, T, m, months=12, annual_discount_rate=0.1)
    long = clv.lifetime_value(CDNOW_PARAMS, GG, x, t_x, T, m, months=36, annual_discount_rate=0.1)
    cheap = clv.lifetime_value(CDNOW_PARAMS, GG, x, t_x, T, m, months=36, annual_discount_rate=0.3)
    assert np.all(short > 0) and np.all(long > short) and np.all(cheap < long)
    # without discounting it is E[M] * E[Y(horizon)]
    flat = clv.lifetime_value(CDNOW_PARAMS, GG, x, t_x, T, m, months=12, annual_discount_rate=0)
    expected = clv.expected_average_value(GG, x, m) * clv.expected_purchases(
        CDNOW_PARAMS, 12 * clv.WEEKS_PER_MONTH, x, t_x, T
    )
    assert np.allclose(flat, expected)


def test_duplicating_every_customer_leaves_the_estimates_unchanged(
    cdnow: dict[str, np.ndarray], cdnow_bgnbd: clv.Fit[clv.BgNbdParams]
) -> None:
    twice = clv.fit_bgnbd(*(np.tile(cdnow[k], 2) for k in ("x", "t_x", "T")))
    assert twice.params.r == pytest.approx(cdnow_bgnbd.params.r, rel=1e-3)
    assert twice.params.b == pytest.approx(cdnow_bgnbd.params.b, rel=1e-3)
    assert twice.log_likelihood == pytest.approx(2 * cdnow_bgnbd.log_likelihood, rel=1e-6)


def test_too_few_customers_is_a_clear_conflict() -> None:
    with pytest.raises(clv.InsufficientData) as info:
        clv.fit_bgnbd([1, 0, 2], [3.0, 0, 5], [10.0, 10, 10])
    assert info.value.code == "clv_insufficient_data"
    assert info.value.status_code == 409
    assert info.value.details["customers"] == 3
    with pytest.raises(clv.InsufficientData):
        clv.fit_bgnbd(np.zeros(500), np.zeros(500), np.full(500, 20.0))  # nobody came back
    with pytest.raises(clv.InsufficientData):
        clv.fit_gamma_gamma([1, 2, 0], [10.0, 20, 0])
