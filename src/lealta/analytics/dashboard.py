"""The programme dashboard as one service: resolve the periods, read the roll-ups, and give
the same figures to the API, the CLI (``lealta report``) and the console page."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.orm import Session

from lealta.analytics import report
from lealta.analytics.kpis import CohortCell, InvalidPeriod, Kpis, Period, money
from lealta.kit.money import exponent
from lealta.programme.schema import Programme
from lealta.reporting.queries import TierShare

CompareMode = Literal["previous", "year", "none"]
DEFAULT_DAYS = 30


def resolve(
    today: date,
    start: date | None,
    end: date | None,
    compare: CompareMode = "previous",
    compare_start: date | None = None,
    compare_end: date | None = None,
) -> tuple[Period, Period | None]:
    """The period (default: the last 30 days up to ``today``) and the comparison period
    (explicit dates, else the previous period of the same length, the same dates a year
    before, or none)."""
    end = end or today
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    period = Period(start, end)
    if (compare_start is None) != (compare_end is None):
        raise InvalidPeriod("Give both ends of the comparison period, or neither.")
    if compare_start is not None and compare_end is not None:
        return period, Period(compare_start, compare_end)
    if compare == "none":
        return period, None
    return period, period.year_before() if compare == "year" else period.previous()


@dataclass(frozen=True, slots=True)
class Dashboard:
    currency: str
    point_cost: Decimal
    comparison: report.Comparison
    months: list[report.MonthRow]
    cohorts: list[tuple[date, int, list[CohortCell]]]
    expiring: list[report.Expiring]
    tiers: list[TierShare]


def load(
    session: Session,
    programme: Programme,
    period: Period,
    compare: Period | None,
    *,
    now: datetime,
    point_cost: Decimal,
    language: str,
) -> Dashboard:
    """Every figure of the dashboard page (a dozen indexed reads of the roll-ups)."""
    currency = programme.currency
    return Dashboard(
        currency=currency,
        point_cost=point_cost,
        comparison=report.comparison(
            session, period, compare, cost_per_point=point_cost, currency=currency
        ),
        months=report.months(session, period),
        cohorts=report.cohorts(session, period),
        expiring=report.expiring(session, now=now, cost_per_point=point_cost, currency=currency),
        tiers=report.tier_mix(session, programme, language=language),
    )


def kpis_dict(k: Kpis) -> dict[str, Any]:
    """KPIs as JSON values (money as decimal strings)."""
    return {
        f.name: str(v) if isinstance(v := getattr(k, f.name), Decimal) else v for f in fields(k)
    }


def period_dict(p: Period | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"from": p.start.isoformat(), "to": p.end.isoformat(), "days": p.days}


Table = tuple[list[str], list[list[Any]]]

TABLES = ("kpis", "months", "cohorts", "expiring", "tiers")


def tables(d: Dashboard) -> dict[str, Table]:
    """Every table of the dashboard, as headers and rows (CSV export, CLI)."""
    c = d.comparison
    before = kpis_dict(c.compare_kpis) if c.compare_kpis is not None else {}
    now = kpis_dict(c.kpis)
    kpi_rows = [[name, now[name], before.get(name), c.deltas.get(name)] for name in now]
    month_rows = [
        [
            m.month.isoformat()[:7],
            m.active_members,
            m.new_members,
            m.orders,
            str(money(m.revenue_minor, exponent(d.currency))),
            m.points_issued,
            m.points_redeemed,
            m.points_expired,
            m.points_outstanding,
            str(
                money(
                    Decimal(m.points_outstanding) * d.point_cost * 10 ** exponent(d.currency),
                    exponent(d.currency),
                )
            ),
        ]
        for m in d.months
    ]
    cohort_rows = [
        [cohort.isoformat()[:7], size, cell.offset, cell.active, cell.rate]
        for cohort, size, cells in d.cohorts
        for cell in cells
    ]
    return {
        "kpis": (["kpi", "value", "comparison", "change"], kpi_rows),
        "months": (
            [
                "month",
                "active_members",
                "new_members",
                "orders",
                "revenue",
                "points_issued",
                "points_redeemed",
                "points_expired",
                "points_outstanding",
                "liability",
            ],
            month_rows,
        ),
        "cohorts": (["cohort", "members", "month_offset", "active", "retention"], cohort_rows),
        "expiring": (
            ["month", "points", "value"],
            [[e.month.isoformat()[:7], e.points, str(e.value)] for e in d.expiring],
        ),
        "tiers": (
            ["tier", "name", "members", "percent"],
            [[t.tier_id, t.name, t.members, t.percent] for t in d.tiers],
        ),
    }
