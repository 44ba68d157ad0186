"""The console's programme dashboard: live numbers of the hand-built history, SVG charts,
Spanish and English without leaks, a bad period answered with the form (422, never JSON), and
CSV export of every table."""

from __future__ import annotations

import csv
import io
import re

import pytest
from fastapi.testclient import TestClient

from lealta.analytics import dashboard
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from tests.factories import PASSWORD, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks
from tests.test_analytics_kpis import at, history

__all__ = ["history"]

MARCH = "from=2026-03-01&to=2026-03-31"


@pytest.fixture
def console(history: TestClient, db: Database, clock: FixedClock) -> TestClient:
    with db.unit_of_work() as session:
        create_staff(session, ["read_only"], now=at(1, 1))
    history.headers.pop("Authorization", None)
    page = history.get("/admin/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    signed = history.post(
        "/admin/login",
        data={"email": "read_only@example.com", "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    return history


def _kpi(page: str, name: str) -> str:
    found = re.search(rf'data-kpi="{name}">([^<]*)<', page)
    assert found, name
    return found.group(1).strip()


@pytest.mark.parametrize("lang", ["es", "en"])
def test_the_dashboard_shows_the_periods_kpis_and_charts(console: TestClient, lang: str) -> None:
    r = console.get(f"/admin/dashboard?{MARCH}&lang={lang}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    leaks = english_leaks(page) if lang == "es" else spanish_leaks(page)
    assert leaks == [], leaks
    assert _kpi(page, "active") == "2"
    assert _kpi(page, "participation") == "100 %"
    assert _kpi(page, "retention") == "50 %"
    assert _kpi(page, "repeat") == "50 %"
    assert _kpi(page, "redemption") == ("66,7 %" if lang == "es" else "66.7 %")
    assert "150,00" in _kpi(page, "clv") if lang == "es" else "150.00" in _kpi(page, "clv")
    assert "1,50" in _kpi(page, "liability") if lang == "es" else "1.50" in _kpi(page, "liability")
    # Four SVG charts, a cohort heat map, a CSV link for every table.
    assert page.count("<svg") >= 3
    assert page.count("<polyline") == 1
    assert 'class="heatmap"' in page
    for name in dashboard.TABLES:
        assert f"/admin/dashboard/{name}.csv?" in page
    assert 'data-delta="orders"' not in page  # orders have no card; deltas sit on cards
    assert 'data-delta="active_members"' in page


def test_a_bad_period_answers_with_the_form_and_a_message(console: TestClient) -> None:
    r = console.get("/admin/dashboard?from=2026-03-31&to=2026-03-01&lang=es")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="period-error"' in r.text
    assert "El periodo termina antes de empezar." in r.text
    assert english_leaks(r.text) == []
    assert 'value="2026-03-31"' in r.text  # what was typed stays in the form
    garbled = console.get("/admin/dashboard?from=yesterday&lang=en")
    assert garbled.status_code == 422
    assert "Dates are written YYYY-MM-DD." in garbled.text
    odd = console.get("/admin/dashboard?compare=never&lang=en")
    assert odd.status_code == 422
    assert "Compare with the previous period, a year before, or nothing." in odd.text
    csv_bad = console.get("/admin/dashboard/months.csv?from=2026-03-31&to=2026-03-01")
    assert csv_bad.status_code == 422
    assert csv_bad.headers["content-type"].startswith("text/html")
    missing = console.get("/admin/dashboard/secrets.csv")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")


def test_every_table_downloads_as_csv(console: TestClient) -> None:
    for name in dashboard.TABLES:
        r = console.get(f"/admin/dashboard/{name}.csv?{MARCH}")
        assert r.status_code == 200, (name, r.text)
        assert r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(r.text)))
        assert rows[0], name
    months = list(csv.reader(io.StringIO(console.get(f"/admin/dashboard/months.csv?{MARCH}").text)))
    assert months[1] == ["2026-03", "2", "2", "3", "160.00", "150", "100", "200", "150", "1.50"]


def test_the_dashboard_needs_a_signed_in_user(history: TestClient) -> None:
    history.headers.pop("Authorization", None)
    r = history.get("/admin/dashboard", follow_redirects=False)
    assert r.status_code in (302, 303)
    assert r.headers["location"].startswith("/admin/login")


def test_chart_geometry() -> None:
    from lealta.web.admin import dashboard_charts as charts

    assert charts.nice_max(0) == (1, 4)
    assert charts.nice_max(7) == (10, 4)  # 0, 2.5, 5, 7.5, 10
    assert charts.nice_max(180) == (200, 4)
    assert charts.nice_max(2100) == (2500, 5)
    assert charts.nice_max(5000) == (5000, 5)
    bars, axis = charts.bars(["a", "b"], [50, 100], [25, 0])
    assert axis.maximum == 100
    plot = charts.HEIGHT - charts.PAD_BOTTOM - charts.PAD_TOP
    tallest = max(bars, key=lambda b: b.height)
    assert (tallest.label, tallest.series, tallest.height) == ("b", 0, plot)
    assert [b.height for b in bars if b.label == "a"] == [plot / 2, plot / 4]
    assert all(b.x + b.width <= charts.WIDTH for b in bars)
    points, dots, _ = charts.line(["x", "y"], [0, 10])
    assert dots[0].y == charts.HEIGHT - charts.PAD_BOTTOM and dots[1].y == charts.PAD_TOP
    assert points.count(",") == 2
    assert charts.heat(None) == "#f3f4f6"
    assert charts.heat(1.0) == "#0b5d51" and charts.ink(1.0) == "#ffffff"
