"""The console's Jobs page in real Chromium: depth and failures with their error, retry and
discard with the buttons, in Spanish, at phone and desktop widths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from lealta.jobs import queue
from lealta.jobs.tasks import Backoff
from lealta.kit.db import Database
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot

PASSWORD = "correct horse battery"


def _queue(db: Database) -> tuple[int, int]:
    """A dead webhook delivery with its error, a retrying one, and some waiting work."""
    now = datetime.now(UTC)
    with db.unit_of_work() as session:
        staff_users.create_user(
            session, email="admin@shop.test", name="Ana Admin", role="admin",
            password=PASSWORD, now=now,
        )  # fmt: skip
        dead = queue.enqueue(session, "webhooks.deliver", {"endpoint": 3}, now=now, max_attempts=1)
        flaky = queue.enqueue(session, "notify.email", {"member": 7}, now=now, max_attempts=5)
        for i in range(3):
            queue.enqueue(session, "outbox.deliver", {"outbox_id": i}, now=now + timedelta(hours=1))
    with db.unit_of_work() as session:
        for held in queue.claim(session, "w1", now=now, limit=2, lease=timedelta(minutes=1)):
            queue.fail(
                session, held.id, worker="w1", attempt=held.attempt, now=now,
                error="ConnectionError: https://shop.example/hooks refused the connection\n\n"
                "Traceback (most recent call last):\n  File \"deliver.py\", line 12",
                backoff=Backoff(base=3600, cap=3600),
            )  # fmt: skip
    return dead, flaky


def _status(db: Database, job_id: int) -> str:
    with db.unit_of_work(write=False) as session:
        return queue.get(session, job_id).status


def test_an_admin_sees_failures_and_retries_or_discards_them(
    live_server: LiveServer, page: Page
) -> None:
    dead, flaky = _queue(live_server.db)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{live_server.url}/admin/login")
    page.fill("input[name=email]", "admin@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin**")

    page.get_by_role("link", name="Tareas", exact=True).click()
    page.wait_for_url("**/admin/jobs")
    expect(page.get_by_role("heading", name="Tareas", exact=True)).to_be_visible()
    expect(page.locator("[data-kpi=dead]")).to_have_text("1")
    expect(page.locator("[data-kpi=retrying]")).to_have_text("1")
    expect(page.locator("[data-kpi=scheduled]")).to_have_text("4")
    row = page.locator(f"tr[data-job='{dead}']")
    expect(row).to_contain_text("fallida definitivamente")
    expect(row).to_contain_text("1 / 1")
    row.locator("summary").click()
    expect(row.locator("pre")).to_contain_text("Traceback (most recent call last)")
    shoot(page, "admin-jobs")

    # Phone width: the page does not scroll sideways (the table scrolls in its own box).
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    page.set_viewport_size(DESKTOP)

    row.get_by_role("button", name=f"Reintentar ahora #{dead}").click()
    page.wait_for_url("**/admin/jobs")
    expect(page.get_by_role("status")).to_contain_text(f"La tarea {dead} se ejecutará ahora.")
    assert _status(live_server.db, dead) == "queued"

    page.get_by_label("Estado").select_option("retrying")
    page.get_by_role("button", name="Filtrar").click()
    page.wait_for_url("**/admin/jobs?status=retrying**")
    expect(page.locator("tr[data-job]")).to_have_count(1)
    page.locator(f"tr[data-job='{flaky}']").get_by_role(
        "button", name=f"Descartar #{flaky}"
    ).click()
    page.wait_for_url("**/admin/jobs?status=retrying")
    expect(page.get_by_role("status")).to_contain_text(f"La tarea {flaky} se ha descartado.")
    expect(page.get_by_text("Ninguna tarea coincide.")).to_be_visible()
    assert _status(live_server.db, flaky) == "discarded"
