"""Predicted CLV over the API, from an order history sent as events (SQLite and PostgreSQL).

The expected numbers are computed here from the same history, independently of the SQL:
the per-member summary by hand in Python, then the pure model (``lealta.analytics.clv``).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from babel.numbers import format_currency
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.analytics import clv, clv_data, clv_store
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Member
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff, order_paid, order_refunded


@pytest.fixture(autouse=True)
def _fresh_model() -> Iterator[None]:
    clv_store.clear_cache()
    yield
    clv_store.clear_cache()


def _at(days_ago: int, hour: int = 12) -> datetime:
    return (T0 - timedelta(days=days_ago)).replace(hour=hour)


def _send(client: TestClient, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 1000):
        r = client.post("/v1/events/batch", json={"events": events[start : start + 1000]})
        assert r.status_code == 200, r.text
        bad = [x for x in r.json()["results"] if x["status"] == "rejected"]
        assert not bad, bad


def _history(customers: int, seed: int = 7) -> list[tuple[str, str, int, Decimal]]:
    """(customer, order id, days ago, total): a few buyers who come back, many who don't."""
    rng = random.Random(seed)
    orders = []
    for c in range(customers):
        customer = f"cust-{c:03d}"
        day = rng.randint(20, 400)
        rate = rng.choice([0.0, 0.0, 0.01, 0.03, 0.08])  # purchases per day while active
        life = rng.randint(10, 400)
        n = 0
        while day >= 0:
            n += 1
            total = Decimal(rng.randint(800, 12_000)) / 100
            orders.append((customer, f"O-{c}-{n}", day, total))
            if rate == 0:
                break
            gap = max(1, int(rng.expovariate(rate)))
            life -= gap
            day -= gap
            if life < 0:
                break
    return orders


HAND = [  # one member whose summary is worked out by hand in the test below
    ("hand-1", "H-1", 70, Decimal("50.00")),
    ("hand-1", "H-2", 35, Decimal("30.00")),
    ("hand-1", "H-3", 35, Decimal("10.00")),  # same day as H-2: one transaction of 40.00
    ("hand-1", "H-4", 14, Decimal("60.00")),  # 20.00 refunded below: 40.00 net
    ("hand-1", "H-5", 7, Decimal("25.00")),  # refunded in full: not a purchase
]
REFUNDS = [("H-4", "hand-1", Decimal("20.00")), ("H-5", "hand-1", None)]


def _load(client: TestClient, orders: list[tuple[str, str, int, Decimal]]) -> None:
    events = [
        order_paid(f"e-{oid}", customer, oid, str(total), _at(days, 8 + i % 3))
        for i, (customer, oid, days, total) in enumerate(orders)
    ]
    by_order = {oid: days for _, oid, days, _ in orders}
    events += [
        order_refunded(
            f"r-{oid}", customer, oid, _at(by_order[oid], 20), str(amount) if amount else None
        )
        for oid, customer, amount in REFUNDS
        if oid in by_order
    ]
    _send(client, events)


def _expected_summaries(
    orders: list[tuple[str, str, int, Decimal]],
) -> dict[str, tuple[float, float, float, float]]:
    refunded = {oid: amount for oid, _, amount in REFUNDS}
    daily: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for customer, oid, days, total in orders:
        net = total - (refunded[oid] or total) if oid in refunded else total
        if net > 0:
            daily[customer][days] += net
    out = {}
    for customer, days in daily.items():
        first, last = max(days), min(days)
        x = len(days) - 1
        repeat = sum((v for d, v in days.items() if d != first), Decimal(0))
        m = float(repeat) / x if x else 0.0
        out[customer] = (float(x), (first - last) / 7, first / 7, m)
    return out


def _fit(db: Database, clock: FixedClock) -> Any:
    """What the nightly ``analytics.fit_clv`` job does."""
    return clv_store.run_fit(db, now=clock.now(), actor="test")


@pytest.fixture
def history(
    client: TestClient, db: Database, clock: FixedClock
) -> dict[str, tuple[float, float, float, float]]:
    orders = _history(120) + HAND
    _load(client, orders)
    assert _fit(db, clock).status == "ok"
    return _expected_summaries(orders)


def _served_model(body: dict[str, Any]) -> tuple[clv.BgNbdParams, clv.GammaGammaParams]:
    m = body["model"]
    return clv.BgNbdParams(**m["bg_nbd"]), clv.GammaGammaParams(**m["gamma_gamma"])


