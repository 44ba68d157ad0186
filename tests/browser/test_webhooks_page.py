"""The console's Webhooks pages in real Chromium, in Spanish: the banner of an endpoint Lealta
disabled, a form error then a new endpoint and its secret shown once, enable and replay, at
phone and desktop widths."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from lealta.config import Settings
from lealta.kit.db import Database
from lealta.staff import service as staff_users
from lealta.webhooks import service
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot

PASSWORD = "correct horse battery"


def _broken(db: Database) -> tuple[int, int]:
    now = datetime.now(UTC)
    with db.unit_of_work() as session:
        staff_users.create_user(
            session, email="admin@shop.test", name="Ana Admin", role="admin",
            password=PASSWORD, now=now,
        )  # fmt: skip
        endpoint = service.create_endpoint(
            session, url="https://down.example/a-rather-long-path/for-the-phone-layout/hooks",
            event_types=["order.paid"], now=now, actor="test",
        )  # fmt: skip
        service.fan_out(
            session, outbox_id=1, event_type="order.paid", version=1, created_at=now,
            data={"event_id": "ord_1"}, member_id=None, now=now,
        )  # fmt: skip
        session.flush()
        [delivery] = service.list_deliveries(session, endpoint_id=endpoint.id)
        request = service.start_attempt(session, delivery.id)
        assert isinstance(request, service.Request)
        rule = Settings(webhook_disable_after_failures=2, webhook_disable_after_hours=1)
        for hours in (-2, 0):
            service.record_attempt(
                session, request, service.Result(503, 40, "maintenance", "HTTP 503"),
                now=now + timedelta(hours=hours), last_try=False, settings=rule,
            )  # fmt: skip
        return endpoint.id, delivery.id


def _no_sideways_scroll(page: Page) -> None:
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    page.set_viewport_size(DESKTOP)


def test_an_admin_manages_webhooks(live_server: LiveServer, page: Page) -> None:
    endpoint_id, delivery_id = _broken(live_server.db)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{live_server.url}/admin/login")
    page.fill("input[name=email]", "admin@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin**")

    page.get_by_role("link", name="Webhooks", exact=True).click()
    page.wait_for_url("**/admin/webhooks")
    banner = page.locator(f"[data-webhook-disabled='{endpoint_id}']")
    expect(banner).to_contain_text("2 intentos fallidos seguidos")
    expect(page.locator(f"tr[data-delivery='{delivery_id}']")).to_contain_text("503")
    shoot(page, "admin-webhooks")
    _no_sideways_scroll(page)

    page.get_by_label("URL que recibe los eventos").fill("ftp://shop.example/hooks")
    page.get_by_role("button", name="Añadir endpoint").click()
    expect(page.get_by_role("alert").filter(has_text="Escribe una URL absoluta")).to_be_visible()
    expect(page.get_by_label("URL que recibe los eventos")).to_have_value(
        "ftp://shop.example/hooks"
    )
    _no_sideways_scroll(page)
    page.get_by_label("URL que recibe los eventos").fill("https://shop.example/hooks")
    page.get_by_label("Tipos de evento, separados por comas (* para todos)").fill("tier.changed")
    page.get_by_role("button", name="Añadir endpoint").click()
    secret = page.locator("#webhook-secret")
    expect(secret).to_have_value(re.compile(r"^whsec_[A-Za-z0-9_-]{43}$"))
    _no_sideways_scroll(page)
    page.get_by_role("link", name="Hecho, volver al endpoint").click()
    expect(page.get_by_role("heading", name="https://shop.example/hooks")).to_be_visible()

    page.goto(f"{live_server.url}/admin/webhooks/{endpoint_id}")
    expect(page.locator(f"[data-webhook-disabled='{endpoint_id}']")).to_be_visible()
    _no_sideways_scroll(page)
    shoot(page, "admin-webhook")
    page.get_by_role("button", name="Activar", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(f"Endpoint {endpoint_id} activado.")
    page.locator(f"tr[data-delivery='{delivery_id}']").get_by_role(
        "button", name=f"Reenviar #{delivery_id}"
    ).click()
    expect(page.get_by_role("status")).to_contain_text(
        f"La entrega {delivery_id} se enviará de nuevo ahora."
    )
    expect(page.locator(f"tr[data-delivery='{delivery_id}']")).to_have_attribute(
        "data-status", "pending"
    )
