"""The console in real Chromium: sign in, find a member, adjust points, switch language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from lealta.events.schemas import EventIn
from lealta.events.service import IngestContext, ingest
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.programme import service as programmes
from lealta.staff import service as staff_users
from tests.browser.conftest import LiveServer, shoot
from tests.factories import order_paid
from tests.test_admin_core import DEMO

PASSWORD = "correct horse battery"


@pytest.fixture
def console(live_server: LiveServer) -> LiveServer:
    now = datetime.now(UTC)
    db = live_server.db
    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=now - timedelta(days=60))
    with db.unit_of_work() as session:
        staff_users.create_user(
            session,
            email="admin@example.com",
            name="Admin",
            role="admin",
            password=PASSWORD,
            now=now,
        )
        for i, name in enumerate(["María García", "Jordi Puig", "Ana López", "Lucía Martín"]):
            members.create(
                session,
                MemberCreate(
                    external_id=f"cust-{i + 1}",
                    name=name,
                    email=f"c{i + 1}@example.com",
                ),
                now=now - timedelta(days=200),
            )
    with db.unit_of_work() as session:
        ctx = IngestContext(programme=programmes.current(session, now=now), now=now, actor="test")
        for n, (customer, total, days) in enumerate(
            [("cust-1", "3000.00", 120), ("cust-1", "450.00", 20), ("cust-2", "80.00", 5)]
        ):
            event = order_paid(f"e-{n}", customer, f"ord-{n}", total, now - timedelta(days=days))
            ingest(session, EventIn.model_validate(event), ctx, key=None)
    return live_server


def sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/admin")
    expect(page).to_have_url(f"{url}/admin/login?next=/admin")
    page.get_by_label("Correo electrónico").fill("admin@example.com")
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Iniciar sesión").click()
    expect(page.get_by_role("heading", name="Resumen")).to_be_visible()


def test_admin_finds_a_member_and_adjusts_points(console: LiveServer, page: Page) -> None:
    url = console.url
    page.goto(f"{url}/admin/login")
    shoot(page, "admin-login")
    sign_in(page, url)
    expect(page.locator('[data-kpi="members"]')).to_have_text("4")
    shoot(page, "admin-overview")

    page.get_by_role("link", name="Miembros", exact=True).first.click()
    page.get_by_label("Buscar por ID externo, correo, nombre o código de cupón").fill("garcía")
    page.get_by_role("button", name="Buscar").click()
    expect(page.get_by_role("link", name="cust-1")).to_be_visible()
    expect(page.get_by_role("link", name="cust-2")).to_have_count(0)
    page.goto(f"{url}/admin/members")
    shoot(page, "admin-members")

    page.get_by_role("link", name="cust-1").click()
    expect(page.get_by_role("heading", name="María García")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_label("Puntos (negativos para restar)").fill("-200")
    page.get_by_label("Motivo (obligatorio, queda en el registro de auditoría)").fill(
        "Devolución parcial acordada"
    )
    page.get_by_role("button", name="Registrar ajuste").click()
    expect(page.get_by_role("status")).to_contain_text("Ajuste de -200 puntos registrado")
    ledger = page.locator("#ledger tbody tr").first
    expect(ledger).to_contain_text("Devolución parcial acordada")
    expect(ledger).to_contain_text("-200")
    expect(ledger).to_contain_text("admin:admin@example.com")
    shoot(page, "admin-member")

    # Without a reason the browser's own check stops the form; the server check is the
    # backstop (covered in tests/test_admin_core.py).
    page.get_by_label("Puntos (negativos para restar)").fill("10")
    page.get_by_role("button", name="Registrar ajuste").click()
    expect(page.locator("#ledger tbody tr")).to_have_count(3)


def test_language_switch_to_english(console: LiveServer, page: Page) -> None:
    sign_in(page, console.url)
    page.get_by_role("link", name="EN", exact=True).click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text("Tier distribution")).to_be_visible()
    page.goto(f"{console.url}/admin/members/cust-1")
    expect(page.get_by_role("heading", name="Adjust points")).to_be_visible()
    expect(page.get_by_role("heading", name="Ledger")).to_be_visible()
    page.get_by_role("link", name="ES", exact=True).click()
    expect(page.get_by_role("heading", name="Ajustar puntos")).to_be_visible()
