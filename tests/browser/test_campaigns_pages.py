"""The campaign editor in real Chromium: in Spanish at phone width the live audience count
follows the form, a window that ends before it starts is refused with the error next to the
field and the form kept, the saved campaign is launched from its page; in English at desktop
width the list and the campaign read in English. No page scrolls sideways."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import Page, expect

from lealta.programme import service as programmes
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot
from tests.factories import add_member
from tests.test_rewards import DEMO

PASSWORD = "correct horse battery"


def _seed(live_server: LiveServer) -> None:
    now = datetime.now(UTC)
    with live_server.db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=now)
        staff_users.create_user(
            session, email="admin@shop.test", name="Ana Admin", role="admin",
            password=PASSWORD, now=now,
        )  # fmt: skip
    for external_id in ("lucia", "liam", "marta"):
        add_member(live_server.db, external_id, f"{external_id}@example.com", name=external_id)


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], width


def test_editor_live_count_error_launch_in_both_languages(
    live_server: LiveServer, page: Page
) -> None:
    _seed(live_server)
    base = live_server.url
    page.set_viewport_size(PHONE)
    page.goto(f"{base}/admin/login?lang=es")
    page.fill("input[name=email]", "admin@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{base}/admin**")
    page.goto(f"{base}/admin/campaigns")
    expect(page.get_by_role("heading", name="Campañas", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Reactivación de inactivos")).to_be_visible()
    _no_sideways_scroll(page)
    shoot(page, "campaigns-list-es")

    page.get_by_role("link", name="Nueva campaña").click()
    form = page.locator("form[action='/admin/campaigns']")
    preview = form.locator("[data-campaign-preview]")
    expect(preview).to_contain_text("Elige la audiencia")
    form.locator("input[name=id]").fill("relampago")
    form.locator("input[name=name_es]").fill("Relámpago")
    form.locator("select[name=template]").select_option("we_miss_you")
    # The live count (sent on change): every member, three of them.
    expect(preview.locator("[data-count]")).to_have_attribute("data-count", "3")
    expect(preview).to_contain_text("3 miembros en la audiencia")
    form.locator("input[name=starts_at]").fill("2030-03-01T10:00")
    form.locator("input[name=ends_at]").fill("2030-02-01T10:00")
    form.get_by_role("button", name="Guardar la campaña").click()
    error = page.locator("[data-error=ends_at]")
    expect(error).to_contain_text("Revisa este campo")
    expect(page.locator("form input[name=id]")).to_have_value("relampago")
    _no_sideways_scroll(page)
    shoot(page, "campaigns-editor-error-es")

    page.locator("form input[name=ends_at]").fill("2030-04-01T10:00")
    page.get_by_role("button", name="Guardar la campaña").click()
    page.wait_for_url(f"{base}/admin/campaigns/relampago")
    expect(page.get_by_text("Campaña relampago guardada.")).to_be_visible()
    page.get_by_role("button", name="Lanzar ahora").click()
    expect(page.get_by_text("se está calculando su audiencia")).to_be_visible()
    expect(page.get_by_role("link", name="Resultados del experimento")).to_be_visible()
    _no_sideways_scroll(page)
    shoot(page, "campaigns-detail-es")

    page.set_viewport_size(DESKTOP)
    page.goto(f"{base}/admin/campaigns?lang=en")
    expect(page.get_by_role("heading", name="Campaigns", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Win back inactive members")).to_be_visible()
    _no_sideways_scroll(page)
    shoot(page, "campaigns-list-en")
    page.get_by_role("link", name="Win back inactive members").click()
    expect(page.get_by_role("button", name="Launch now")).to_be_visible()
    shoot(page, "campaigns-detail-en")
