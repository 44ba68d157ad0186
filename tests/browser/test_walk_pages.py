"""Every console and cockpit page in real Chromium, in Spanish and English, at phone
(390 x 844) and desktop (1280 x 800) width, plus each form page after a refused submission.

A page fails when it scrolls sideways (``document.documentElement.scrollWidth`` wider than the
viewport) or, in Spanish, when English catalogue text shows (``tests/i18n_leaks.py``). All
problems of a run are collected and reported together. One browser context serves a whole
language/width pass; screenshots (``walk-<lang>-<page>-phone|desktop.png``) are taken in the
phone pass, where :func:`shoot` saves both widths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from lealta.apikeys import service as apikeys
from lealta.coupons import service as coupons
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import Coupon
from lealta.programme import service as programmes
from lealta.rewards import service as rewards
from lealta.staff import service as staff_users
from tests.browser.conftest import LiveServer, Mailbox, shoot
from tests.i18n_leaks import english_leaks
from tests.test_rewards import DEMO

PASSWORD = "correct horse battery"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
LINK = re.compile(r"https?://\S+/me/login/[A-Za-z0-9_-]+")
DEMO_YAML = Path(__file__).parents[2] / "src" / "lealta" / "demo" / "programme.yaml"


@dataclass
class Seed:
    redemption_id: int
    use_id: int


def seed(server: LiveServer) -> Seed:
    """The demo programme, an admin and a read-only user, two API keys, and Lucía with
    points, coupons, a redemption and a used coupon (the till's two confirmation pages)."""
    now = datetime.now(UTC)
    with server.db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=now - timedelta(days=30))
        for role, name in (("admin", "Ana Torres"), ("read_only", "Luis Vega")):
            staff_users.create_user(
                session,
                email=f"{role}@shop.test",
                name=name,
                role=role,
                password=PASSWORD,
                now=now,
            )
        apikeys.create(session, name="Tienda online (producción)", scope="server", now=now)
        apikeys.create(session, name="Informes", scope="read", now=now)
        member = members.create(
            session,
            MemberCreate(
                external_id="shop-1001",
                email="lucia@example.com",
                name="Lucía Martín",
                timezone="Europe/Madrid",
            ),
            now=now - timedelta(days=60),
        )
        account = ledger.lock_account(session, member.id)
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
        session.flush()
        redemption = rewards.redeem(
            session, DEMO, member, "coupon-5", now=now - timedelta(days=1), actor="test"
        ).redemption
        used = rewards.redeem(
            session, DEMO, member, "free-shipping", now=now - timedelta(days=1), actor="test"
        ).redemption
        used_coupon = session.get(Coupon, used.coupon_id)
        assert used_coupon is not None
        _, use, _ = coupons.redeem(
            session,
            used_coupon.code,
            order_id="WEB-5521",
            cart=coupons.Cart(total_minor=6490, currency="EUR"),
            customer_id="shop-1001",
            now=now - timedelta(hours=3),
        )
        return Seed(redemption.id, use.id)


@dataclass
class Walk:
    page: Page
    url: str
    lang: str
    width: str
    problems: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def go(self, path: str, name: str) -> None:
        self.page.goto(f"{self.url}{path}")
        self.check(name)

    def check(self, name: str) -> None:
        """Record overflow and, in Spanish, English leaks of the page now shown."""
        self.page.wait_for_load_state("load")
        self.seen.append(name)
        scroll, inner = self.page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]"
        )
        if scroll > inner:
            wide = self.page.evaluate(
                """() => [...document.querySelectorAll('body *')]
                    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                    .slice(0, 3).map(e => e.tagName.toLowerCase() + '.' + e.className)"""
            )
            self.problems.append(f"{name}: {scroll}px wide in {inner}px ({wide})")
        if self.lang == "es":
            leaks = english_leaks(self.page.content())
            if leaks:
                self.problems.append(f"{name}: English on the Spanish page: {leaks}")
        if self.width == "phone":
            shoot(self.page, f"walk-{self.lang}-{name}")

    def submit(self, form: str) -> None:
        """Send ``form`` without the browser's own checks (the server's answer is checked)."""
        self.page.eval_on_selector(form, "f => { f.noValidate = true; }")
        with self.page.expect_navigation():
            self.page.eval_on_selector(form, "f => f.requestSubmit()")


