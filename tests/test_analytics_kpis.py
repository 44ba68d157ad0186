"""Programme KPIs: each formula on hand-built figures (pure), then the same KPIs end to end on a
hand-built history (API events, a redemption, a refund, an expiry; roll-ups kept by the real
worker), read over ``GET /v1/analytics/kpis``, ``/v1/analytics/tables/…`` and ``lealta report``.
Every expected value is worked out by hand in the comments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lealta.analytics import kpis, rollups
from lealta.analytics.dashboard import resolve
from lealta.analytics.kpis import Period, PeriodFigures
from lealta.cli import app as cli_app
from lealta.config import Settings, get_settings
from lealta.coupons import service as coupons
from lealta.jobs import service as jobs_service
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import CouponUse
from lealta.programme import service as programmes
from lealta.programme.schema import CouponSpec, Programme
from tests.factories import order_paid, order_refunded

# --- pure ------------------------------------------------------------------------------------

FIGURES = PeriodFigures(
    days=30,
    members=600,
    non_member_customers=400,
    active_members=450,
    repeat_members=300,
    previous_active_members=400,
    retained_members=340,
    orders=900,
    revenue_minor=4_600_000,
    refunded_minor=100_000,
    points_issued=45_000,
    points_redeemed=18_000,
    points_expired=1_000,
    points_issued_to_date=200_000,
    points_expired_to_date=30_000,
    points_outstanding=120_000,
    buyers_to_date=500,
    revenue_to_date_minor=125_000_000,
)


def test_each_kpi_on_hand_built_figures() -> None:
    baseline = _replace(FIGURES, days=15, revenue_minor=1_600_000, refunded_minor=100_000)
    k = kpis.compute(FIGURES, cost_per_point=Decimal("0.05"), exponent=2, baseline=baseline)
    assert k.participation_rate == 0.6  # 600 / (600 + 400): seed 000's 60 %
    assert k.active_rate == 0.75  # 450 / 600
    assert k.retention_rate == 0.85  # 340 / 400
    assert k.churn_rate == 0.15  # 1 - 0.85
    assert k.net_revenue == Decimal("45000.00")  # (4,600,000 - 100,000) cents
    assert k.purchase_frequency == 2.0  # 900 orders / 450 buyers
    assert k.purchase_frequency_annual == round(2 * 365 / 30, 4)  # 24.3333 a year
    assert k.repeat_purchase_rate == 0.6667  # 300 / 450
    assert k.average_order_value == Decimal("50.00")  # 45,000 / 900
    assert k.historic_clv == Decimal("2500.00")  # 1,250,000 € / 500 buyers: seed's 2.500 €
    assert k.redemption_rate == 0.4  # 18,000 / 45,000
    assert k.breakage_rate == 0.15  # 30,000 / 200,000
    assert k.points_liability == Decimal("6000.00")  # 120,000 x 0.05
    assert k.programme_cost == Decimal("900.00")  # 18,000 redeemed x 0.05
    # Baseline: 15,000 € net over 15 days = 1,000 €/day; x 30 days = 30,000 €.
    assert k.incremental_revenue == Decimal("15000.00")  # 45,000 - 30,000
    assert k.roi == round((15000 - 900) / 900, 4)  # 15.6667


def test_coupon_discounts_add_to_the_cost_and_plan_fees_to_the_return() -> None:
    figures = _replace(FIGURES, coupon_discount_minor=60_000, plan_revenue_minor=150_000)
    baseline = _replace(FIGURES, days=15, revenue_minor=1_600_000, refunded_minor=100_000)
    k = kpis.compute(figures, cost_per_point=Decimal("0.05"), exponent=2, baseline=baseline)
    assert k.programme_cost == Decimal("1500.00")  # 900 € of points + 600 € of coupons
    assert k.plan_revenue == Decimal("1500.00")
    assert k.net_revenue == Decimal("45000.00")  # plan fees are not order revenue
    # (15,000 incremental + 1,500 plan fees - 1,500 cost) / 1,500
    assert k.roi == 10.0


def _replace(f: PeriodFigures, **changes: Any) -> PeriodFigures:
    return PeriodFigures(**{**{n: getattr(f, n) for n in f.__dataclass_fields__}, **changes})


def test_zero_denominators_give_none_not_zero() -> None:
    empty = PeriodFigures(**dict.fromkeys(FIGURES.__dataclass_fields__, 0))
    k = kpis.compute(empty, cost_per_point=Decimal("0.01"), exponent=2)
    for name in (
        "participation_rate",
        "retention_rate",
        "churn_rate",
        "purchase_frequency",
        "repeat_purchase_rate",
        "average_order_value",
        "historic_clv",
        "redemption_rate",
        "breakage_rate",
        "incremental_revenue",
        "roi",
    ):
        assert getattr(k, name) is None, name
    assert k.points_liability == Decimal("0.00")


def test_deltas_are_relative_changes() -> None:
    now = kpis.compute(FIGURES, cost_per_point=Decimal("0.05"), exponent=2)
    before = kpis.compute(
        _replace(FIGURES, active_members=400, orders=1000),
        cost_per_point=Decimal("0.05"),
        exponent=2,
    )
    d = kpis.delta(now, before)
    assert d["active_members"] == 0.125  # 450 vs 400
    assert d["orders"] == -0.1  # 900 vs 1000
    assert d["members"] == 0.0


def test_periods_and_their_comparisons() -> None:
    march = Period(date(2026, 3, 1), date(2026, 3, 31))
    assert march.days == 31
    assert march.previous() == Period(date(2026, 1, 29), date(2026, 2, 28))
    leap = Period(date(2024, 2, 29), date(2024, 2, 29))
    assert leap.year_before() == Period(date(2023, 2, 28), date(2023, 2, 28))
    period, other = resolve(date(2026, 3, 31), None, None)
    assert period == Period(date(2026, 3, 2), date(2026, 3, 31))  # the last 30 days
    assert other == period.previous()
    with pytest.raises(kpis.InvalidPeriod):
        Period(date(2026, 3, 2), date(2026, 3, 1))
    with pytest.raises(kpis.InvalidPeriod):
        resolve(date(2026, 3, 31), None, None, "previous", date(2026, 1, 1), None)


def test_cohort_table() -> None:
    feb, mar = date(2026, 2, 1), date(2026, 3, 1)
    rows = kpis.cohort_table({feb: 4}, {(feb, feb): 4, (feb, mar): 1})
    (cohort, size, cells) = rows[0]
    assert (cohort, size) == (feb, 4)
    assert [(c.offset, c.active, c.rate) for c in cells] == [(0, 4, 1.0), (1, 1, 0.25)]


# --- end to end ------------------------------------------------------------------------------

PLAIN = Programme.model_validate(
    {
        "name": "Plain",
        "currency": "EUR",
        "expiry": {"months": 1},
        "rewards": [
            {
                "id": "ship",
                "type": "free_shipping",
                "name": {"es": "Envío", "en": "Shipping"},
                "cost": 100,
            }
        ],
    }
)


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 12, 0, tzinfo=UTC)


@pytest.fixture
def history(db: Database, client: TestClient, clock: FixedClock, database_url: str) -> TestClient:
    """ana: A1 100 € (10 Feb), redeems 100 pts (5 Mar), A2 50 € (12 Mar), A3 30 € (20 Mar)
    refunded 10 € (22 Mar); bea: B1 200 € (15 Feb), its 200 pts expire (15 Mar); dan enrols
    (3 Mar) and buys nothing; caro: C1 80 € (25 Mar). 1 point per euro, expiry 1 month."""
    with db.unit_of_work() as session:
        programmes.apply(session, PLAIN, actor="test", now=at(1, 1))

    def post(payload: dict[str, Any]) -> None:
        clock.set(datetime.fromisoformat(payload["occurred_at"]))
        r = client.post("/v1/events", json=payload)
        assert r.status_code == 201, r.text

    post(order_paid("e1", "ana", "A1", "100.00", at(2, 10)))
    post(order_paid("e2", "bea", "B1", "200.00", at(2, 15)))
    clock.set(at(3, 3))
    assert client.post("/v1/members", json={"external_id": "dan"}).status_code == 201
    clock.set(at(3, 5))
    r = client.post(
        "/v1/members/ana/redemptions", json={"reward_id": "ship"}, headers={"Idempotency-Key": "r1"}
    )
    assert r.status_code == 201, r.text
    post(order_paid("e3", "ana", "A2", "50.00", at(3, 12)))
    clock.set(at(3, 16))
    jobs_service.run_due(db, now=clock.now())  # bea's 200 points expire (due 15 Mar)
    post(order_paid("e4", "ana", "A3", "30.00", at(3, 20)))
    post(order_refunded("e5", "ana", "A3", at(3, 22), "10.00"))
    post(order_paid("e6", "caro", "C1", "80.00", at(3, 25)))
    clock.set(at(4, 1))
    settings = Settings(
        database_url=database_url, env="test", log_level="WARNING", worker_poll_seconds=0.01
    )
    Worker(db, clock=clock, settings=settings, name="kpi-test", schedule=False).run(until_idle=True)
    with db.unit_of_work() as session:  # what the five-minute schedule does: dan had no event
        assert rollups.sync_unseen(session, now=clock.now()) == 1
    return client


MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def test_kpis_over_the_api_on_a_hand_built_history(history: TestClient) -> None:
    r = history.get("/v1/analytics/kpis", params=MARCH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"] == {"from": "2026-03-01", "to": "2026-03-31", "days": 31}
    assert body["compare_period"] == {"from": "2026-01-29", "to": "2026-02-28", "days": 31}
    k = body["kpis"]
    assert k["members"] == 4  # ana, bea (Feb), dan, caro (Mar)
    assert k["participation_rate"] == 1.0  # every known customer is a member
    assert k["active_members"] == 2  # ana and caro bought in March
    assert k["active_rate"] == 0.5  # 2 / 4
    assert k["retention_rate"] == 0.5  # ana and bea bought in Feb; ana again in Mar
    assert k["churn_rate"] == 0.5
    assert k["orders"] == 3  # A2, A3, C1
    assert k["net_revenue"] == "150.00"  # 50 + 30 + 80 - 10
    assert k["purchase_frequency"] == 1.5  # 3 orders / 2 buyers
    assert k["repeat_purchase_rate"] == 0.5  # ana of {ana, caro}
    assert k["average_order_value"] == "50.00"  # 150 / 3
    assert k["historic_clv"] == "150.00"  # (100 + 200 + 50 + 30 - 10 + 80) / 3 buyers
    assert k["points_issued"] == 150  # 50 + 30 + 80 earned, 10 reversed
    assert k["points_redeemed"] == 100
    assert k["points_expired"] == 200
    assert k["redemption_rate"] == 0.6667  # 100 / 150
    assert k["breakage_rate"] == 0.4444  # 200 expired / 450 issued to date
    assert k["points_outstanding"] == 150  # ana 50 + 20, caro 80
    assert k["points_liability"] == "1.50"  # 150 x 0.01 €
    assert k["programme_cost"] == "1.00"  # 100 redeemed x 0.01 €
    assert k["incremental_revenue"] == "-150.00"  # 150 - 300 (Feb net, same length)
    assert k["roi"] == -151.0  # (-150 - 1) / 1
    before = body["compare_kpis"]
    assert (before["orders"], before["net_revenue"], before["members"]) == (2, "300.00", 2)
    assert body["changes"]["orders"] == 0.5  # 3 vs 2


def test_tables_over_the_api(history: TestClient) -> None:
    months = history.get("/v1/analytics/tables/months", params=MARCH).json()
    assert months["rows"] == [["2026-03", 2, 2, 3, "160.00", 150, 100, 200, 150, "1.50"]]
    cohorts = history.get(
        "/v1/analytics/tables/cohorts", params={"from": "2026-02-01", "to": "2026-03-31"}
    ).json()
    # Feb cohort: ana and bea bought in Feb, ana in Mar; Mar cohort: dan, caro; caro bought.
    assert cohorts["rows"] == [
        ["2026-02", 2, 0, 2, 1.0],
        ["2026-02", 2, 1, 1, 0.5],
        ["2026-03", 2, 0, 1, 0.5],
    ]
    missing = history.get("/v1/analytics/tables/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_table"
    bad = history.get("/v1/analytics/kpis", params={"from": "2026-03-31", "to": "2026-03-01"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_period"
    assert history.get("/v1/analytics/kpis", params={"from": "March"}).status_code == 422


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_report_cli_json_table_and_rebuild(history: TestClient, cli: CliRunner) -> None:
    result = cli.invoke(
        cli_app, ["report", "kpis", "--from", "2026-03-01", "--to", "2026-03-31", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kpis"]["net_revenue"] == "150.00"
    api = history.get("/v1/analytics/kpis", params=MARCH).json()
    rebuilt = cli.invoke(cli_app, ["report", "rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "4 members" in rebuilt.stdout
    assert history.get("/v1/analytics/kpis", params=MARCH).json() == api
    table = cli.invoke(
        cli_app,
        ["report", "table", "months", "--from", "2026-03-01", "--to", "2026-03-31", "--csv"],
    )
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[1] == "2026-03,2,2,3,160.00,150,100,200,150,1.50"
    rich = cli.invoke(cli_app, ["report", "kpis", "--from", "2026-03-01", "--to", "2026-03-31"])
    assert rich.exit_code == 0 and "redemption_rate" in rich.stdout
    wrong = cli.invoke(cli_app, ["report", "kpis", "--from", "2026-03-31", "--to", "2026-03-01"])
    assert wrong.exit_code == 2
    assert "invalid_period" in wrong.output


def test_coupon_discounts_count_free_coupons_only_and_not_rolled_back_uses(db: Database) -> None:
    t = datetime(2026, 3, 10, tzinfo=UTC)
    spec = CouponSpec(percent_off=Decimal(20))
    with db.unit_of_work() as session:
        uses = []
        for source, discount, rolled_back in (
            ("threshold", 1_000, False),  # a free coupon: counts
            ("workflow", 500, False),  # counts
            ("redemption", 4_000, False),  # paid with points: already in the points cost
            ("admin", 700, True),  # rolled back: no discount was given
        ):
            coupon = coupons.issue(
                session, spec, reward_id="r", member_id=None, source=source, currency="EUR",
                valid_from=t, now=t,
            )  # fmt: skip
            uses.append(
                CouponUse(
                    coupon_id=coupon.id, order_ref=f"o-{source}", discount_minor=discount,
                    used_at=t, rolled_back_at=t if rolled_back else None,
                )
            )  # fmt: skip
        session.add_all(uses)
    with db.unit_of_work(write=False) as session:
        march = {"start": datetime(2026, 3, 1, tzinfo=UTC), "end": datetime(2026, 4, 1, tzinfo=UTC)}
        assert coupons.discounts_minor(session, **march, exclude_source="redemption") == 1_500
        assert coupons.discounts_minor(session, **march) == 5_500
        april = {"start": datetime(2026, 4, 1, tzinfo=UTC), "end": datetime(2026, 5, 1, tzinfo=UTC)}
        assert coupons.discounts_minor(session, **april) == 0
