"""The programme dashboard in real Chromium over the demo history: KPI cards, the SVG charts
and the cohort heat map render, the period picker and a bad period work, in Spanish and
English, at phone width without sideways scrolling. Saves ``docs/dashboard.png`` (the
README's picture) and the usual phone/desktop screenshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from lealta.analytics import rollups
from lealta.demo import service as demo
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, readme_shot, shoot

PASSWORD = "correct horse battery"


def test_the_dashboard_over_the_demo_history(live_server: LiveServer, page: Page) -> None:
    db = live_server.db
    now = datetime.now(UTC)
    demo.up(db, now=now - timedelta(minutes=5), member_count=400)
    with db.unit_of_work() as session:
        rollups.rebuild(session, now=now)
        staff_users.create_user(
            session, email="ana@shop.test", name="Ana", role="marketer",
            password=PASSWORD, now=now,
        )  # fmt: skip
    page.goto(f"{live_server.url}/admin/login")
    page.fill("input[name=email]", "ana@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin**")

    page.get_by_role("link", name="Panel", exact=True).click()
    page.wait_for_url("**/admin/dashboard")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Programa de fidelización")

    # Half a year against the half year before, through the period picker.
    end = now.date()
    page.fill("input[name=from]", (end - timedelta(days=181)).isoformat())
    page.fill("input[name=to]", end.isoformat())
    page.select_option("select[name=compare]", "previous")
    page.get_by_role("button", name="Mostrar").click()
    page.wait_for_url("**/admin/dashboard?from=*")
    active = page.locator("[data-kpi=active]")
    expect(active).not_to_have_text("0")
    expect(page.locator("svg[role=img]")).to_have_count(4)
    expect(page.locator("table.heatmap")).to_be_visible()
    bars = page.locator("section[aria-labelledby=active-chart] rect")
    start = end - timedelta(days=181)
    months = (end.year - start.year) * 12 + end.month - start.month + 1  # 6 or 7 touched
    assert bars.count() == months, bars.count()
    page.set_viewport_size({"width": 1280, "height": 900})
    readme_shot(page, "dashboard.png")
    shoot(page, "admin-dashboard")

    # Phone width: the page itself never scrolls sideways.
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    page.set_viewport_size(DESKTOP)

    # A period that ends before it starts: the form again, with the message, in Spanish.
    page.fill("input[name=from]", end.isoformat())
    page.fill("input[name=to]", (end - timedelta(days=10)).isoformat())
    page.get_by_role("button", name="Mostrar").click()
    expect(page.locator("#period-error")).to_contain_text("El periodo termina antes de empezar.")
    expect(page.locator("[data-kpi=participation]")).to_be_visible()

    # English.
    page.goto(f"{live_server.url}/admin/dashboard?lang=en")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Loyalty programme")
    expect(page.get_by_text("Monthly active members", exact=True)).to_be_visible()
    download = page.locator("a[href^='/admin/dashboard/months.csv']").first
    with page.expect_download() as info:
        download.click()
    assert info.value.suggested_filename.startswith("lealta-months-")
