"""Programme KPIs: pure maths over the figures of one period (no database, no clock).

The figures come from the roll-up tables (:mod:`lealta.analytics.report` reads them); every
definition here is the one written in the README ("Programme dashboard: KPI definitions"),
so a finance person can redo each number by hand. A ratio whose denominator is zero is
``None`` (shown as "—"), never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from lealta.kit.errors import InvalidInput

MAX_PERIOD_DAYS = 3660
"""Longest period a KPI request may cover (ten years)."""


class InvalidPeriod(InvalidInput):
    code = "invalid_period"


@dataclass(frozen=True, slots=True)
class Period:
    """Calendar days ``start``..``end``, both included (UTC days)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidPeriod("The period ends before it starts.")
        if self.days > MAX_PERIOD_DAYS:
            raise InvalidPeriod("A period may cover at most ten years.")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of the same length that ends the day before this one starts."""
        end = self.start - timedelta(days=1)
        return Period(end - timedelta(days=self.days - 1), end)

    def year_before(self) -> Period:
        """The same dates one year earlier (29 February becomes 28 February)."""
        return Period(_minus_year(self.start), _minus_year(self.end))


def _minus_year(d: date) -> date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:
        return d.replace(year=d.year - 1, day=28)


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """Counts and sums of one period as read from the roll-ups (money in minor units)."""

    days: int
    members: int
    """Members enrolled on or before the period's last day."""
    non_member_customers: int
    """Customers seen in orders who never enrolled (zero while every customer is a member)."""
    active_members: int
    """Members with at least one order in the period."""
    repeat_members: int
    """Members with two orders or more in the period."""
    previous_active_members: int
    """Members with an order in the period of the same length just before."""
    retained_members: int
    """Of those, the ones with an order in this period too."""
    orders: int
    revenue_minor: int
    refunded_minor: int
    points_issued: int
    points_redeemed: int
    points_expired: int
    points_issued_to_date: int
    points_expired_to_date: int
    points_outstanding: int
    """Points balance of the programme at the end of the period (sum of every ledger entry)."""
    buyers_to_date: int
    """Members with at least one order up to the period's end."""
    revenue_to_date_minor: int
    """Net revenue (orders minus refunds) of every member up to the period's end."""
    plan_revenue_minor: int = 0
    """Fees of paid plans collected in the period."""
    non_member_previous_active: int = 0
    """Non-member customers with an order in the period of the same length just before."""
    non_member_retained: int = 0
    """Of those, the ones with an order in this period too."""
    non_member_buyers_to_date: int = 0
    non_member_revenue_to_date_minor: int = 0
    coupon_discount_minor: int = 0
    """Discounts given by coupons not bought with points (thresholds, workflows, staff), on
    uses in the period that were not rolled back."""


@dataclass(frozen=True, slots=True)
class Kpis:
    """The KPIs of one period. Rates are fractions (0.25 = 25 %); money in major units."""

    members: int
    active_members: int
    participation_rate: float | None
    active_rate: float | None
    retention_rate: float | None
    churn_rate: float | None
    orders: int
    net_revenue: Decimal
    purchase_frequency: float | None
    purchase_frequency_annual: float | None
    repeat_purchase_rate: float | None
    average_order_value: Decimal | None
    historic_clv: Decimal | None
    points_issued: int
    points_redeemed: int
    points_expired: int
    redemption_rate: float | None
    breakage_rate: float | None
    points_outstanding: int
    points_liability: Decimal
    programme_cost: Decimal
    incremental_revenue: Decimal | None
    roi: float | None
    plan_revenue: Decimal = Decimal(0)
    """Fees of paid plans collected in the period (not counted in ``net_revenue``)."""
    non_member_retention_rate: float | None = None
    non_member_historic_clv: Decimal | None = None


def ratio(numerator: float | int, denominator: float | int) -> float | None:
    """``numerator / denominator`` rounded to 4 places, or None when the denominator is 0."""
    if not denominator:
        return None
    return round(numerator / denominator, 4)


def money(minor: int | Decimal, exponent: int) -> Decimal:
    """Minor units to major units, rounded half up to the currency's exponent."""
    quantum = Decimal(1).scaleb(-exponent)
    return (Decimal(minor) / (Decimal(10) ** exponent)).quantize(quantum, ROUND_HALF_UP)


