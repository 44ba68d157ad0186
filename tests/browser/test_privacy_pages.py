"""GDPR in real Chromium: a member asks for erasure in the cockpit and confirms it from the
emailed link; a console admin erases a member after a mistyped confirmation. Spanish and
English, phone and desktop widths."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect
from sqlalchemy import select

from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import Member, MemberErasure
from lealta.programme import service as programmes
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, Mailbox, shoot
from tests.test_rewards import DEMO

PASSWORD = "correct horse battery"
SIGN_IN = re.compile(r"https?://\S+/me/login/[A-Za-z0-9_-]+")
ERASE = re.compile(r"https?://\S+/me/privacy/erase/[A-Za-z0-9_.-]+")


def _setup(live_server: LiveServer) -> None:
    now = datetime.now(UTC)
    with live_server.db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=now - timedelta(days=60))
        staff_users.create_user(
            session,
            email="admin@example.com",
            name="Admin",
            role="admin",
            password=PASSWORD,
            now=now,
        )
        for external_id, name, address in (
            ("cust-elena", "Elena Ruiz", "elena@example.com"),
            ("cust-hugo", "Hugo Vidal", "hugo@example.com"),
        ):
            members.create(
                session,
                MemberCreate(external_id=external_id, name=name, email=address),
                now=now - timedelta(days=30),
            )


def _fits(page: Page) -> None:
    """Nothing wider than the viewport (no sideways scrolling of the page)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= (page.viewport_size or DESKTOP)["width"] + 1


def _erased(live_server: LiveServer) -> list[MemberErasure]:
    with live_server.db.unit_of_work(write=False) as session:
        return list(session.scalars(select(MemberErasure)))


def test_member_requests_erasure_and_confirms_it_by_email(
    live_server: LiveServer, page: Page
) -> None:
    _setup(live_server)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/me/login")
    page.get_by_label("Correo electrónico").fill("elena@example.com")
    page.get_by_role("button", name="Enviarme un enlace de acceso").click()
    found = SIGN_IN.search(Mailbox.text(live_server.mailbox.wait_for("elena@example.com")))
    assert found
    page.goto(found.group(0))
    page.get_by_role("button", name="Iniciar sesión").click()

    page.goto(f"{live_server.url}/me/privacy")
    page.get_by_role("link", name="Qué guardamos y por qué").click()
    expect(page.get_by_role("heading", name="Qué guardamos y por qué")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Movimientos de puntos"))).to_be_visible()
    _fits(page)
    shoot(page, "cockpit-privacy-data")

    page.get_by_role("link", name="Borrar mis datos").last.click()
    expect(page.get_by_role("heading", name="Borrar mis datos")).to_be_visible()
    _fits(page)
    shoot(page, "cockpit-privacy-erase")
    page.get_by_role("button", name="Enviarme el enlace de confirmación").click()
    expect(page.get_by_text("Te hemos enviado un enlace de confirmación")).to_be_visible()
    assert _erased(live_server) == []

    message = live_server.mailbox.wait_for("elena@example.com")
    link = ERASE.search(Mailbox.text(message))
    assert link, Mailbox.text(message)
    # Confirmed in English, at desktop width.
    page.set_viewport_size(DESKTOP)
    page.goto(f"{link.group(0)}?lang=en")
    expect(page.get_by_role("heading", name="Confirm the erasure of your data")).to_be_visible()
    shoot(page, "cockpit-privacy-erase-confirm")
    page.get_by_role("button", name="Erase my data now").click()
    expect(page.get_by_role("heading", name="Your data was erased")).to_be_visible()
    [record] = _erased(live_server)
    assert record.channel == "cockpit"
    page.goto(f"{live_server.url}/me")
    expect(page).to_have_url(re.compile(r"/me/login"))
    page.goto(link.group(0))
    expect(page.get_by_text("This account was already erased.")).to_be_visible()


def test_admin_erases_a_member_after_a_mistyped_confirmation(
    live_server: LiveServer, page: Page
) -> None:
    _setup(live_server)
    url = live_server.url
    page.goto(f"{url}/admin")
    page.get_by_label("Correo electrónico").fill("admin@example.com")
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Iniciar sesión").click()
    expect(page.get_by_role("heading", name="Resumen")).to_be_visible()

    page.goto(f"{url}/admin/members/cust-hugo")
    expect(page.get_by_role("heading", name="Datos personales (RGPD)")).to_be_visible()
    page.get_by_role("link", name="Borrar datos personales…").click()
    expect(page.get_by_role("heading", name="Borrar miembro")).to_be_visible()
    field = page.get_by_label("Escribe el id externo cust-hugo para confirmar")
    field.fill("cust-hug")
    page.get_by_role("button", name="Borrar datos personales").click()
    expect(page.get_by_role("alert")).to_contain_text("Escribe exactamente el id externo")
    assert _erased(live_server) == []
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        _fits(page)
    shoot(page, "admin-member-erase-error")

    # The same form in English, after the error: switch language and confirm.
    page.goto(f"{url}/admin/members/cust-hugo/erase?lang=en")
    page.get_by_label("Type the external id cust-hugo to confirm").fill("cust-hugo")
    page.get_by_role("button", name="Erase personal data").click()
    expect(page.get_by_text("The member's personal data was erased.")).to_be_visible()
    [record] = _erased(live_server)
    expect(page).to_have_url(f"{url}/admin/members/{record.pseudonym}")
    with live_server.db.unit_of_work(write=False) as session:
        hugo = session.scalars(select(Member).where(Member.id == record.member_id)).one()
        assert hugo.email is None and hugo.name is None
        assert session.scalars(select(Member).where(Member.name == "Elena Ruiz")).one()
