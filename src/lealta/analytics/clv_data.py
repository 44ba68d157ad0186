"""Predicted CLV from Lealta's orders: the per-member RFM summary, the fitted model, predictions.

A *transaction* is a member's net spend (total - refunded) on one UTC day in the programme's
currency; fully refunded orders do not count. Per member: ``frequency`` = transaction days - 1
(repeat purchases), ``recency`` = weeks from the first to the last transaction day, ``age``
(the papers' T) = weeks from the first transaction day to today (the calibration ends now),
``monetary`` = the average value of the repeat transactions (the first is left out, as in the
papers).

The fit reads every member's summary in one streamed statement and uses at most
``FIT_SAMPLE_CAP`` of them (an even, deterministic spread). It runs as a job, never in a
request: :mod:`lealta.analytics.clv_store` stores the fit and the predictions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Date, Select, case, func, select, type_coerce
from sqlalchemy.orm import Session

from lealta.analytics import clv
from lealta.kit.errors import Conflict
from lealta.kit.money import exponent
from lealta.models import Order
from lealta.programme import service as programmes

FIT_SAMPLE_CAP = 20_000
CHUNK = 20_000
DAYS_PER_WEEK = 7.0

# Distribution buckets of predicted CLV, in major currency units: [0, 10), [10, 25), …, [5000, ∞)
BUCKET_EDGES = (0, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000)


class NoPurchaseHistory(Conflict):
    code = "clv_no_purchase_history"


@dataclass(frozen=True, slots=True)
class Summaries:
    """Aligned arrays, one row per member with at least one transaction; times in weeks,
    money in major units of the currency."""

    member_id: NDArray[np.int64]
    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    age: NDArray[np.float64]
    monetary: NDArray[np.float64]
    first_day: list[date] = field(default_factory=list)
    last_day: list[date] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.member_id)


@dataclass(frozen=True, slots=True)
class FittedModel:
    bgnbd: clv.Fit[clv.BgNbdParams]
    gamma_gamma: clv.Fit[clv.GammaGammaParams]
    currency: str
    fitted_at: datetime
    customers: int  # members with purchases when fitted (the fit used at most the cap)


def _day(column: Any) -> Any:
    # date() is a function on both engines; sessions run in UTC, so it is the UTC day.
    return type_coerce(func.date(column), Date)


def summary_statement(currency: str, now: datetime, member_id: int | None = None) -> Select[Any]:
    """One set-based statement: daily net spend per member, then one row per member."""
    net = Order.total_minor - Order.refunded_minor
    day = _day(Order.occurred_at)
    daily = select(Order.member_id.label("member_id"), day.label("day"), func.sum(net).label("v"))
    daily = daily.where(Order.currency == currency, net > 0, Order.occurred_at <= now)
    if member_id is not None:
        daily = daily.where(Order.member_id == member_id)
    days = daily.group_by(Order.member_id, day).subquery("days")
    ranked = select(
        days.c.member_id,
        days.c.day,
        days.c.v,
        func.min(days.c.day).over(partition_by=days.c.member_id).label("first_day"),
    ).subquery("ranked")
    return (
        select(
            ranked.c.member_id,
            func.count().label("transactions"),
            func.min(ranked.c.day).label("first_day"),
            func.max(ranked.c.day).label("last_day"),
            func.sum(case((ranked.c.day > ranked.c.first_day, ranked.c.v), else_=0)).label(
                "repeat_minor"
            ),
        )
        .group_by(ranked.c.member_id)
        .order_by(ranked.c.member_id)
    )


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _to_arrays(rows: list[Any], currency: str, today: date, *, keep_days: bool) -> Summaries:
    scale = 10.0 ** exponent(currency)
    n = len(rows)
    member_id = np.empty(n, dtype=np.int64)
    x = np.empty(n, dtype=np.float64)
    first = np.empty(n, dtype=np.int64)
    last = np.empty(n, dtype=np.int64)
    repeat = np.empty(n, dtype=np.float64)
    firsts: list[date] = []
    lasts: list[date] = []
    for i, (mid, transactions, first_day, last_day, repeat_minor) in enumerate(rows):
        f, la = _as_date(first_day), _as_date(last_day)
        member_id[i] = mid
        x[i] = transactions - 1
        first[i] = f.toordinal()
        last[i] = la.toordinal()
        repeat[i] = float(repeat_minor or 0)
        if keep_days:
            firsts.append(f)
            lasts.append(la)
    with np.errstate(divide="ignore", invalid="ignore"):
        monetary = np.where(x > 0, repeat / np.maximum(x, 1) / scale, 0.0)
    return Summaries(
        member_id=member_id,
        frequency=x,
        recency=(last - first) / DAYS_PER_WEEK,
        age=(today.toordinal() - first) / DAYS_PER_WEEK,
        monetary=monetary,
        first_day=firsts,
        last_day=lasts,
    )


def stream_summaries(
    session: Session, *, currency: str, now: datetime, chunk: int = CHUNK, keep_days: bool = False
) -> Iterator[Summaries]:
    """Every member's summary, ``chunk`` rows at a time (a server-side cursor on PostgreSQL:
    memory stays bounded whatever the size of the orders table)."""
    today = now.date()
    result = session.execute(summary_statement(currency, now).execution_options(yield_per=chunk))
    for part in result.partitions(chunk):
        yield _to_arrays(list(part), currency, today, keep_days=keep_days)


def member_summary(
    session: Session, member_id: int, *, currency: str, now: datetime
) -> Summaries | None:
    rows = list(session.execute(summary_statement(currency, now, member_id)))
    if not rows:
        return None
    return _to_arrays(rows, currency, now.date(), keep_days=True)


def _sample(parts: list[Summaries], cap: int) -> tuple[NDArray[np.float64], ...]:
    x = np.concatenate([p.frequency for p in parts]) if parts else np.empty(0)
    t_x = np.concatenate([p.recency for p in parts]) if parts else np.empty(0)
    age = np.concatenate([p.age for p in parts]) if parts else np.empty(0)
    m = np.concatenate([p.monetary for p in parts]) if parts else np.empty(0)
    if len(x) > cap:
        pick = np.linspace(0, len(x) - 1, cap).round().astype(np.int64)
        x, t_x, age, m = x[pick], t_x[pick], age[pick], m[pick]
    return x, t_x, age, m


def fit(
    session: Session, *, currency: str, now: datetime, cap: int = FIT_SAMPLE_CAP
) -> FittedModel:
    """Fit BG/NBD and Gamma-Gamma on the members' histories up to ``now``; raises
    ``409 clv_insufficient_data`` / ``clv_fit_failed`` when the history cannot support it."""
    parts = list(stream_summaries(session, currency=currency, now=now))
    customers = sum(len(p) for p in parts)
    x, t_x, age, m = _sample(parts, cap)
    return FittedModel(
        bgnbd=clv.fit_bgnbd(x, t_x, age),
        gamma_gamma=clv.fit_gamma_gamma(x, m),
        currency=currency,
        fitted_at=now,
        customers=customers,
    )


def money(value: float, currency: str) -> Decimal:
    """A float amount in major units as a Decimal with the currency's minor digits."""
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-exponent(currency)))