def admin_sign_in(walk: Walk, role: str) -> None:
    page = walk.page
    page.goto(f"{walk.url}/admin/login")
    page.fill("input[name=email]", f"{role}@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{walk.url}/admin")


def walk_console(walk: Walk, data: Seed) -> None:
    page = walk.page
    walk.go("/admin/login", "admin-login")
    page.fill("input[name=email]", "admin@shop.test")
    page.fill("input[name=password]", "wrong password!")
    walk.submit("form[action='/admin/login']")
    walk.check("admin-login-error")

    admin_sign_in(walk, "admin")
    for path, name in (
        ("/admin", "admin-overview"),
        ("/admin/members", "admin-members"),
        ("/admin/members?q=luc", "admin-members-search"),
        ("/admin/members/shop-1001", "admin-member"),
        ("/admin/programme", "admin-programme"),
        ("/admin/programme/versions/1", "admin-programme-version"),
        ("/admin/rewards", "admin-rewards"),
        ("/admin/rewards/coupon-5", "admin-reward-edit"),
        ("/admin/coupons", "admin-coupons"),
        ("/admin/till", "admin-till"),
        ("/admin/till?q=shop-1001", "admin-till-member"),
        (f"/admin/till/redemptions/{data.redemption_id}", "admin-till-redemption"),
        (f"/admin/till/coupon-uses/{data.use_id}", "admin-till-coupon-use"),
        ("/admin/api-keys", "admin-api-keys"),
        ("/admin/users", "admin-users"),
        ("/admin/audit", "admin-audit"),
        ("/admin/jobs", "admin-jobs"),
        ("/admin/no-such-page", "admin-not-found"),
    ):
        walk.go(path, name)

    # One refused submission per form page.
    walk.go("/admin/members/shop-1001", "admin-member")
    page.fill("input[name=points]", "many")
    page.fill("input[name=reason]", "")
    walk.submit("form[action$='/adjustments']")
    walk.check("admin-member-error")

    page.goto(f"{walk.url}/admin/programme")
    page.fill("textarea[name=text]", "name: [unclosed")
    walk.submit("form[action='/admin/programme/validate']")
    walk.check("admin-programme-error")

    page.goto(f"{walk.url}/admin/programme")
    document = DEMO_YAML.read_text().replace("\nname:", "\nname: Changed", 1)
    page.fill("textarea[name=text]", document)
    walk.submit("form[action='/admin/programme/validate']")
    walk.check("admin-programme-diff")

    page.goto(f"{walk.url}/admin/rewards/coupon-5")
    page.fill("input[name=cost]", "-5")
    walk.submit("form[action='/admin/rewards/coupon-5']")
    walk.check("admin-reward-edit-error")

    page.goto(f"{walk.url}/admin/coupons")
    page.fill("input[name=code]", "LEA-NOPE-0000")
    walk.submit("form[action='/admin/coupons']")
    walk.check("admin-coupons-error")

    page.goto(f"{walk.url}/admin/till")
    page.fill("form[action='/admin/till'] input[name=q]", "nobody-at-all")
    walk.submit("form[action='/admin/till']")
    walk.check("admin-till-error")

    page.goto(f"{walk.url}/admin/till?q=shop-1001")
    page.fill("form[action='/admin/till/coupon'] input[name=code]", "LEA-NOPE-0000")
    page.fill("form[action='/admin/till/coupon'] input[name=order_ref]", "TPV-1")
    page.fill("form[action='/admin/till/coupon'] input[name=amount]", "lots")
    walk.submit("form[action='/admin/till/coupon']")
    walk.check("admin-till-coupon-error")

    page.goto(f"{walk.url}/admin/api-keys")
    page.fill("form[action='/admin/api-keys'] input[name=name]", " ")
    walk.submit("form[action='/admin/api-keys']")
    walk.check("admin-api-keys-error")

    page.goto(f"{walk.url}/admin/users")
    page.fill("form[action='/admin/users'] input[name=email]", "not-an-email")
    page.fill("form[action='/admin/users'] input[name=password]", "short")
    walk.submit("form[action='/admin/users']")
    walk.check("admin-users-error")

    # A read-only user: no till in the nav; the till's 403 page keeps nav and sign-out.
    page.context.clear_cookies()
    page.context.add_cookies([{"name": "lealta_lang", "value": walk.lang, "url": walk.url}])
    admin_sign_in(walk, "read_only")
    nav = page.locator("nav.nav")
    expect(nav.locator("a[href='/admin/till']")).to_have_count(0)
    expect(nav.locator("a[href='/admin/api-keys']")).to_have_count(0)
    walk.go("/admin/till", "admin-forbidden")
    expect(page.locator("nav.nav a[href='/admin/members']")).to_have_count(1)
    expect(page.locator("form[action='/admin/logout'] button")).to_be_visible()


