"""The programme dashboard page (``/admin/dashboard``) and the CSV export of its tables.

The page renders :func:`lealta.analytics.dashboard.load` (the roll-ups) with server-side SVG
charts; the period picker is a plain GET form, so every view has a URL to share.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lealta.analytics import dashboard
from lealta.analytics.kpis import InvalidPeriod, Period, money
from lealta.kit.db import Database
from lealta.kit.errors import NotFound
from lealta.kit.http import ClockDep, DbDep
from lealta.kit.money import exponent
from lealta.programme import service as programmes
from lealta.staff.service import require
from lealta.web import i18n
from lealta.web.admin import dashboard_charts as charts
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import show

router = APIRouter(include_in_schema=False)

COMPARE_MODES = ("previous", "year", "none")


class UnknownTable(NotFound):
    code = "unknown_table"


def _date(raw: str | None, field: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw.strip()[:10])
    except ValueError:
        raise InvalidPeriod("Dates are written YYYY-MM-DD.", details={"field": field}) from None


def _periods(request: Request, today: date) -> tuple[Period, Period | None]:
    q = request.query_params
    compare = q.get("compare") or "previous"
    if compare not in COMPARE_MODES:
        raise InvalidPeriod("Compare with the previous period, a year before, or nothing.")
    return dashboard.resolve(
        today,
        _date(q.get("from"), "from"),
        _date(q.get("to"), "to"),
        compare,  # type: ignore[arg-type]
    )


def _load(
    db: Database, request: Request, now: Any, language: str, periods: Any
) -> dashboard.Dashboard:
    period, other = periods
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        return dashboard.load(
            session,
            programme,
            period,
            other,
            now=now,
            point_cost=request.app.state.settings.point_cost,
            language=language,
        )


def _chart_data(d: dashboard.Dashboard) -> dict[str, Any]:
    labels = [m.month.strftime("%m/%y") for m in d.months]
    active, active_axis = charts.bars(labels, [m.active_members for m in d.months])
    flows, flows_axis = charts.bars(
        labels, [m.points_issued for m in d.months], [m.points_redeemed for m in d.months]
    )
    liability = [float(max(m.points_outstanding, 0) * d.point_cost) for m in d.months]
    points, dots, liability_axis = charts.line(labels, liability)
    return {
        "active": active,
        "active_axis": active_axis,
        "flows": flows,
        "flows_axis": flows_axis,
        "liability_points": points,
        "liability_dots": dots,
        "liability_axis": liability_axis,
        "label_step": 1 if len(labels) <= 7 else 2 if len(labels) <= 14 else 3,
        "W": charts.WIDTH,
        "H": charts.HEIGHT,
        "pad_left": charts.PAD_LEFT,
        "major": lambda minor: money(minor, exponent(d.currency)),
        "heat": charts.heat,
        "ink": charts.ink,
    }


@router.get("/admin/dashboard")
def dashboard_page(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    require(staff, "view")
    language = i18n.negotiate(request)
    now = clock.now()
    error: str | None = None
    status = 200
    try:
        periods = _periods(request, now.date())
    except InvalidPeriod as exc:
        _ = i18n.gettext_for(language)
        error, status = _(exc.message), 422
        periods = dashboard.resolve(now.date(), None, None)
    d = _load(db, request, now, language, periods)
    q = request.query_params
    form = {
        "from": q.get("from", "")[:10] if error else d.comparison.period.start.isoformat(),
        "to": q.get("to", "")[:10] if error else d.comparison.period.end.isoformat(),
        "compare": q.get("compare") if q.get("compare") in COMPARE_MODES else "previous",
    }
    query = "" if error else str(request.url.query)
    return show(
        request,
        staff,
        "admin/dashboard.html",
        {
            "d": d,
            "c": d.comparison,
            "form": form,
            "error": error,
            "query": query,
            "tables": dashboard.TABLES,
            **_chart_data(d),
        },
        status_code=status,
    )


@router.get("/admin/dashboard/{name}.csv")
def dashboard_csv(
    name: str, request: Request, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    require(staff, "view")
    if name not in dashboard.TABLES:
        raise UnknownTable("No such table on the dashboard.")
    now = clock.now()
    d = _load(db, request, now, i18n.negotiate(request), _periods(request, now.date()))
    columns, rows = dashboard.tables(d)[name]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(rows)
    period = d.comparison.period
    filename = f"lealta-{name}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