@dataclass(frozen=True, slots=True)
class MemberClv:
    currency: str
    transactions: int
    first_purchase: date
    last_purchase: date
    average_repeat_value: Decimal | None
    expected_purchases_90d: float
    expected_purchases_365d: float
    probability_alive: float
    expected_order_value: Decimal
    predicted_clv: Decimal
    horizon_months: int
    annual_discount_rate: float
    model: FittedModel


@dataclass(frozen=True, slots=True)
class Bucket:
    lower: Decimal
    upper: Decimal | None
    members: int
    clv: Decimal


@dataclass(frozen=True, slots=True)
class AggregateClv:
    currency: str
    population: str
    members: int
    members_with_purchases: int
    total_clv: Decimal
    average_clv: Decimal
    median_clv: Decimal
    expected_purchases_365d: float
    average_probability_alive: float
    buckets: list[Bucket]
    quantiles: dict[str, Decimal]
    horizon_months: int
    annual_discount_rate: float
    model: FittedModel


def aggregate_parts(
    predictions: Iterable[clv.Prediction],
    model: FittedModel,
    *,
    members: int,
    months: int,
    rate: float,
) -> AggregateClv:
    """Sum the predictions of every member with a purchase (streamed chunk by chunk). Lealta's
    orders all belong to enrolled members, so the population is the members."""
    currency, annual_discount_rate = model.currency, rate
    edges = np.asarray(BUCKET_EDGES, dtype=np.float64)
    counts = np.zeros(len(edges), dtype=np.int64)
    sums = np.zeros(len(edges), dtype=np.float64)
    values: list[NDArray[np.float64]] = []
    purchases = alive = 0.0
    for p in predictions:
        where = np.searchsorted(edges, p.clv, side="right") - 1
        where = np.clip(where, 0, len(edges) - 1)
        counts += np.bincount(where, minlength=len(edges))
        sums += np.bincount(where, weights=p.clv, minlength=len(edges))
        values.append(p.clv)
        purchases += float(p.purchases_365d.sum())
        alive += float(p.probability_alive.sum())
    everyone = np.concatenate(values) if values else np.empty(0)
    n = len(everyone)
    qs = {"p10": 10, "p25": 25, "p50": 50, "p75": 75, "p90": 90, "p99": 99}
    quantiles = {
        k: money(float(np.percentile(everyone, q)) if n else 0.0, currency) for k, q in qs.items()
    }
    buckets = [
        Bucket(
            lower=Decimal(int(edges[i])),
            upper=Decimal(int(edges[i + 1])) if i + 1 < len(edges) else None,
            members=int(counts[i]),
            clv=money(sums[i], currency),
        )
        for i in range(len(edges))
    ]
    total = float(everyone.sum())
    return AggregateClv(
        currency=currency,
        population="members",
        members=members,
        members_with_purchases=n,
        total_clv=money(total, currency),
        average_clv=money(total / n if n else 0.0, currency),
        median_clv=quantiles["p50"],
        expected_purchases_365d=purchases,
        average_probability_alive=alive / n if n else 0.0,
        buckets=buckets,
        quantiles=quantiles,
        horizon_months=months,
        annual_discount_rate=annual_discount_rate,
        model=model,
    )


DEFAULT_MONTHS = 36
DEFAULT_DISCOUNT_RATE = 0.10


@dataclass(frozen=True, slots=True)
class MemberClvView:
    """What the member 360 shows: the prediction, or the stable code of why there is none."""

    result: MemberClv | None
    reason: str | None

    @property
    def alive_percent(self) -> int:
        return round(100 * self.result.probability_alive) if self.result else 0

    def purchases(self, days: int) -> Decimal:
        if self.result is None:
            return Decimal(0)
        value = (
            self.result.expected_purchases_90d
            if days == 90
            else (self.result.expected_purchases_365d)
        )
        return Decimal(repr(value)).quantize(Decimal("0.1"))


def member_clv_view(session: Session, member_id: int, *, now: datetime) -> MemberClvView:
    """The member's prediction with the API's defaults, never raising for want of data."""
    from lealta.analytics import clv_store  # the stored fit reads these shapes

    currency = programmes.current(session, now=now).currency
    try:
        result = clv_store.member_clv(session, member_id, currency=currency)
    except Conflict as exc:
        return MemberClvView(None, exc.code)
    return MemberClvView(result, None)
