"""The browser harness itself: real Chromium reaches the real server and renders a page."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser.conftest import LiveServer


def test_chromium_renders_the_api_docs(live_server: LiveServer, page: Page) -> None:
    page.goto(f"{live_server.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    page.get_by_text("/v1/events", exact=True).first.wait_for()
    assert "Lealta" in page.title()


def test_the_stylesheet_is_served(live_server: LiveServer, page: Page) -> None:
    response = page.goto(f"{live_server.url}/static/lealta.css")
    assert response is not None and response.status == 200
    assert "--brand" in response.text()
