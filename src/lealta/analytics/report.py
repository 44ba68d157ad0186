"""Thin SQL edges of the dashboard: read the roll-ups into :mod:`lealta.analytics.kpis` inputs.

Every query reads the roll-up tables (``analytics_*``) with a range on their day or month
key, except two that describe the present: the tier mix (accounts) and the expiring-points
schedule (open point lots), both one grouped query.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from lealta.analytics import kpis
from lealta.analytics.kpis import Kpis, Period, PeriodFigures
from lealta.coupons import service as coupons
from lealta.kit.money import exponent
from lealta.models import (
    AnalyticsCohort,
    AnalyticsDaily,
    AnalyticsMember,
    AnalyticsMemberDay,
    AnalyticsMonthly,
    Member,
    PointLot,
)
from lealta.nonmembers import service as nonmembers
from lealta.plans import service as plans
from lealta.programme.schema import Programme
from lealta.reporting import queries

D = AnalyticsDaily
MD = AnalyticsMemberDay


def _sum(session: Session, *columns: str, start: date | None, end: date) -> list[int]:
    cond = [D.day <= end] + ([D.day >= start] if start is not None else [])
    row = session.execute(
        select(*(func.coalesce(func.sum(getattr(D, c)), 0) for c in columns)).where(*cond)
    ).one()
    return [int(v) for v in row]


def _activity(session: Session, period: Period) -> tuple[int, int, int, int]:
    """Members with an order in the period, with two or more, with one in the previous
    period of the same length, and with one in both: one pass over the buyers' days of the
    two windows (the partial index ``ix_analytics_member_days_buyers`` covers it)."""
    prev = period.previous()
    now_n = func.sum(case((MD.day >= period.start, MD.orders), else_=0)).label("now_n")
    prev_n = func.sum(case((MD.day < period.start, MD.orders), else_=0)).label("prev_n")
    per_member = (
        select(MD.member_id, now_n, prev_n)
        .where(MD.day >= prev.start, MD.day <= period.end, MD.orders > 0)
        .group_by(MD.member_id)
        .subquery()
    )
    now_c, prev_c = per_member.c.now_n, per_member.c.prev_n
    row = session.execute(
        select(
            func.coalesce(func.sum(case((now_c > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(case((now_c >= 2, 1), else_=0)), 0),
            func.coalesce(func.sum(case((prev_c > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(prev_c > 0, now_c > 0), 1), else_=0)), 0),
        ).select_from(per_member)
    ).one()
    active, repeat, previous, retained = (int(v) for v in row)
    return active, repeat, previous, retained


def figures(session: Session, period: Period) -> PeriodFigures:
    """The roll-up figures of one period."""
    start_at = datetime.combine(period.start, time(), UTC)
    end_at = datetime.combine(period.end + timedelta(days=1), time(), UTC)
    guests = nonmembers.figures(session, start=start_at, end=end_at)
    (orders, revenue, refunded, earned, reversed_, redeemed, expired, adjusted) = _sum(
        session,
        "orders",
        "revenue_minor",
        "refunded_minor",
        "points_earned",
        "points_reversed",
        "points_redeemed",
        "points_expired",
        "points_adjusted",
        start=period.start,
        end=period.end,
    )
    (members, t_earned, t_reversed, t_adjusted, t_redeemed, t_expired, t_revenue, t_refunded) = (
        _sum(
            session,
            "new_members",
            "points_earned",
            "points_reversed",
            "points_adjusted",
            "points_redeemed",
            "points_expired",
            "revenue_minor",
            "refunded_minor",
            start=None,
            end=period.end,
        )
    )
    active, repeat, previous, retained = _activity(session, period)
    buyers = int(
        session.scalar(
            select(func.count())
            .select_from(AnalyticsMember)
            .where(AnalyticsMember.first_order_day <= period.end)
        )
        or 0
    )
    issued_to_date = t_earned - t_reversed + t_adjusted
    return PeriodFigures(
        days=period.days,
        members=members,
        non_member_customers=guests.customers,
        non_member_previous_active=guests.previous_active,
        non_member_retained=guests.retained,
        non_member_buyers_to_date=guests.buyers_to_date,
        non_member_revenue_to_date_minor=guests.revenue_to_date_minor,
        active_members=active,
        repeat_members=repeat,
        previous_active_members=previous,
        retained_members=retained,
        orders=orders,
        revenue_minor=revenue,
        refunded_minor=refunded,
        points_issued=earned - reversed_ + adjusted,
        points_redeemed=redeemed,
        points_expired=expired,
        points_issued_to_date=issued_to_date,
        points_expired_to_date=t_expired,
        points_outstanding=issued_to_date - t_redeemed - t_expired,
        buyers_to_date=buyers,
        revenue_to_date_minor=t_revenue - t_refunded,
        plan_revenue_minor=plans.revenue_minor(session, start=start_at, end=end_at),
        coupon_discount_minor=coupons.discounts_minor(
            session, start=start_at, end=end_at, exclude_source="redemption"
        ),
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    period: Period
    kpis: Kpis
    compare_period: Period | None
    compare_kpis: Kpis | None
    deltas: dict[str, float | None]


def comparison(
    session: Session,
    period: Period,
    compare: Period | None,
    *,
    cost_per_point: Decimal,
    currency: str,
) -> Comparison:
    """KPIs of ``period`` and of ``compare`` (the ROI baseline), with relative changes."""
    exp = exponent(currency)
    current = figures(session, period)
    before = figures(session, compare) if compare is not None else None
    k = kpis.compute(current, cost_per_point=cost_per_point, exponent=exp, baseline=before)
    kb = (
        kpis.compute(before, cost_per_point=cost_per_point, exponent=exp)
        if before is not None
        else None
    )
    return Comparison(period, k, compare, kb, kpis.delta(k, kb) if kb is not None else {})


# --- series for the charts and tables ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthRow:
    month: date
    active_members: int
    new_members: int
    orders: int
    revenue_minor: int
    points_issued: int
    points_redeemed: int
    points_expired: int
    points_outstanding: int
    """Balance at the month's end (or at the period's end for its last month)."""


def months(session: Session, period: Period) -> list[MonthRow]:
    """One row per calendar month the period touches, from the monthly and daily roll-ups."""
    first = period.start.replace(day=1)
    monthly = {
        r.month: r
        for r in session.scalars(
            select(AnalyticsMonthly).where(
                AnalyticsMonthly.month >= first, AnalyticsMonthly.month <= period.end
            )
        )
    }
    flows: dict[date, list[int]] = {}
    for day, earned, reversed_, adjusted, redeemed, expired in session.execute(
        select(
            D.day,
            D.points_earned,
            D.points_reversed,
            D.points_adjusted,
            D.points_redeemed,
            D.points_expired,
        ).where(D.day >= first, D.day <= period.end)
    ):
        f = flows.setdefault(day.replace(day=1), [0, 0, 0])
        f[0] += earned - reversed_ + adjusted
        f[1] += redeemed
        f[2] += expired
    e, r, a, rd, x = _sum(
        session,
        "points_earned",
        "points_reversed",
        "points_adjusted",
        "points_redeemed",
        "points_expired",
        start=None,
        end=first - timedelta(days=1),
    )
    balance = e - r + a - rd - x
    rows = []
    month = first
    while month <= period.end:
        m = monthly.get(month)
        issued, redeemed, expired = flows.get(month, [0, 0, 0])
        balance += issued - redeemed - expired
        rows.append(
            MonthRow(
                month=month,
                active_members=m.active_members if m else 0,
                new_members=m.new_members if m else 0,
                orders=m.orders if m else 0,
                revenue_minor=m.revenue_minor if m else 0,
                points_issued=issued,
                points_redeemed=redeemed,
                points_expired=expired,
                points_outstanding=balance,
            )
        )
        month = (month + timedelta(days=32)).replace(day=1)
    return rows


def cohorts(
    session: Session, period: Period, *, limit: int = 12
) -> list[tuple[date, int, list[kpis.CohortCell]]]:
    """Retention of the (at most ``limit`` latest) enrolment-month cohorts within the period."""
    first = period.start.replace(day=1)
    sizes = {
        m: n
        for m, n in session.execute(
            select(AnalyticsMonthly.month, AnalyticsMonthly.new_members)
            .where(
                AnalyticsMonthly.month >= first,
                AnalyticsMonthly.month <= period.end,
                AnalyticsMonthly.new_members > 0,
            )
            .order_by(AnalyticsMonthly.month.desc())
            .limit(limit)
        )
    }
    if not sizes:
        return []
    active = {
        (c, m): n
        for c, m, n in session.execute(
            select(
                AnalyticsCohort.cohort, AnalyticsCohort.month, AnalyticsCohort.active_members
            ).where(
                AnalyticsCohort.cohort.in_(list(sizes)),
                and_(AnalyticsCohort.month >= first, AnalyticsCohort.month <= period.end),
            )
        )
    }
    return kpis.cohort_table(sizes, active)


@dataclass(frozen=True, slots=True)
class Expiring:
    month: date
    points: int
    value: Decimal


def expiring(
    session: Session, *, now: datetime, cost_per_point: Decimal, currency: str, months: int = 6
) -> list[Expiring]:
    """Points of open lots expiring in each of the next ``months`` calendar months."""
    exp = exponent(currency)
    start = now.date().replace(day=1)
    bounds = [start]
    for _ in range(months):
        bounds.append((bounds[-1] + timedelta(days=32)).replace(day=1))
    out = []
    for lo, hi in itertools.pairwise(bounds):
        lo_at = max(now, datetime.combine(lo, time(), UTC))
        hi_at = datetime.combine(hi, time(), UTC)
        points = int(
            session.scalar(
                select(func.coalesce(func.sum(PointLot.remaining), 0)).where(
                    PointLot.remaining > 0,
                    PointLot.expires_at >= lo_at,
                    PointLot.expires_at < hi_at,
                )
            )
            or 0
        )
        value = kpis.money(Decimal(points) * cost_per_point * 10**exp, exp)
        out.append(Expiring(lo, points, value))
    return out


def tier_mix(session: Session, programme: Programme, *, language: str) -> list[queries.TierShare]:
    """Members per tier today (the programme in force)."""
    total = int(session.scalar(select(func.count()).select_from(Member)) or 0)
    return queries.tier_distribution(session, programme, language=language, total=total)