def _expected_model(
    summaries: dict[str, tuple[float, float, float, float]],
) -> tuple[clv.BgNbdParams, clv.GammaGammaParams]:
    """An independent fit on the hand-made summaries. This history sits near the models'
    homogeneous limits (a ridge in the likelihood), where the optimiser's stopping point
    moves with the last bits of the inputs: predictions agree to ~0.1 %, parameters less."""
    x, t_x, T, m = (np.array([s[i] for s in summaries.values()]) for i in range(4))
    return clv.fit_bgnbd(x, t_x, T).params, clv.fit_gamma_gamma(x, m).params


def test_summary_statement_matches_the_history_by_hand(
    history: dict[str, tuple[float, float, float, float]], db: Database, clock: FixedClock
) -> None:
    with db.unit_of_work(write=False) as session:
        parts = list(clv_data.stream_summaries(session, currency="EUR", now=clock.now(), chunk=7))
        names = {i: e for i, e in session.execute(select(Member.id, Member.external_id))}
    assert len(parts) > 10  # streamed in chunks
    got = {}
    for p in parts:
        for i in range(len(p)):
            got[names[int(p.member_id[i])]] = (
                p.frequency[i],
                p.recency[i],
                p.age[i],
                p.monetary[i],
            )
    assert got.keys() == history.keys()
    for customer, expected in history.items():
        assert got[customer] == pytest.approx(expected), customer


def test_member_clv_answers_from_the_fitted_model(
    client: TestClient, history: dict[str, tuple[float, float, float, float]]
) -> None:
    r = client.get("/v1/members/hand-1/clv")
    assert r.status_code == 200, r.text
    body = r.json()
    # by hand: purchase days 70, 35 (30 + 10) and 14 (60 - 20) days ago; the 7-day order is
    # refunded in full. Repeat average (40 + 40) / 2.
    assert body["transactions"] == 3
    assert body["first_purchase"] == (T0.date() - timedelta(days=70)).isoformat()
    assert body["last_purchase"] == (T0.date() - timedelta(days=14)).isoformat()
    assert body["average_repeat_value"] == "40.00"
    assert body["currency"] == "EUR"
    assert history["hand-1"] == (2.0, 8.0, 10.0, 40.0)

    # the served numbers are the model's for the served parameters ...
    bg, gg = _served_model(body)
    x, t_x, T, m = history["hand-1"]
    p = clv.predict(bg, gg, x, t_x, T, m, months=36, annual_discount_rate=0.10)
    assert body["expected_purchases_90d"] == pytest.approx(float(p.purchases_90d), rel=1e-4)
    assert body["expected_purchases_365d"] == pytest.approx(float(p.purchases_365d), rel=1e-4)
    assert body["probability_alive"] == pytest.approx(float(p.probability_alive), rel=1e-4)
    assert Decimal(body["predicted_clv"]) == pytest.approx(
        Decimal(f"{float(p.clv):.2f}"), abs=Decimal("0.02")
    )
    assert Decimal(body["expected_order_value"]) > 0
    assert 0 <= body["probability_alive"] <= 1
    assert body["expected_purchases_90d"] < body["expected_purchases_365d"]
    # ... and those are the maximum-likelihood fit of this history
    own_bg, own_gg = _expected_model(history)
    own = clv.predict(own_bg, own_gg, x, t_x, T, m, months=36, annual_discount_rate=0.10)
    assert float(body["predicted_clv"]) == pytest.approx(float(own.clv), rel=0.01)
    assert body["probability_alive"] == pytest.approx(float(own.probability_alive), rel=0.01)
    assert bg.r == pytest.approx(own_bg.r, rel=0.01)
    assert bg.alpha == pytest.approx(own_bg.alpha, rel=0.01)
    assert bg.a / (bg.a + bg.b) == pytest.approx(own_bg.a / (own_bg.a + own_bg.b), rel=0.05)
    served = clv.bgnbd_log_likelihood(
        bg, *(np.array([s[i] for s in history.values()]) for i in range(3))
    )
    mine = clv.bgnbd_log_likelihood(
        own_bg, *(np.array([s[i] for s in history.values()]) for i in range(3))
    )
    assert served.sum() == pytest.approx(mine.sum(), abs=0.01)
    model = body["model"]
    assert model["customers"] == len(history)
    assert model["fitted_at"].startswith(T0.date().isoformat())
    assert body["horizon_months"] == 36 and body["annual_discount_rate"] == 0.10

    longer = client.get("/v1/members/hand-1/clv", params={"horizon_months": 60}).json()
    steeper = client.get("/v1/members/hand-1/clv", params={"discount_rate": 0.5}).json()
    assert Decimal(longer["predicted_clv"]) > Decimal(body["predicted_clv"])
    assert Decimal(steeper["predicted_clv"]) < Decimal(body["predicted_clv"])


