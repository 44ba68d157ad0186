"""Programme KPIs over the API: ``GET /v1/analytics/kpis`` and the dashboard's tables."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lealta.analytics import dashboard, report
from lealta.analytics.kpis import Period
from lealta.apikeys.deps import Reader
from lealta.config import Settings
from lealta.kit.db import Database
from lealta.kit.errors import NotFound
from lealta.kit.http import ERROR_RESPONSES, ClockDep, DbDep, SettingsDep
from lealta.programme import service as programmes

router = APIRouter(tags=["analytics"], responses=ERROR_RESPONSES)

Money = str | None
Rate = float | None


class KpisOut(BaseModel):
    """One period's KPIs; rates are fractions (0.25 = 25 %), money decimal strings in the
    programme currency; null when a denominator is zero."""

    members: int
    active_members: int
    participation_rate: Rate
    active_rate: Rate
    retention_rate: Rate
    churn_rate: Rate
    orders: int
    net_revenue: str
    purchase_frequency: Rate
    purchase_frequency_annual: Rate
    repeat_purchase_rate: Rate
    average_order_value: Money
    historic_clv: Money
    points_issued: int
    points_redeemed: int
    points_expired: int
    redemption_rate: Rate
    breakage_rate: Rate
    points_outstanding: int
    points_liability: str
    programme_cost: str
    incremental_revenue: Money
    roi: Rate
    plan_revenue: str
    non_member_retention_rate: Rate
    non_member_historic_clv: Money


class PeriodOut(BaseModel):
    from_: date = Field(alias="from")
    to: date
    days: int


class KpiReportOut(BaseModel):
    currency: str
    point_cost: str
    period: PeriodOut
    kpis: KpisOut
    compare_period: PeriodOut | None
    compare_kpis: KpisOut | None
    changes: dict[str, float | None] = Field(
        description="Relative change of each KPI against the comparison period (0.1 = +10 %)."
    )


class TableOut(BaseModel):
    name: str
    columns: list[str]
    rows: list[list[Any]]


From = Annotated[date | None, Query(alias="from", description="First day (UTC), included.")]
To = Annotated[date | None, Query(alias="to", description="Last day (UTC), included.")]
Compare = Annotated[
    Literal["previous", "year", "none"],
    Query(description="Comparison: the previous period of equal length, a year before, none."),
]
CompareFrom = Annotated[date | None, Query(alias="compare_from")]
CompareTo = Annotated[date | None, Query(alias="compare_to")]


class UnknownTable(NotFound):
    code = "unknown_table"


def _periods(
    clock: Any,
    start: date | None,
    end: date | None,
    compare: dashboard.CompareMode,
    compare_start: date | None,
    compare_end: date | None,
) -> tuple[datetime, Period, Period | None]:
    now: datetime = clock.now()
    period, other = dashboard.resolve(now.date(), start, end, compare, compare_start, compare_end)
    return now, period, other


def _load(
    database: Database, settings: Settings, now: datetime, period: Period, other: Period | None
) -> dashboard.Dashboard:
    with database.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        return dashboard.load(
            session,
            programme,
            period,
            other,
            now=now,
            point_cost=settings.point_cost,
            language="en",
        )


def _kpis(
    database: Database, settings: Settings, now: datetime, period: Period, other: Period | None
) -> KpiReportOut:
    with database.unit_of_work(write=False) as session:
        currency = programmes.current(session, now=now).currency
        c = report.comparison(
            session, period, other, cost_per_point=settings.point_cost, currency=currency
        )
    return report_out(currency, settings.point_cost, c)


def report_out(currency: str, point_cost: Decimal, c: report.Comparison) -> KpiReportOut:
    return KpiReportOut.model_validate(
        {
            "currency": currency,
            "point_cost": str(point_cost),
            "period": dashboard.period_dict(c.period),
            "kpis": dashboard.kpis_dict(c.kpis),
            "compare_period": dashboard.period_dict(c.compare_period),
            "compare_kpis": (
                dashboard.kpis_dict(c.compare_kpis) if c.compare_kpis is not None else None
            ),
            "changes": c.deltas,
        }
    )


@router.get("/v1/analytics/kpis", response_model=KpiReportOut, summary="Programme KPIs")
async def get_kpis(
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    compare: Compare = "previous",
    compare_start: CompareFrom = None,
    compare_end: CompareTo = None,
) -> KpiReportOut:
    """Participation, activity, retention and churn, frequency, repeat rate, AOV, historic
    CLV, redemption and breakage, points liability, programme cost and ROI for a period
    (default: the last 30 days) against a comparison period. Read from the roll-up tables;
    definitions in the README ("Programme dashboard")."""
    now, period, other = _periods(clock, start, end, compare, compare_start, compare_end)
    return await run_in_threadpool(_kpis, db, settings, now, period, other)


@router.get(
    "/v1/analytics/tables/{name}",
    response_model=TableOut,
    summary="A table of the programme dashboard",
)
async def get_table(
    name: str,
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    compare: Compare = "previous",
    compare_start: CompareFrom = None,
    compare_end: CompareTo = None,
) -> TableOut:
    """One of ``kpis``, ``months`` (active and new members, orders, revenue, points issued,
    redeemed, expired and outstanding, liability per month), ``cohorts`` (retention by
    enrolment month), ``expiring`` (points expiring per month ahead) and ``tiers``."""
    if name not in dashboard.TABLES:
        raise UnknownTable(f"No table {name[:40]!r}; choose one of {', '.join(dashboard.TABLES)}.")
    now, period, other = _periods(clock, start, end, compare, compare_start, compare_end)
    d = await run_in_threadpool(_load, db, settings, now, period, other)
    columns, rows = dashboard.tables(d)[name]
    return TableOut(name=name, columns=columns, rows=rows)
