"""The console's operations pages in real Chromium: a till redemption from sign-in to the
confirmation, and the programme page refusing a bad document with its exact path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from lealta.coupons import service as coupons
from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import Coupon
from lealta.programme import service as programmes
from lealta.rewards import service as rewards
from lealta.staff import service as staff_users
from tests.browser.conftest import LiveServer, shoot
from tests.test_rewards import DEMO

PASSWORD = "correct horse battery"


@dataclass
class Shop:
    server: LiveServer
    coupon_code: str  # unused, in the member's wallet
    used_code: str  # used on order WEB-5521

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def shop(live_server: LiveServer) -> Shop:
    """The demo programme (points spendable at once), staff, and a member with a coupon."""
    db: Database = live_server.db
    now = datetime.now(UTC)
    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=now - timedelta(days=30))
        for role in ("support", "admin"):
            staff_users.create_user(
                session,
                email=f"{role}@shop.test",
                name=f"{role.title()} Staff",
                role=role,
                password=PASSWORD,
                now=now,
            )
        member = members.create(
            session,
            MemberCreate(external_id="shop-1001", email="lucia@example.com", name="Lucía Martín"),
            now=now - timedelta(days=60),
        )
        account = ledger.lock_account(session, member.id)
        account.tier_id = "plata"
        ledger.credit(
            session,
            account,
            entry_type="adjust",
            points=2350,
            reason="welcome",
            source=ledger.Source("test"),
            occurred_at=now - timedelta(days=2),
            now=now - timedelta(days=2),
        )
        session.flush()  # the sessions do not autoflush: make the new lot visible to debits
        redemption = rewards.redeem(
            session, DEMO, member, "coupon-5", now=now - timedelta(days=1), actor="test"
        ).redemption
        rewards.redeem(session, DEMO, member, "tote-bag", now=now - timedelta(days=1), actor="t")
        coupon = session.get(Coupon, redemption.coupon_id)
        assert coupon is not None
        # A used coupon, so the look-up page has a use to show.
        used = rewards.redeem(
            session, DEMO, member, "free-shipping", now=now - timedelta(days=1), actor="test"
        ).redemption
        used_coupon = session.get(Coupon, used.coupon_id)
        assert used_coupon is not None
        coupons.redeem(
            session,
            used_coupon.code,
            order_id="WEB-5521",
            cart=coupons.Cart(total_minor=6490, currency="EUR"),
            customer_id="shop-1001",
            now=now - timedelta(hours=3),
        )
    return Shop(live_server, coupon.code, used_coupon.code)


def sign_in(page: Page, server: Shop, role: str) -> None:
    page.goto(f"{server.url}/admin/login")
    page.fill("input[name=email]", f"{role}@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{server.url}/admin**")


def test_staff_redeems_a_coupon_at_the_till(shop: Shop, page: Page) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, shop, "support")
    page.goto(f"{shop.url}/admin/till")
    # A keyboard-wedge scanner types the card's code and presses Enter.
    page.get_by_label("Miembro: id externo, email o código de la tarjeta").fill("shop-1001")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Lucía Martín")).to_be_visible()
    expect(page.locator(".balance .value")).to_have_text("350")
    code = shop.coupon_code
    expect(page.locator(".wallet")).to_contain_text(code)
    page.get_by_label("Código del cupón").fill(code)
    page.get_by_label("Referencia del pedido").fill("TPV-0042")
    page.get_by_label("Importe del pedido (EUR)").fill("64,90")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    shoot(page, "admin-till")
    page.get_by_role("button", name="Usar cupón").click()
    page.wait_for_url("**/admin/till/coupon-uses/*")
    expect(page.get_by_role("heading", name="Cupón aplicado")).to_be_visible()
    expect(page.locator(".done")).to_contain_text(code)
    expect(page.locator(".done")).to_contain_text("TPV-0042")
    expect(page.locator(".done")).to_contain_text("5,00")
    shoot(page, "admin-till-confirmation")


def test_the_programme_page_shows_where_a_bad_document_is_wrong(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "admin")
    page.goto(f"{shop.url}/admin/programme")
    expect(page.get_by_role("heading", name="Moda Mediterránea")).to_be_visible()
    page.get_by_label("…o pega el documento").fill(
        "name: Test\ncurrency: EUR\ntiers:\n  levels:\n"
        "    - {id: a, name: {es: A}, threshold: 0}\n"
        "    - {id: b, name: {es: B}, threshold: -10}\n"
    )
    page.get_by_role("button", name="Validar", exact=True).click()
    expect(page.locator(".problem-path").first).to_have_text("tiers.levels.1.threshold")
    expect(page.get_by_text("No se ha cambiado nada")).to_be_visible()
    page.goto(f"{shop.url}/admin/programme")
    shoot(page, "admin-programme")


def test_rewards_and_coupon_pages(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "admin")
    page.goto(f"{shop.url}/admin/rewards")
    expect(page.get_by_role("row", name="Bolsa de algodón")).to_contain_text("199")
    shoot(page, "admin-rewards")
    page.goto(f"{shop.url}/admin/coupons")
    page.get_by_label("Código del cupón").fill(shop.used_code)
    page.get_by_role("button", name="Consultar").click()
    expect(page.locator(".coupon-detail")).to_contain_text("WEB-5521")
    expect(page.locator(".coupon-detail")).to_contain_text("Lucía Martín")
    shoot(page, "admin-coupons")