def test_aggregate_clv_sums_the_members(
    client: TestClient, history: dict[str, tuple[float, float, float, float]]
) -> None:
    client.post("/v1/members", json={"external_id": "no-orders-yet"})
    r = client.get("/v1/analytics/clv", params={"horizon_months": 24})
    assert r.status_code == 200, r.text
    body = r.json()
    bg, gg = _served_model(body)
    x, t_x, T, m = (np.array([s[i] for s in history.values()]) for i in range(4))
    p = clv.predict(bg, gg, x, t_x, T, m, months=24, annual_discount_rate=0.10)
    own = clv.predict(*_expected_model(history), x, t_x, T, m, months=24, annual_discount_rate=0.1)
    assert float(body["total_clv"]) == pytest.approx(float(own.clv.sum()), rel=0.01)
    assert body["population"] == "members"
    assert body["members"] == len(history) + 1
    assert body["members_with_purchases"] == len(history)
    assert Decimal(body["total_clv"]) == pytest.approx(
        Decimal(f"{p.clv.sum():.2f}"), rel=Decimal("1e-4")
    )
    assert Decimal(body["average_clv"]) == pytest.approx(
        Decimal(f"{p.clv.mean():.2f}"), rel=Decimal("1e-4")
    )
    assert Decimal(body["median_clv"]) == pytest.approx(
        Decimal(f"{np.median(p.clv):.2f}"), abs=Decimal("0.02")
    )
    assert body["expected_purchases_365d"] == pytest.approx(float(p.purchases_365d.sum()), rel=1e-4)
    assert sum(b["members"] for b in body["buckets"]) == len(history)
    assert sum(Decimal(b["clv"]) for b in body["buckets"]) == pytest.approx(
        Decimal(body["total_clv"]), abs=Decimal("0.10")
    )
    first_bucket = body["buckets"][0]
    assert (first_bucket["lower"], first_bucket["upper"]) == ("0", "10")
    assert body["buckets"][-1]["upper"] is None
    expected_low = int(np.count_nonzero(p.clv < 10))
    assert first_bucket["members"] == expected_low
    q = body["quantiles"]
    assert Decimal(q["p10"]) <= Decimal(q["p50"]) <= Decimal(q["p90"]) <= Decimal(q["p99"])


def test_the_stored_fit_answers_until_the_next_fit(
    client: TestClient,
    history: dict[str, tuple[float, float, float, float]],
    clock: FixedClock,
    db: Database,
) -> None:
    first = client.get("/v1/members/hand-1/clv").json()["model"]
    aggregate = client.get("/v1/analytics/clv").json()
    # more history after the fit: the stored fit still answers, for the member and in total
    _send(client, [order_paid("late", "cust-000", "LATE-1", "99.00", T0 - timedelta(hours=1))])
    clock.set(T0 + timedelta(days=2))
    assert client.get("/v1/members/hand-1/clv").json()["model"] == first
    assert client.get("/v1/analytics/clv").json() == aggregate
    # a member enrolled after the fit has no prediction until the next fit
    _send(client, [order_paid("new-1", "newcomer", "N-1", "20.00", T0 + timedelta(days=1))])
    r = client.get("/v1/members/newcomer/clv")
    assert r.status_code == 409 and r.json()["error"]["code"] == "clv_no_purchase_history"
    second = _fit(db, clock)
    refit = client.get("/v1/members/hand-1/clv").json()["model"]
    assert refit["fitted_at"] != first["fitted_at"]
    assert refit["fitted_at"].startswith((T0 + timedelta(days=2)).date().isoformat())
    assert refit["bg_nbd"] != first["bg_nbd"]
    assert refit["customers"] == first["customers"] + 1
    assert client.get("/v1/members/newcomer/clv").status_code == 200
    # only the latest fit keeps its predictions
    with db.unit_of_work(write=False) as session:
        from lealta.models import ClvPrediction

        fits = {f for (f,) in session.execute(select(ClvPrediction.fit_id).distinct())}
    assert fits == {second.id}


def test_nothing_fitted_yet_is_a_clear_409(client: TestClient) -> None:
    _load(client, HAND)
    for url in ("/v1/members/hand-1/clv", "/v1/analytics/clv"):
        r = client.get(url)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "clv_not_fitted"
        assert "fit-clv" in error["message"]


def test_the_job_fits_and_is_scheduled_nightly(
    client: TestClient, db: Database, clock: FixedClock, settings: Settings
) -> None:
    from lealta.analytics import clv_jobs
    from lealta.jobs import periodic, queue
    from lealta.jobs.tasks import JobContext

    _load(client, _history(120) + HAND)
    entry = next(s for s in periodic.schedules() if s.name == clv_store.FIT_TASK)
    assert entry.cron == clv_jobs.NIGHTLY
    with db.unit_of_work() as session:
        job_id = clv_jobs.request_fit(session, now=clock.now())
        assert clv_jobs.request_fit(session, now=clock.now()) == job_id  # pressed twice: one
        assert queue.get(session, job_id).task == clv_store.FIT_TASK
    ctx = JobContext(
        db=db,
        clock=clock,
        settings=settings,
        job_id=job_id,
        task=clv_store.FIT_TASK,
        attempt=1,
        now=clock.now(),
    )
    clv_jobs.fit_clv(ctx)
    body = client.get("/v1/analytics/clv").json()
    assert body["model"]["customers"] == 121
    assert body["model"]["fitted_at"].startswith(T0.date().isoformat())


