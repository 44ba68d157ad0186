"""Predicted customer lifetime value: BG/NBD purchase counts and Gamma-Gamma spend, pure maths.

Models, from the papers (the formulas are the published ones, written here with SciPy):

- **BG/NBD**: Fader, Hardie and Lee (2005), "Counting Your Customers the Easy Way: An
  Alternative to the Pareto/NBD Model", *Marketing Science* 24(2). While alive, a customer
  buys as a Poisson process with rate λ ~ Gamma(r, alpha); after each purchase they drop out
  with probability p ~ Beta(a, b). A customer is summarised by ``x`` (repeat purchases),
  ``t_x`` (time of the last purchase since the first) and ``T`` (time since the first,
  ``age`` in the code).
- **Gamma-Gamma**: Fader, Hardie and Lee (2005), "RFM and CLV: Using Iso-Value Curves for
  Customer Base Analysis", *Journal of Marketing Research* 42(4), and Fader and Hardie
  (2013), "The Gamma-Gamma Model of Monetary Value". The average value ``m`` of a
  customer's ``x`` repeat transactions, with parameters ``p``, ``q`` and ``gamma`` (``gamma``).

Time is in whatever unit the caller uses (Lealta uses weeks, like the papers); alpha scales with
it. Everything here works on numpy arrays and returns plain values; no database, no clock.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from scipy import optimize, special
else:

    class _OnFirstUse:
        """A module imported when first used: SciPy takes about a second to import, which
        every process start (``lealta run``, each worker, each CLI command) would pay."""

        def __init__(self, name: str) -> None:
            self._name = name

        def __getattr__(self, attribute: str) -> Any:
            return getattr(importlib.import_module(self._name), attribute)

    optimize = _OnFirstUse("scipy.optimize")
    special = _OnFirstUse("scipy.special")

from lealta.kit.errors import Conflict

Array = NDArray[np.float64]
P = TypeVar("P")

# Below these counts the likelihood surface is too flat for the estimates to mean anything.
MIN_CUSTOMERS = 20
MIN_REPEAT_CUSTOMERS = 10
WEEKS_PER_MONTH = 365.25 / 12 / 7


class InsufficientData(Conflict):
    """Too few customers (or repeat customers) to fit a model."""

    code = "clv_insufficient_data"


class FitFailed(Conflict):
    """The optimiser found no usable maximum (degenerate data)."""

    code = "clv_fit_failed"


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float

    @property
    def population_mean(self) -> float:
        """E[M] for a customer with no repeat purchase: pgamma / (q - 1)."""
        return self.p * self.gamma / (self.q - 1)


@dataclass(frozen=True, slots=True)
class Fit(Generic[P]):
    params: P
    log_likelihood: float
    customers: int


def _arrays(*values: ArrayLike) -> list[Array]:
    out = [np.asarray(v, dtype=np.float64) for v in values]
    shape = np.broadcast_shapes(*(a.shape for a in out))
    return [np.broadcast_to(a, shape) for a in out]


# --- BG/NBD ------------------------------------------------------------------------------------


def _log_dropout_odds(params: BgNbdParams, x: Array, t_x: Array, age: Array) -> Array:
    """log of δ(x>0) · a/(b+x-1) · ((alpha+T)/(alpha+t_x))^(r+x); -inf when x = 0."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + age) - np.log(alpha + t_x))
    return np.where(x > 0, term, -np.inf)


def bgnbd_log_likelihood(
    params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, age: ArrayLike
) -> Array:
    """Each customer's log-likelihood (paper, eq. 6)."""
    xa, ta, age_a = _arrays(x, t_x, age)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a1 = special.gammaln(r + xa) - special.gammaln(r) + r * np.log(alpha)
    a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + xa)
        - special.gammaln(b)
        - special.gammaln(a + b + xa)
    )
    a3 = -(r + xa) * np.log(alpha + age_a)
    # ln[(alpha+T)^-(r+x) + δ a/(b+x-1) (alpha+t_x)^-(r+x)] = a3 + ln(1 + odds)
    out: Array = a1 + a2 + a3 + np.logaddexp(0.0, _log_dropout_odds(params, xa, ta, age_a))
    return out


def probability_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, age: ArrayLike) -> Array:
    """P(alive | x, t_x, T) = 1 / (1 + δ(x>0) a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) (eq. 13)."""
    xa, ta, age_a = _arrays(x, t_x, age)
    out: Array = special.expit(-_log_dropout_odds(params, xa, ta, age_a))
    return out


