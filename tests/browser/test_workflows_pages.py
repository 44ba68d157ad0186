"""Workflows in real Chromium: the list, a workflow drawn as a diagram at phone width in
Spanish, a dry run refused (unknown member) then answered with the e-mail it would send, and
pause / resume in English at desktop width."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from lealta.demo.programme import DEMO_PROGRAMME_TEXT
from lealta.members import service as members
from lealta.members.schemas import ConsentIn
from lealta.models import Member
from lealta.programme import service as programmes
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot
from tests.factories import add_member

PASSWORD = "correct horse battery"


def _setup(live_server: LiveServer) -> None:
    now = datetime.now(UTC)
    with live_server.db.unit_of_work() as session:
        document = programmes.parse_text(DEMO_PROGRAMME_TEXT)
        for workflow in document["workflows"]:
            workflow["enabled"] = workflow["id"] != "birthday"  # one stays off
        programmes.apply(
            session,
            programmes.validate(document),
            actor="test",
            now=now - timedelta(minutes=1),
        )
        staff_users.create_user(
            session,
            email="admin@shop.test",
            name="Ana Admin",
            role="admin",
            password=PASSWORD,
            now=now,
        )
    member_id = add_member(live_server.db, "maria", "maria@example.com", name="María")
    with live_server.db.unit_of_work() as session:
        member = session.get(Member, member_id)
        assert member is not None
        consent = ConsentIn(purpose="marketing_email", granted=True)
        members.record_consent(session, member, consent, now=now)


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], width


def test_the_console_draws_workflows_dry_runs_and_pauses_them(
    live_server: LiveServer, page: Page
) -> None:
    _setup(live_server)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/admin/login?lang=es")
    page.fill("input[name=email]", "admin@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin**")
    page.goto(f"{live_server.url}/admin/workflows")
    expect(page.get_by_role("heading", name="Flujos automáticos")).to_be_visible()
    _no_sideways_scroll(page)
    page.get_by_role("link", name="Cada 500 € → cupón 20 % → recordatorio → opinión").click()
    page.wait_for_url("**/admin/workflows/every-500-coupon")
    expect(page.get_by_text("Cuando ocurre threshold.reached")).to_be_visible()
    expect(page.get_by_text("Esperar a coupon.used, como mucho 7 d 0 h").first).to_be_visible()
    expect(page.get_by_text("Si no").first).to_be_visible()
    _no_sideways_scroll(page)
    shoot(page, "admin-workflow")

    page.fill("#dry-member", "nadie")
    page.get_by_role("button", name="Probar").click()
    expect(page.locator("#dry-error")).to_have_text("Ningún socio tiene este identificador.")
    expect(page.locator("#dry-member")).to_have_value("nadie")
    _no_sideways_scroll(page)
    page.fill("#dry-member", "maria")
    page.fill(
        "#dry-payload",
        '{"rule_id": "every-500", "reward_id": "coupon-20-threshold",'
        ' "coupon_code": "LEA-AAAA-BBBB-CCCC"}',
    )
    page.get_by_role("button", name="Probar").click()
    expect(page.locator("#dry-result")).to_contain_text("Empezaría una ejecución.")
    expect(page.locator("#dry-result")).to_contain_text("Tienes un regalo: 20 % de descuento")
    _no_sideways_scroll(page)
    shoot(page, "admin-workflow-dry-run")

    page.set_viewport_size(DESKTOP)
    page.goto(f"{live_server.url}/admin/workflows/tier-up?lang=en")
    expect(page.get_by_role("heading", name="Tier up → “Congratulations!”")).to_be_visible()
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("Workflow paused: no new runs start.")).to_be_visible()
    page.goto(f"{live_server.url}/admin/workflows")
    expect(page.get_by_role("row", name="Tier up").get_by_text("Paused")).to_be_visible()
    expect(page.get_by_role("row", name="Birthday greeting").get_by_text("Off")).to_be_visible()
    page.goto(f"{live_server.url}/admin/workflows/tier-up")
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text("Workflow resumed: new triggers start runs again.")).to_be_visible()