def test_member_without_orders_and_unknown_member(
    client: TestClient, history: dict[str, tuple[float, float, float, float]]
) -> None:
    assert client.post("/v1/members", json={"external_id": "fresh"}).status_code == 201
    r = client.get("/v1/members/fresh/clv")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "clv_no_purchase_history"
    r = client.get("/v1/members/nobody/clv")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "member_not_found"


@pytest.mark.parametrize(
    "params",
    [
        {"horizon_months": 0},
        {"horizon_months": 121},
        {"discount_rate": -0.1},
        {"discount_rate": 2},
        {"horizon_months": "x"},
    ],
)
def test_bad_parameters_are_422(client: TestClient, params: dict[str, Any]) -> None:
    for url in ("/v1/members/hand-1/clv", "/v1/analytics/clv"):
        r = client.get(url, params=params)
        assert r.status_code == 422, (url, params, r.text)


def test_too_little_history_is_409_never_500(
    client: TestClient, db: Database, clock: FixedClock
) -> None:
    assert _fit(db, clock).status == "failed"
    assert client.get("/v1/analytics/clv").json()["error"]["code"] == "clv_insufficient_data"
    _load(client, [*HAND, ("solo", "S-1", 30, Decimal("12.00"))])
    failed = _fit(db, clock)
    assert (failed.status, failed.error_code) == ("failed", "clv_insufficient_data")
    for url in ("/v1/members/hand-1/clv", "/v1/analytics/clv"):
        r = client.get(url)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "clv_insufficient_data"
        assert error["details"]["customers"] == 2


def test_read_keys_may_read_clv(
    client: TestClient, read_key: str, history: dict[str, tuple[float, float, float, float]]
) -> None:
    r = client.get("/v1/analytics/clv", headers={"Authorization": f"Bearer {read_key}"})
    assert r.status_code == 200
    assert (
        client.get("/v1/analytics/clv", headers={"Authorization": "Bearer nope"}).status_code == 401
    )


# --- member 360 in the console ------------------------------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def console(
    db: Database, clock: FixedClock, settings: Settings, client: TestClient
) -> Iterator[TestClient]:
    with db.unit_of_work() as session:
        create_staff(session, ["read_only"], now=T0)
    app = app_for(settings, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        match = CSRF.search(c.get("/admin/login", follow_redirects=True).text)
        assert match is not None
        r = c.post(
            "/admin/login",
            data={
                "email": "read_only@example.com",
                "password": PASSWORD,
                "csrf_token": match.group(1),
            },
        )
        assert r.status_code == 303, r.text
        yield c


def _clv_card(page: str) -> str:
    start = page.index('id="clv"')
    return page[start : page.index("</section>", start)]


def test_member_360_shows_the_predicted_clv_in_both_languages(
    client: TestClient,
    console: TestClient,
    history: dict[str, tuple[float, float, float, float]],
) -> None:
    api = client.get("/v1/members/hand-1/clv").json()
    en = console.get("/admin/members/hand-1?lang=en")
    assert en.status_code == 200, en.text
    card = _clv_card(en.text)
    assert "Predicted CLV" in card
    assert format_currency(Decimal(api["predicted_clv"]), "EUR", locale="en") in card
    assert f"{round(100 * api['probability_alive'])} %" in card
    assert "Expected purchases, next 90 days" in card
    es = _clv_card(console.get("/admin/members/hand-1?lang=es").text)
    assert "CLV previsto" in es and "Probabilidad de seguir activo" in es
    assert format_currency(Decimal(api["predicted_clv"]), "EUR", locale="es") in es

    client.post("/v1/members", json={"external_id": "fresh"})
    fresh = _clv_card(console.get("/admin/members/fresh?lang=en").text)
    assert "No purchase yet" in fresh


def test_member_360_without_enough_history_says_so(
    client: TestClient, console: TestClient, db: Database, clock: FixedClock
) -> None:
    _load(client, HAND)
    _fit(db, clock)
    page = console.get("/admin/members/hand-1?lang=es")
    assert page.status_code == 200
    assert "historial de compras suficiente" in _clv_card(page.text)


def test_the_clv_tables_match_their_migration(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lealta.kit.db import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if "clv_" in repr(d)] == []
