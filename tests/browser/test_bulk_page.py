"""The console's Bulk operations page in real Chromium: upload a points file, see the
operation finish with its rejected rows, and a form error, in Spanish, at phone and desktop
widths."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlalchemy import select

from lealta.bulk import service as bulk
from lealta.kit.clock import SystemClock
from lealta.models import BulkOperation
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot
from tests.factories import add_member

PASSWORD = "correct horse battery"


def _fits_phone(page: Page) -> None:
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    page.set_viewport_size(DESKTOP)


def test_a_marketer_uploads_points_and_reads_the_rejected_rows(
    live_server: LiveServer, page: Page, tmp_path: Path
) -> None:
    db = live_server.db
    with db.unit_of_work() as session:
        staff_users.create_user(
            session, email="mkt@shop.test", name="Marta", role="marketer",
            password=PASSWORD, now=datetime.now(UTC),
        )  # fmt: skip
    add_member(db, "cust-1", None)
    good = tmp_path / "regalo.csv"
    good.write_text("external_id,points,reason\ncust-1,25,Aniversario\nnadie,5,\n")

    page.goto(f"{live_server.url}/admin/login")
    page.fill("input[name=email]", "mkt@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin**")
    page.get_by_role("link", name="Masivas", exact=True).click()
    page.wait_for_url("**/admin/bulk")
    expect(page.get_by_role("heading", name="Operaciones masivas", exact=True)).to_be_visible()
    _fits_phone(page)

    # A form error: a tier move without a reason comes back with the message, in Spanish.
    page.get_by_label("Qué hace el archivo").select_option("tier")
    page.set_input_files("input[name=file]", str(good))
    page.get_by_role("button", name="Subir").click()
    expect(page.locator("#bulk-error")).to_contain_text("Los cambios de nivel necesitan un motivo.")
    _fits_phone(page)

    page.get_by_label("Qué hace el archivo").select_option("points")
    page.set_input_files("input[name=file]", str(good))
    page.get_by_role("button", name="Subir").click()
    page.wait_for_url("**/admin/bulk/*")
    expect(page.get_by_role("status")).to_contain_text("está en cola")
    with db.unit_of_work(write=False) as session:
        op_id = session.scalar(select(BulkOperation.id))
    assert op_id is not None
    bulk.run(db, op_id, clock=SystemClock())
    page.reload()
    expect(page.locator("#bulk-status")).to_have_attribute("data-status", "done")
    expect(page.locator("[data-kpi=applied]")).to_have_text("1")
    expect(page.locator("#bulk-rejected")).to_contain_text(
        "No hay ningún miembro con este identificador externo."
    )
    shoot(page, "admin-bulk-operation")
    _fits_phone(page)
