"""The console's member list in real Chromium: filters, keyset pages, an inline error for a
bad filter, and the CSV export of the filtered list, at phone and desktop widths."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from tests.browser.conftest import PHONE, LiveServer, shoot
from tests.browser.test_admin_core import console as console
from tests.browser.test_admin_core import sign_in


@pytest.fixture
def many(console: LiveServer) -> LiveServer:
    """The console's four members and 30 more, enrolled one a day (newest ``bulk-29``)."""
    now = datetime.now(UTC)
    with console.db.unit_of_work() as session:
        for i in range(30):
            members.create(
                session,
                MemberCreate(external_id=f"bulk-{i:02d}", tags=["vip"] if i % 3 == 0 else []),
                now=now - timedelta(days=30 - i),
            )
    return console


def rows(page: Page) -> list[str]:
    return page.locator("table tbody tr td:first-child a").all_inner_texts()


def test_filter_page_and_export_the_member_list(many: LiveServer, page: Page) -> None:
    url = many.url
    sign_in(page, url)
    page.get_by_role("link", name="Miembros", exact=True).first.click()
    expect(page.get_by_role("status")).to_contain_text("34 miembros")
    assert rows(page)[:2] == ["bulk-29", "bulk-28"]  # newest enrolment first, 25 a page
    assert len(rows(page)) == 25
    page.get_by_role("link", name="Página siguiente").click()
    assert len(rows(page)) == 9
    assert set(rows(page)) >= {"cust-1", "cust-2", "cust-3", "cust-4"}
    page.get_by_role("link", name="Primera página").click()
    assert rows(page)[0] == "bulk-29"

    # Filters: tag and sort, then the points range of "More filters".
    page.get_by_text("Más filtros").click()
    page.get_by_label("Etiquetas (separadas por comas)").fill("vip")
    page.get_by_label("Ordenar por").select_option("external_id")
    page.locator("select[name=order]").select_option("asc")
    page.get_by_role("button", name="Buscar").click()
    expect(page.get_by_role("status")).to_contain_text("10 miembros coinciden")
    assert rows(page) == [f"bulk-{i:02d}" for i in range(0, 30, 3)]
    shoot(page, "admin-members-list")

    export = page.locator("#export-csv")
    href = export.get_attribute("href")
    assert href is not None and "export.csv" in href and "tag=vip" in href
    response = page.request.get(f"{url}{href}")
    assert response.status == 200
    table = list(csv.reader(io.StringIO(response.text())))
    assert [r[0] for r in table[1:]] == [f"bulk-{i:02d}" for i in range(0, 30, 3)]

    # A bad range is an inline error on the page (not JSON), with the values kept.
    page.get_by_label("Etiquetas (separadas por comas)").fill("")
    points = page.get_by_role("group", name="Puntos disponibles")
    points.get_by_label("Mín.").fill("900")
    points.get_by_label("Máx.").fill("100")
    page.get_by_role("button", name="Buscar").click()
    expect(page.get_by_role("alert")).to_contain_text("el mínimo no puede ser mayor")
    expect(points.get_by_label("Mín.")).to_have_value("900")
    page.set_viewport_size(PHONE)
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("button", name="Buscar")).to_be_visible()

    points.get_by_label("Máx.").fill("")
    points.get_by_label("Mín.").fill("1000")
    page.get_by_label("Ordenar por").select_option("enrolled_at")
    page.get_by_role("button", name="Buscar").click()
    assert rows(page) == ["cust-1"]
