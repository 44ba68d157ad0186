"""Paid plans (seed 001): subscribe through a provider, learn from its signed webhooks, tier
floor and points multiplier while the plan holds, renewal, grace after a failed payment,
cancellation at period end, and plan revenue. The provider is a real HTTP server on loopback
speaking the documented format."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.config import Settings
from lealta.engine import core as engine
from lealta.engine.state import Figures, MemberState, Profile, Qualifying
from lealta.jobs import periodic
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Account, Job, PlanPayment, PlanSubscription
from lealta.plans import provider as payments
from lealta.plans import service as plans
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from tests.conftest import app_for
from tests.factories import create_staff, order_paid
from tests.payment_provider import SECRET, FakeProvider
from tests.test_admin_core import ROLES, sign_in

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

PROGRAMME = Programme.model_validate(
    {
        "name": "Plans",
        "currency": "EUR",
        "tiers": {
            "basis": "spend",
            "period": "lifetime",
            "levels": [
                {"id": "bronce", "name": {"es": "Bronce"}, "threshold": 0},
                {"id": "plata", "name": {"es": "Plata"}, "threshold": 500, "multiplier": 1.5},
                {"id": "oro", "name": {"es": "Oro"}, "threshold": 2000, "multiplier": 2},
            ],
        },
        "plans": [
            {
                "id": "club",
                "name": {"es": "Club", "en": "Club"},
                "fee": "9.90",
                "period": "month",
                "grace_days": 5,
                "tier_floor": "plata",
                "multiplier": 2,
                "perks": [{"id": "free-returns", "name": {"es": "Devoluciones gratis"}}],
            },
            {"id": "prueba", "name": {"es": "Prueba"}, "fee": "4.00", "trial_days": 14},
        ],
    }
)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.server.shutdown()


@pytest.fixture
def api(
    db: Database, clock: FixedClock, settings: Settings, server_key: str, provider: FakeProvider
) -> Iterator[TestClient]:
    configured = settings.model_copy(
        update={"payments_url": provider.url, "payments_webhook_secret": SECRET}
    )
    with db.unit_of_work() as session:
        programmes.apply(session, PROGRAMME, actor="test", now=START - timedelta(days=30))
    clock.set(START)
    app = app_for(configured, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {server_key}"
        yield c


def deliver(api: TestClient, signed: tuple[bytes, dict[str, str]]) -> Any:
    body, headers = signed
    return api.post("/v1/plans/webhooks/http", content=body, headers=headers)


def member(api: TestClient, name: str) -> None:
    assert api.post("/v1/members", json={"external_id": name}).status_code in (200, 201)


def tier(api: TestClient, name: str) -> str:
    return str(api.get(f"/v1/members/{name}/tier").json()["tier"]["id"])


def available(api: TestClient, name: str) -> int:
    return int(api.get(f"/v1/members/{name}/balance").json()["available"])


def subscribe(api: TestClient, name: str, plan: str = "club") -> dict[str, Any]:
    r = api.post(f"/v1/members/{name}/plan", json={"plan": plan})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def pay(
    api: TestClient, provider: FakeProvider, clock: FixedClock, ref: str, start: datetime
) -> None:
    end = plans.period_after(start, "month")
    r = deliver(api, provider.webhook("invoice.paid", ref, at=clock.now(), start=start, end=end))
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "applied"


# --- pure engine -----------------------------------------------------------------------------


def _state(plan_id: str | None, until: datetime | None, spend_minor: int = 0) -> MemberState:
    return MemberState(
        member_id=1,
        profile=Profile(external_id="ana", plan_id=plan_id, plan_until=until),
        figures=Figures(
            member_id=1,
            tier_id="bronce",
            qualifying_spend_minor=spend_minor,
            last_order_at=START - timedelta(days=1),
        ),
        lots_complete=True,
        qualifying=Qualifying(),
        tier_entries_paid=frozenset(),
    )


def test_the_engine_lifts_to_the_floor_while_the_plan_holds_and_reviews_when_it_ends() -> None:
    until = START + timedelta(days=30)
    lifted = engine.plan_changed(PROGRAMME, _state("club", until), at=START)
    assert lifted.state.figures.tier_id == "plata"
    assert lifted.state.figures.tier_held_until == until
    assert [m.reason for m in lifted.tier_moves] == ["Paid plan"]
    assert lifted.entries == ()  # no entry points for a tier a plan lends
    # When the benefits end, the due review judges the value earned: back to bronce.
    after = engine.catch_up(PROGRAMME, lifted.state, until + timedelta(seconds=1))
    assert after.state.figures.tier_id == "bronce"
    assert after.tier_moves[-1].direction == "downgrade"


def test_a_floor_never_lowers_a_tier_earned_above_it() -> None:
    state = _state("club", START + timedelta(days=30), spend_minor=300_000)
    outcome = engine.plan_changed(PROGRAMME, state, at=START)
    assert outcome.state.figures.tier_id == "oro"
    assert outcome.tier_moves[-1].reason == "Qualifying value reached"


def test_without_a_plan_nothing_moves() -> None:
    outcome = engine.plan_changed(PROGRAMME, _state(None, None), at=START)
    assert outcome.state.figures.tier_id == "bronce"
    assert outcome.tier_moves == ()


# --- through the API and the provider -----------------------------------------------------------


def test_plans_are_listed_with_their_benefits(api: TestClient) -> None:
    body = api.get("/v1/plans").json()
    assert body["currency"] == "EUR"
    club = body["items"][0]
    assert (club["id"], club["tier_floor"], Decimal(club["multiplier"])) == ("club", "plata", 2)
    assert club["perks"][0]["id"] == "free-returns"


def test_subscribe_pay_multiply_renew_fail_grace_and_expire(
    api: TestClient, provider: FakeProvider, clock: FixedClock, db: Database
) -> None:
    member(api, "ana")
    sub = subscribe(api, "ana")
    assert sub["status"] == "incomplete"
    assert sub["checkout_url"].endswith("/pay/sub_1")
    path, sent, headers = provider.calls[0]
    assert path == "/subscriptions"
    assert sent == {"customer": "ana", "plan": "club", "amount": "9.90", "currency": "EUR",
                    "interval": "month", "trial_days": 0}  # fmt: skip
    assert headers["Idempotency-Key"].startswith("lealta-plan-")
    assert tier(api, "ana") == "bronce"  # no benefits before the first payment

    pay(api, provider, clock, "sub_1", START)
    current = api.get("/v1/members/ana/plan").json()["current"]
    assert current["status"] == "active" and current["checkout_url"] is None
    assert tier(api, "ana") == "plata"

    # An order while the plan holds: plata's 1.5 on the base, then the plan doubles the base.
    clock.set(START + timedelta(days=3))
    r = api.post("/v1/events", json=order_paid("e1", "ana", "O1", "100.00", clock.now()))
    assert r.status_code == 201, r.text
    assert available(api, "ana") == 150 + 150

    # Renewal at the period end keeps everything for another month.
    renewal = plans.period_after(START, "month")
    clock.set(renewal)
    pay(api, provider, clock, "sub_1", renewal)
    with db.unit_of_work(write=False) as session:
        plans.sweep(session, PROGRAMME, now=clock.now())
    assert tier(api, "ana") == "plata"

    # The next renewal fails: grace of 5 days keeps the benefits.
    second_end = plans.period_after(renewal, "month")
    clock.set(second_end)
    r = deliver(api, provider.webhook("invoice.payment_failed", "sub_1", at=clock.now()))
    assert r.json()["outcome"] == "applied"
    current = api.get("/v1/members/ana/plan").json()["current"]
    assert current["status"] == "past_due"
    assert datetime.fromisoformat(current["benefits_until"]) == second_end + timedelta(days=5)
    clock.set(second_end + timedelta(days=4))
    assert tier(api, "ana") == "plata"

    # Grace over, still unpaid: the sweep ends the plan and the tier is judged on spend.
    clock.set(second_end + timedelta(days=5, minutes=1))
    with db.unit_of_work() as session:
        assert plans.sweep(session, PROGRAMME, now=clock.now()) == 1
    body = api.get("/v1/members/ana/plan").json()
    assert body["current"] is None and body["history"][0]["status"] == "expired"
    assert tier(api, "ana") == "bronce"
    # And an order now earns without the plan's multiplier.
    r = api.post("/v1/events", json=order_paid("e2", "ana", "O2", "100.00", clock.now()))
    assert r.status_code == 201
    assert available(api, "ana") == 300 + 100


def test_cancel_at_period_end_keeps_the_benefits_until_then(
    api: TestClient, provider: FakeProvider, clock: FixedClock, db: Database
) -> None:
    member(api, "eva")
    subscribe(api, "eva")
    pay(api, provider, clock, "sub_1", START)
    clock.set(START + timedelta(days=10))
    r = api.post("/v1/members/eva/plan/cancel", json={})
    assert r.status_code == 200, r.text
    assert r.json()["cancel_at_period_end"] is True and r.json()["status"] == "active"
    assert provider.calls[-1][0] == "/subscriptions/sub_1/cancel"
    assert provider.calls[-1][1] == {"at_period_end": True}
    assert tier(api, "eva") == "plata"
    end = plans.period_after(START, "month")
    clock.set(end + timedelta(minutes=1))
    with db.unit_of_work() as session:
        assert plans.sweep(session, PROGRAMME, now=clock.now()) == 1
    assert api.get("/v1/members/eva/plan").json()["history"][0]["status"] == "canceled"
    assert tier(api, "eva") == "bronce"


def test_cancel_now_ends_the_benefits_at_once(
    api: TestClient, provider: FakeProvider, clock: FixedClock
) -> None:
    member(api, "leo")
    subscribe(api, "leo")
    pay(api, provider, clock, "sub_1", START)
    r = api.post("/v1/members/leo/plan/cancel", json={"at_period_end": False})
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert tier(api, "leo") == "bronce"
    assert api.post("/v1/members/leo/plan/cancel", json={}).json()["error"]["code"] == "no_plan"


def test_a_trial_gives_the_benefits_at_once_and_lapses_to_grace_without_payment(
    api: TestClient, provider: FakeProvider, clock: FixedClock, db: Database
) -> None:
    member(api, "rita")
    sub = subscribe(api, "rita", "prueba")
    assert sub["status"] == "trialing"
    assert datetime.fromisoformat(sub["benefits_until"]) == START + timedelta(days=14)
    assert provider.calls[0][1]["trial_days"] == 14
    # No payment at the end of the trial: 7 days of grace (the default), then expired.
    clock.set(START + timedelta(days=14, minutes=1))
    with db.unit_of_work() as session:
        plans.sweep(session, PROGRAMME, now=clock.now())
    assert api.get("/v1/members/rita/plan").json()["current"]["status"] == "past_due"
    clock.set(START + timedelta(days=21, minutes=2))
    with db.unit_of_work() as session:
        plans.sweep(session, PROGRAMME, now=clock.now())
    assert api.get("/v1/members/rita/plan").json()["history"][0]["status"] == "expired"


def test_one_plan_at_a_time_and_clear_errors(
    api: TestClient, provider: FakeProvider, db: Database
) -> None:
    member(api, "teo")
    subscribe(api, "teo")
    r = api.post("/v1/members/teo/plan", json={"plan": "prueba"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "plan_already_active")
    r = api.post("/v1/members/teo/plan", json={"plan": "gold"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_plan")
    r = api.post("/v1/members/nobody/plan", json={"plan": "club"})
    assert r.status_code == 404
    r = api.post("/v1/members/teo/plan", json={"plan": "club", "extra": 1})
    assert r.status_code == 422
    provider.fail = True
    member(api, "zoe")
    r = api.post("/v1/members/zoe/plan", json={"plan": "club"})
    assert (r.status_code, r.json()["error"]["code"]) == (502, "payments_unavailable")
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(PlanSubscription)) == 1


def test_webhooks_are_verified_applied_once_and_never_500(
    api: TestClient, provider: FakeProvider, clock: FixedClock, db: Database
) -> None:
    member(api, "ana")
    subscribe(api, "ana")
    signed = provider.webhook(
        "invoice.paid", "sub_1", at=clock.now(), start=START,
        end=plans.period_after(START, "month"), event_id="evt_fixed",
    )  # fmt: skip
    assert deliver(api, signed).json()["outcome"] == "applied"
    assert deliver(api, signed).json()["outcome"] == "duplicate"
    body, headers = signed
    tampered = body.replace(b"9.90", b"0.01")
    r = api.post("/v1/plans/webhooks/http", content=tampered, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_signature")
    stale = payments.sign(SECRET, body, timestamp=int(clock.now().timestamp()) - 3600)
    r = api.post("/v1/plans/webhooks/http", content=body, headers=stale)
    assert r.status_code == 401
    unknown = provider.webhook("invoice.paid", "sub_404", at=clock.now(), start=START,
                               end=START + timedelta(days=30))  # fmt: skip
    r = deliver(api, unknown)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "unknown_subscription")
    for raw in (b"not json", b"[]", b'{"id": "x", "type": "nope", "data": {}}',
                b'{"id": "x", "type": "invoice.paid", "created": "2026-03-01T00:00:00+00:00",'
                b' "data": {"subscription": "sub_1"}}'):  # fmt: skip
        headers = payments.sign(SECRET, raw, timestamp=int(clock.now().timestamp()))
        r = api.post("/v1/plans/webhooks/http", content=raw, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_webhook"), raw
    r = api.post("/v1/plans/webhooks/stripe", content=b"{}")
    assert r.status_code == 404
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(PlanPayment)) == 1


def test_without_a_provider_subscribing_is_a_clear_409(client: TestClient) -> None:
    client.post("/v1/members", json={"external_id": "ana"})
    r = client.post("/v1/members/ana/plan", json={"plan": "club"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "payments_not_configured")


def test_revenue_counts_paid_fees_in_the_range(
    api: TestClient, provider: FakeProvider, clock: FixedClock, db: Database
) -> None:
    member(api, "ana")
    subscribe(api, "ana")
    pay(api, provider, clock, "sub_1", START)
    with db.unit_of_work(write=False) as session:
        assert plans.revenue_minor(session, start=START, end=START + timedelta(days=1)) == 990
        assert plans.revenue_minor(session, start=START + timedelta(days=1),
                                   end=START + timedelta(days=2)) == 0  # fmt: skip
    r = api.get("/v1/analytics/kpis", params={"from": "2026-03-01", "to": "2026-03-31"})
    assert r.status_code == 200, r.text
    assert r.json()["kpis"]["plan_revenue"] == "9.90"


def test_the_sweep_is_a_periodic_job() -> None:
    import lealta.plans.tasks  # noqa: F401

    assert any(s.name == "plans.sweep" for s in periodic.schedules())


def test_the_account_row_holds_the_floor_tier(
    api: TestClient, provider: FakeProvider, clock: FixedClock, db: Database
) -> None:
    member(api, "ana")
    subscribe(api, "ana")
    pay(api, provider, clock, "sub_1", START)
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(Account.tier_id)) == "plata"


def test_racing_subscriptions_open_one_plan(
    api: TestClient, provider: FakeProvider, db: Database
) -> None:
    member(api, "ana")
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def attempt() -> None:
        barrier.wait()
        codes.append(api.post("/v1/members/ana/plan", json={"plan": "club"}).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes).count(201) == 1 and set(codes) <= {201, 409}
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(PlanSubscription)) == 1
    # Every provider subscription but the recorded one was cancelled again.
    opened = sum(1 for path, _, _ in provider.calls if path == "/subscriptions")
    cancelled = sum(1 for path, _, _ in provider.calls if path.endswith("/cancel"))
    assert opened - cancelled == 1


def test_the_console_member_page_shows_the_plan(
    api: TestClient, provider: FakeProvider, clock: FixedClock, db: Database, settings: Settings
) -> None:
    member(api, "ana")
    subscribe(api, "ana")
    pay(api, provider, clock, "sub_1", START)
    with db.unit_of_work() as session:
        create_staff(session, ROLES, now=START)
    app = app_for(settings, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as web:
        sign_in(web)
        page = web.get("/admin/members/ana", headers={"Accept-Language": "es"})
        assert page.status_code == 200
        assert 'data-plan="active"' in page.text
        assert "Club · Activo · ventajas hasta el" in page.text


def test_export_lists_the_plan_and_erasure_ends_it(
    api: TestClient, provider: FakeProvider, clock: FixedClock, db: Database, settings: Settings
) -> None:
    member(api, "ana")
    subscribe(api, "ana")
    pay(api, provider, clock, "sub_1", START)
    exported = api.get("/v1/members/ana/data-export").json()
    assert [p["plan"] for p in exported["plans"]] == ["club"]
    provider.fail = True  # the provider is down when the member is erased
    r = api.delete("/v1/members/ana")
    assert r.status_code == 200, r.text
    with db.unit_of_work(write=False) as session:
        sub = session.scalars(select(PlanSubscription)).one()
        assert (sub.status, sub.checkout_url) == ("canceled", None)
    configured = settings.model_copy(
        update={"payments_url": provider.url, "payments_webhook_secret": SECRET}
    )

    def work() -> None:
        Worker(db, clock=clock, settings=configured, name="plans-erasure", schedule=False).run(
            until_idle=True
        )

    cancels = [("/subscriptions/sub_1/cancel", {"at_period_end": False})]
    work()
    assert [(path, body) for path, body, _ in provider.calls[-1:]] == cancels
    with db.unit_of_work(write=False) as session:
        job = session.scalars(select(Job).where(Job.task == "plans.provider_cancel")).one()
        assert job.status != "succeeded" and job.attempts == 1
    provider.fail = False
    clock.set(clock.now() + timedelta(hours=2))  # past the retry's backoff
    work()
    with db.unit_of_work(write=False) as session:
        job = session.scalars(select(Job).where(Job.task == "plans.provider_cancel")).one()
        assert job.status == "succeeded"
    assert [(p, b) for p, b, _ in provider.calls if p.endswith("/cancel")] == cancels * 2