def expected_purchases(
    params: BgNbdParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, age: ArrayLike
) -> Array:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` (paper, eq. 10).

    The factor ((alpha+T)/(alpha+T+t))^(r+x) · ₂F₁(r+x, b+x; a+b+x-1; z) is rewritten with Euler's
    transformation ₂F₁(A, B; C; z) = (1-z)^(C-A-B) ₂F₁(C-A, C-B; C; z) as
    (1-z)^(a-1) · ₂F₁(a+b-1-r, a-1; a+b+x-1; z), whose parameters do not grow with ``x``,
    so heavy buyers neither overflow nor lose precision.
    """
    ta_, xa, txa, age_a = _arrays(t, x, t_x, age)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if abs(a - 1) < 1e-9:
        # (1 - term)/(a - 1) is 0/0 at a = 1: step just off it (the function is smooth in a).
        return expected_purchases(BgNbdParams(r, alpha, a + 1e-6, b), t, x, t_x, age)
    z = ta_ / (alpha + age_a + ta_)
    c = a + b + xa - 1
    with np.errstate(invalid="ignore", over="ignore"):
        term = np.asarray(np.power(1 - z, a - 1) * special.hyp2f1(a + b - 1 - r, a - 1, c, z))
        # Near-homogeneous drop-out (a in the thousands) overflows the transformed form
        # instead; the printed one is then well behaved.
        bad = ~np.isfinite(term)
        if bad.any():
            zb, xb, cb = (np.broadcast_to(v, term.shape)[bad] for v in (z, xa, c))
            term = term.copy()
            term[bad] = np.power(1 - zb, r + xb) * special.hyp2f1(r + xb, b + xb, cb, zb)
    numerator = c / (a - 1) * (1 - term)
    out: Array = numerator * special.expit(-_log_dropout_odds(params, xa, txa, age_a))
    return out


def expected_purchases_new_customer(params: BgNbdParams, t: ArrayLike) -> Array:
    """E[X(t)] for a customer just acquired (paper, eq. 9)."""
    ta = np.asarray(t, dtype=np.float64)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = ta / (alpha + ta)
    hyp = special.hyp2f1(r, b, a + b - 1, z)
    out = (a + b - 1) / (a - 1) * (1 - np.power(alpha / (alpha + ta), r) * hyp)
    return np.asarray(out, dtype=np.float64)


def _compress(*columns: Array) -> tuple[list[Array], Array]:
    """Identical customers collapse into one weighted row: a 100,000-customer fit usually
    evaluates a few thousand distinct rows."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(np.float64)


def _minimise(
    objective: Any, start: Array, bounds: list[tuple[float, float]]
) -> tuple[Array, float]:
    """L-BFGS-B; Nelder-Mead only when it found nothing usable.

    The log-parameters are bounded: on a history with no heterogeneity left to explain (every
    customer drops out with the same probability, or spends alike) the likelihood keeps rising
    as a pair of parameters grows together without end. The bound stops there, at a model
    that predicts the same as the limit."""
    best: tuple[Array, float] | None = None
    for method in ("L-BFGS-B", "Nelder-Mead"):
        if best is not None:
            break
        result = optimize.minimize(
            objective,
            start if best is None else best[0],
            method=method,
            bounds=bounds,
            options={"maxiter": 10_000, "ftol": 1e-14, "gtol": 1e-9}
            if method == "L-BFGS-B"
            else {"maxiter": 20_000, "xatol": 1e-8, "fatol": 1e-10},
        )
        if (
            np.all(np.isfinite(result.x))
            and np.isfinite(result.fun)
            and result.fun < 1e299
            and (best is None or result.fun <= best[1])
        ):
            best = (np.asarray(result.x, dtype=np.float64), float(result.fun))
    if best is None:
        raise FitFailed("The model did not converge on this purchase history.")
    return best


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, age: ArrayLike) -> Fit[BgNbdParams]:
    """Maximum-likelihood BG/NBD parameters (on log scale, so they stay positive)."""
    xa, ta, age_a = (np.asarray(v, dtype=np.float64) for v in (x, t_x, age))
    n = len(xa)
    if n < MIN_CUSTOMERS or int(np.count_nonzero(xa > 0)) < MIN_REPEAT_CUSTOMERS:
        raise InsufficientData(
            f"Predicting CLV needs at least {MIN_CUSTOMERS} customers with purchases, "
            f"{MIN_REPEAT_CUSTOMERS} of them with a repeat purchase.",
            details={
                "customers": n,
                "repeat_customers": int(np.count_nonzero(xa > 0)),
                "min_customers": MIN_CUSTOMERS,
                "min_repeat_customers": MIN_REPEAT_CUSTOMERS,
            },
        )
    (ux, ut, u_age), weights = _compress(xa, ta, age_a)

    def objective(theta: Array) -> float:
        params = BgNbdParams(*np.exp(theta))
        ll = bgnbd_log_likelihood(params, ux, ut, u_age)
        total = float(np.dot(weights, ll))
        return -total if np.isfinite(total) else 1e300

    theta, value = _minimise(objective, np.zeros(4), [(-12.0, 12.0)] * 4)
    return Fit(BgNbdParams(*(float(v) for v in np.exp(theta))), -value, n)


# --- Gamma-Gamma -------------------------------------------------------------------------------


def gamma_gamma_log_likelihood(params: GammaGammaParams, x: ArrayLike, m: ArrayLike) -> Array:
    """Each repeat customer's log-density of their average transaction value (Fader and
    Hardie 2013, eq. 3): Γ(px+q)/(Γ(px)Γ(q)) gamma^q m^(px-1) x^(px) / (gamma+mx)^(px+q)."""
    xa, ma = _arrays(x, m)
    p, q, g = params.p, params.q, params.gamma
    px = p * xa
    out: Array = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(g)
        + (px - 1) * np.log(ma)
        + px * np.log(xa)
        - (px + q) * np.log(g + ma * xa)
    )
    return out


def fit_gamma_gamma(x: ArrayLike, m: ArrayLike) -> Fit[GammaGammaParams]:
    """Maximum-likelihood Gamma-Gamma parameters from repeat customers only (``x > 0``,
    ``m > 0``); others are ignored, as in the papers."""
    xa, ma = (np.asarray(v, dtype=np.float64) for v in (x, m))
    keep = (xa > 0) & (ma > 0)
    xa, ma = xa[keep], ma[keep]
    n = len(xa)
    if n < MIN_REPEAT_CUSTOMERS:
        raise InsufficientData(
            f"Predicting spend needs at least {MIN_REPEAT_CUSTOMERS} customers with a repeat "
            "purchase.",
            details={"repeat_customers": n, "min_repeat_customers": MIN_REPEAT_CUSTOMERS},
        )
    (ux, um), weights = _compress(xa, ma)
    scale = float(np.mean(ma))  # gamma is in money units: fit gamma / (mean spend)

    def objective(theta: Array) -> float:
        p, q, g = np.exp(theta)
        params = GammaGammaParams(p, q, g * scale)
        total = float(np.dot(weights, gamma_gamma_log_likelihood(params, ux, um)))
        return -total if np.isfinite(total) else 1e300

    theta, value = _minimise(
        objective, np.log([1.0, 2.0, 1.0]), [(-12.0, 12.0), (-12.0, 12.0), (-25.0, 25.0)]
    )
    p, q, g = (float(v) for v in np.exp(theta))
    params = GammaGammaParams(p, q, g * scale)
    if params.q <= 1:
        raise FitFailed(
            "The spend model has no finite mean on this history (q ≤ 1).",
            details={"p": params.p, "q": params.q, "gamma": params.gamma},
        )
    return Fit(params, -value, n)


def expected_average_value(params: GammaGammaParams, x: ArrayLike, m: ArrayLike) -> Array:
    """E[M | x, m] = (q-1)/(px+q-1) · pgamma/(q-1) + px/(px+q-1) · m: a weighted mean of the
    population mean and the customer's own; the population mean when ``x = 0``."""
    xa, ma = _arrays(x, m)
    p, q, g = params.p, params.q, params.gamma
    own = np.where(xa > 0, ma, 0.0)
    out: Array = p * (g + own * xa) / (p * xa + q - 1)
    return out


# --- CLV ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prediction:
    """Per-customer predictions, arrays aligned with the input."""

    purchases_90d: Array
    purchases_365d: Array
    probability_alive: Array
    expected_value: Array
    clv: Array


def monthly_discount(annual_rate: float) -> float:
    return float((1 + annual_rate) ** (1 / 12) - 1)


def lifetime_value(
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    age: ArrayLike,
    m: ArrayLike,
    *,
    months: int,
    annual_discount_rate: float,
) -> Array:
    """Discounted revenue over the next ``months``: Σ_i E[M] · (E[Y(i)] - E[Y(i-1)]) / (1+d)^i,
    month by month, with ``d`` the monthly rate equivalent to ``annual_discount_rate`` (time
    in weeks)."""
    xa, ta, age_a, ma = _arrays(x, t_x, age, m)
    value = expected_average_value(gamma_gamma, xa, ma)
    d = monthly_discount(annual_discount_rate)
    total = np.zeros(xa.shape, dtype=np.float64)
    previous = np.zeros(xa.shape, dtype=np.float64)
    for month in range(1, months + 1):
        cumulative = expected_purchases(bgnbd, month * WEEKS_PER_MONTH, xa, ta, age_a)
        total += (cumulative - previous) / (1 + d) ** month
        previous = cumulative
    out: Array = value * total
    return out


def predict(
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    age: ArrayLike,
    m: ArrayLike,
    *,
    months: int = 36,
    annual_discount_rate: float = 0.10,
) -> Prediction:
    """Everything the API shows for a set of customers (time in weeks)."""
    xa, ta, age_a, ma = _arrays(x, t_x, age, m)
    return Prediction(
        purchases_90d=expected_purchases(bgnbd, 90 / 7, xa, ta, age_a),
        purchases_365d=expected_purchases(bgnbd, 365 / 7, xa, ta, age_a),
        probability_alive=probability_alive(bgnbd, xa, ta, age_a),
        expected_value=expected_average_value(gamma_gamma, xa, ma),
        clv=lifetime_value(
            bgnbd,
            gamma_gamma,
            xa,
            ta,
            age_a,
            ma,
            months=months,
            annual_discount_rate=annual_discount_rate,
        ),
    )