def walk_cockpit(walk: Walk, mailbox: Mailbox) -> None:
    page = walk.page
    walk.go("/me/login", "cockpit-login")
    page.fill("input[name=email]", "lucia@example.com")
    walk.submit("form[action='/me/login']")
    walk.check("cockpit-login-sent")
    found = LINK.search(Mailbox.text(mailbox.wait_for("lucia@example.com")))
    assert found is not None
    page.goto(found.group(0))
    walk.check("cockpit-login-confirm")
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    for path, name in (
        ("/me", "cockpit-dashboard"),
        ("/me/history", "cockpit-history"),
        ("/me/rewards", "cockpit-rewards"),
        ("/me/rewards/coupon-10pct", "cockpit-redeem"),
        ("/me/wallet", "cockpit-wallet"),
        ("/me/card", "cockpit-card"),
        ("/me/profile", "cockpit-profile"),
        ("/me/privacy", "cockpit-privacy"),
        ("/me/no-such-page", "cockpit-not-found"),
        ("/me/login/not-a-real-link", "cockpit-link-invalid"),
    ):
        walk.go(path, name)

    page.goto(f"{walk.url}/me/profile")
    page.set_input_files(
        "form[action='/me/profile/picture'] input[name=picture]",
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"},
    )
    walk.submit("form[action='/me/profile/picture']")
    walk.check("cockpit-profile-error")

    page.goto(f"{walk.url}/me/rewards/coupon-10pct")
    page.eval_on_selector(
        "form[action$='/redeem'] input[name=csrf_token]", "i => { i.value = 'stale'; }"
    )
    walk.submit("form[action$='/redeem']")
    walk.check("cockpit-redeem-error")

    page.goto(f"{walk.url}/me/privacy")
    page.eval_on_selector(
        "form[action='/me/privacy/consents'] input[name=csrf_token]", "i => { i.value = 'x'; }"
    )
    walk.submit("form[action='/me/privacy/consents']")
    walk.check("cockpit-privacy-error")


@pytest.mark.parametrize("width", ["phone", "desktop"])
@pytest.mark.parametrize("lang", ["es", "en"])
def test_every_page_fits_and_speaks_the_language(
    live_server: LiveServer, browser: Browser, lang: str, width: str
) -> None:
    data = seed(live_server)
    context = browser.new_context(
        viewport=PHONE if width == "phone" else DESKTOP,
        locale="es-ES" if lang == "es" else "en-GB",
    )
    context.add_cookies([{"name": "lealta_lang", "value": lang, "url": live_server.url}])
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())
    walk = Walk(page, live_server.url, lang, width)
    try:
        walk_console(walk, data)
        walk_cockpit(walk, live_server.mailbox)
    finally:
        context.close()
    assert len(walk.seen) >= 45, walk.seen
    assert not walk.problems, "\n".join(walk.problems)