def compute(
    f: PeriodFigures,
    *,
    cost_per_point: Decimal,
    exponent: int,
    baseline: PeriodFigures | None = None,
) -> Kpis:
    """The KPIs of a period from its figures.

    ``cost_per_point`` values a point in currency (liability and cost); the programme cost is
    the points redeemed at that value plus the discounts of coupons not bought with points.
    ``baseline`` is the comparison period: the incremental revenue is this period's net
    revenue minus the baseline's net revenue per day times this period's days, and ROI is
    ``(incremental revenue + plan fees - programme cost) / programme cost``.
    """
    net_minor = f.revenue_minor - f.refunded_minor
    retention = ratio(f.retained_members, f.previous_active_members)
    frequency = ratio(f.orders, f.active_members)
    points_cost = Decimal(f.points_redeemed) * cost_per_point * 10**exponent
    cost = money(points_cost + f.coupon_discount_minor, exponent)
    plan_revenue = money(f.plan_revenue_minor, exponent)
    incremental: Decimal | None = None
    roi: float | None = None
    if baseline is not None and baseline.days:
        base_minor = Decimal(baseline.revenue_minor - baseline.refunded_minor)
        incremental = money(net_minor - base_minor * f.days / baseline.days, exponent)
        if cost:
            roi = round(float((incremental + plan_revenue - cost) / cost), 4)
    return Kpis(
        members=f.members,
        active_members=f.active_members,
        participation_rate=ratio(f.members, f.members + f.non_member_customers),
        active_rate=ratio(f.active_members, f.members),
        retention_rate=retention,
        churn_rate=round(1 - retention, 4) if retention is not None else None,
        orders=f.orders,
        net_revenue=money(net_minor, exponent),
        purchase_frequency=frequency,
        purchase_frequency_annual=(
            round(f.orders / f.active_members * 365 / f.days, 4) if f.active_members else None
        ),
        repeat_purchase_rate=ratio(f.repeat_members, f.active_members),
        average_order_value=money(Decimal(net_minor) / f.orders, exponent) if f.orders else None,
        historic_clv=(
            money(Decimal(f.revenue_to_date_minor) / f.buyers_to_date, exponent)
            if f.buyers_to_date
            else None
        ),
        points_issued=f.points_issued,
        points_redeemed=f.points_redeemed,
        points_expired=f.points_expired,
        redemption_rate=ratio(f.points_redeemed, f.points_issued),
        breakage_rate=ratio(f.points_expired_to_date, f.points_issued_to_date),
        points_outstanding=f.points_outstanding,
        points_liability=money(
            Decimal(f.points_outstanding) * cost_per_point * 10**exponent, exponent
        ),
        programme_cost=cost,
        incremental_revenue=incremental,
        roi=roi,
        plan_revenue=plan_revenue,
        non_member_retention_rate=ratio(f.non_member_retained, f.non_member_previous_active),
        non_member_historic_clv=(
            money(
                Decimal(f.non_member_revenue_to_date_minor) / f.non_member_buyers_to_date, exponent
            )
            if f.non_member_buyers_to_date
            else None
        ),
    )


def delta(current: Kpis, previous: Kpis) -> dict[str, float | None]:
    """Relative change of each numeric KPI (0.1 = +10 %); None when either side is missing
    or the previous value is zero."""
    out: dict[str, float | None] = {}
    for f in fields(Kpis):
        now, before = getattr(current, f.name), getattr(previous, f.name)
        if now is None or before is None or not before:
            out[f.name] = None
        else:
            out[f.name] = round(
                float((Decimal(str(now)) - Decimal(str(before))) / abs(Decimal(str(before)))), 4
            )
    return out


@dataclass(frozen=True, slots=True)
class CohortCell:
    cohort: date
    offset: int
    """Months since the cohort's enrolment month (0 = that month)."""
    active: int
    rate: float | None


def months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def cohort_table(
    sizes: dict[date, int], active: dict[tuple[date, date], int]
) -> list[tuple[date, int, list[CohortCell]]]:
    """Cohort retention: for each enrolment month (``sizes``: members enrolled that month),
    the share of its members who bought in each later month (``active``: (cohort, month) →
    members of the cohort with an order in that month)."""
    rows = []
    for cohort in sorted(sizes):
        size = sizes[cohort]
        cells = [
            CohortCell(cohort, months_between(cohort, month), n, ratio(n, size))
            for (c, month), n in sorted(active.items())
            if c == cohort and month >= cohort
        ]
        rows.append((cohort, size, cells))
    return rows
