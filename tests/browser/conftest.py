"""Browser tests: the real server on loopback, real Chromium (Debian's, driven by Playwright),
and a real SMTP server (aiosmtpd) that catches the emails the pages send.

Screenshots of each main page, at phone and desktop widths, are saved under
``artifacts/screenshots/`` (the README's images come from there).
"""

from __future__ import annotations

import email
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, sync_playwright

from lealta.app import create_app
from lealta.config import Settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.members import login_links

CHROMIUM = os.environ.get("LEALTA_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[2] / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Mailbox:
    """Messages received by the loopback SMTP server, oldest first."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def wait_for(self, to: str, timeout: float = 10.0) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in reversed(self.messages):
                if to in str(message.get("To", "")):
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no email to {to} within {timeout}s")

    @staticmethod
    def text(message: Message) -> str:
        if message.is_multipart():
            for part in message.walk():
                if part.get_content_type() == "text/plain":
                    payload = part.get_payload(decode=True)
                    assert isinstance(payload, bytes)
                    return payload.decode()
        payload = message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode()


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


@dataclass
class LiveServer:
    url: str
    settings: Settings
    db: Database
    mailbox: Mailbox


@pytest.fixture
def live_server(db: Database, database_url: str, smtp: tuple[Mailbox, int]) -> Iterator[LiveServer]:
    mailbox, smtp_port = smtp
    port = free_port()
    settings = Settings(
        database_url=database_url,
        env="test",
        log_level="WARNING",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        public_url=f"http://127.0.0.1:{port}",
        secret_key="browser-test-secret",
    )
    app = create_app(settings, db=db, clock=SystemClock())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield LiveServer(f"http://127.0.0.1:{port}", settings, db, mailbox)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run 'make test' (it installs it).")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, locale="es-ES")
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


DOCS = Path(__file__).parents[2] / "docs"


def readme_shot(page: Page, name: str) -> None:
    """Save the current page, full length, as a README picture: into ``docs/`` when
    ``LEALTA_UPDATE_DOCS=1`` (``make docs-shots``), else beside the other screenshots, so a
    test run leaves the checkout as it was (and the two passes of ``make test``, side by
    side, never write the same file)."""
    folder = DOCS if os.environ.get("LEALTA_UPDATE_DOCS") == "1" else ARTIFACTS / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)


def shoot(page: Page, name: str) -> None:
    """Save the current page at phone and desktop widths (full page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size or DESKTOP
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(original)


def sign_in_member(live_server: LiveServer, page: Page, email: str) -> None:
    """Sign a member in to the cockpit through a fresh sign-in link (either language)."""
    with live_server.db.unit_of_work() as session:
        asked = login_links.request_link(
            session, email, client_ip="127.0.0.1", now=datetime.now(UTC), minutes=15
        )
    assert asked.token is not None
    page.goto(f"{live_server.url}/me/login/{asked.token}")
    page.get_by_role("button").filter(has_text="Iniciar sesión").or_(
        page.get_by_role("button").filter(has_text="Sign in")
    ).first.click()
    page.wait_for_url("**/me")
