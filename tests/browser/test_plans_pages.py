"""The member's plan page in real Chromium: a refused join when payments are down (the
error is shown, nothing changes), a trial joined, then cancelled at period end — in Spanish
at phone width and in English at desktop width."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from lealta.models import Member
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot, sign_in_member
from tests.factories import add_member
from tests.payment_provider import SECRET, FakeProvider
from tests.test_rewards import DEMO

PLANS = [
    {
        "id": "club",
        "name": {"es": "Club Moda", "en": "Fashion Club"},
        "fee": "9.90",
        "trial_days": 14,
        "tier_floor": DEMO.tiers.levels[1].id if DEMO.tiers else None,
        "multiplier": 2,
        "perks": [{"id": "returns", "name": {"es": "Devoluciones gratis", "en": "Free returns"}}],
    }
]


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.server.shutdown()


def _seed(live_server: LiveServer, provider: FakeProvider) -> None:
    live_server.settings.payments_url = provider.url
    live_server.settings.payments_webhook_secret = SECRET
    programme = Programme.model_validate(DEMO.model_dump(mode="json") | {"plans": PLANS})
    with live_server.db.unit_of_work() as session:
        programmes.apply(session, programme, actor="test", now=datetime.now(UTC) - timedelta(1))
    for external_id, language in (("paula", "es"), ("peter", "en")):
        member_id = add_member(live_server.db, external_id, f"{external_id}@example.com")
        with live_server.db.unit_of_work() as session:
            member = session.get(Member, member_id)
            assert member is not None
            member.language = language


def _fits(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], width


def test_join_a_trial_and_cancel_in_spanish_at_phone_width(
    live_server: LiveServer, page: Page, provider: FakeProvider
) -> None:
    _seed(live_server, provider)
    page.set_viewport_size(PHONE)
    sign_in_member(live_server, page, "paula@example.com")
    page.goto(f"{live_server.url}/me/profile")
    page.get_by_role("link", name="Tu plan").click()
    expect(page.get_by_role("heading", name="Tu plan", exact=True)).to_be_visible()
    expect(page.get_by_text("2x puntos en tus compras")).to_be_visible()
    expect(page.get_by_text("Devoluciones gratis")).to_be_visible()
    _fits(page)

    provider.fail = True
    page.get_by_role("button", name="Unirme Club Moda").click()
    expect(page.get_by_role("alert").first).to_contain_text("Los pagos no están disponibles")
    expect(page.get_by_role("button", name="Unirme Club Moda")).to_be_visible()
    shoot(page, "plan-error")

    provider.fail = False
    page.get_by_role("button", name="Unirme Club Moda").click()
    expect(page.get_by_text("¡Bienvenido a tu plan!")).to_be_visible()
    expect(page.get_by_text("Prueba gratuita")).to_be_visible()
    _fits(page)
    page.get_by_role("button", name="Cancelar al final del periodo").click()
    expect(page.get_by_text("Tu plan está cancelado.")).to_be_visible()
    expect(page.get_by_text("Cancelado: tus ventajas terminan el")).to_be_visible()
    assert [path for path, _, _ in provider.calls][-1] == "/subscriptions/sub_1/cancel"
    _fits(page)
    shoot(page, "plan-es-phone")


def test_the_plan_page_in_english_at_desktop_width(
    live_server: LiveServer, page: Page, provider: FakeProvider
) -> None:
    _seed(live_server, provider)
    page.set_viewport_size(DESKTOP)
    sign_in_member(live_server, page, "peter@example.com")
    page.goto(f"{live_server.url}/me/plan")
    expect(page.get_by_role("heading", name="Fashion Club")).to_be_visible()
    expect(page.get_by_text("Try it free for 14 days.")).to_be_visible()
    page.get_by_role("button", name="Join Fashion Club").click()
    expect(page.get_by_text("Free trial")).to_be_visible()
    _fits(page)
