"""The segment builder in real Chromium: in Spanish at phone width the live count follows the
rows as they are edited, a wrong value and a missing key are refused with the form kept, the
saved segment shows its members; in English at desktop width the same pages read in English.
No page scrolls sideways."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import Page, expect

from lealta.programme import service as programmes
from lealta.segments import service as segments
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
    with live_server.db.unit_of_work() as session:
        segments.recompute_all(session, now=now)


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], width


def test_builder_live_count_errors_and_members_in_both_languages(
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
    page.goto(f"{base}/admin/segments")
    expect(page.get_by_role("heading", name="Segmentos", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Inactivos (180 días sin comprar)")).to_be_visible()
    _no_sideways_scroll(page)

    form = page.locator("form[action='/admin/segments']")
    preview = form.locator("[data-segment-preview]")
    expect(preview).to_contain_text("Elige condiciones")
    form.locator("select[name=field_0]").select_option("activity")
    form.locator("input[name=value_0]").fill("inactive")
    # The live count (sent as you type) finds the three members who never ordered.
    expect(preview.locator("[data-count]")).to_have_attribute("data-count", "3")
    expect(preview).to_contain_text("3 miembros cumplen")
    form.locator("input[name=value_0]").fill("dormido")
    expect(preview.get_by_role("alert")).to_contain_text("activity")
    _no_sideways_scroll(page)
    shoot(page, "segments-builder-error")

    # Saving without a key is refused; the rows stay as typed.
    form.locator("input[name=value_0]").fill("inactive")
    form.get_by_role("button", name="Guardar el segmento").click()
    expect(page.get_by_role("alert").first).to_contain_text("Da al segmento una clave")
    expect(page.locator("form[action='/admin/segments'] input[name=value_0]")).to_have_value(
        "inactive"
    )
    _no_sideways_scroll(page)
    form = page.locator("form[action='/admin/segments']")
    form.locator("input[name=key]").fill("dormidos")
    form.locator("input[name=name_es]").fill("Dormidos")
    form.locator("input[name=name_en]").fill("Sleepers")
    form.get_by_role("button", name="Añadir una condición").click()
    expect(page.locator("select[name=field_1]")).to_be_visible()
    page.locator("form[action='/admin/segments']").get_by_role(
        "button", name="Guardar el segmento"
    ).click()
    page.wait_for_url(f"{base}/admin/segments/dormidos")
    expect(page.get_by_role("status")).to_contain_text("Segmento dormidos guardado")
    with live_server.db.unit_of_work() as session:
        segments.recompute_all(session, now=datetime.now(UTC), keys=["dormidos"])
    page.reload()
    expect(page.get_by_role("heading", name="Dormidos")).to_be_visible()
    expect(page.get_by_role("link", name="marta")).to_be_visible()
    _no_sideways_scroll(page)
    shoot(page, "segment-page")

    page.set_viewport_size(DESKTOP)
    page.goto(f"{base}/admin/segments/dormidos?lang=en")
    expect(page.get_by_role("heading", name="Sleepers")).to_be_visible()
    expect(page.get_by_text("3 members", exact=False).first).to_be_visible()
    edit = page.locator("form[action='/admin/segments/dormidos']")
    edit.locator("select[name=op_0]").select_option("ne")
    expect(edit.locator("[data-segment-preview]")).to_contain_text("0 members match")
    expect(edit.locator("[data-segment-preview]")).to_contain_text("3 would leave")
    page.goto(f"{base}/admin/segments?lang=en")
    expect(page.get_by_role("heading", name="New segment")).to_be_visible()
    _no_sideways_scroll(page)
