"""Notifications in real Chromium: the cockpit inbox with its unread badge and mark-read
buttons, and the console's templates page (a template error, a fix, a preview with a chosen
member), in Spanish and English, at phone and desktop widths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect
from sqlalchemy import select

from lealta.demo.programme import DEMO_PROGRAMME_TEXT
from lealta.kit.db import Database
from lealta.members import login_links
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import Message
from lealta.notify import service
from lealta.programme import service as programmes
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot

PASSWORD = "correct horse battery"


def _seed(live_server: LiveServer) -> None:
    now = datetime.now(UTC)
    db: Database = live_server.db
    with db.unit_of_work() as session:
        document = programmes.parse_text(DEMO_PROGRAMME_TEXT)
        programmes.apply(
            session, programmes.validate(document), actor="test", now=now - timedelta(days=30)
        )
        staff_users.create_user(
            session, email="admin@shop.test", name="Ana Admin", role="admin",
            password=PASSWORD, now=now,
        )  # fmt: skip
        member = members.create(
            session,
            MemberCreate(
                external_id="maria-1", email="maria@example.com", name="María García",
                language="es", timezone="Europe/Madrid",
            ),
            now=now - timedelta(days=3),
        )  # fmt: skip
        for n, key in enumerate(("points_earned", "tier_changed")):
            service.send_template(
                session, member.id, key, "inapp", {"points": 1500, "tier": {"name": "Oro"}},
                f"seed:{n}", now,
            )  # fmt: skip
    with db.unit_of_work(write=False) as session:
        ids = list(session.scalars(select(Message.id).order_by(Message.id)))
    for message_id in ids:
        assert service.deliver(db, live_server.settings, message_id, now=now) == "sent"


def _no_sideways_scroll(page: Page) -> None:
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    page.set_viewport_size(DESKTOP)


def test_a_member_reads_the_inbox_and_the_badge_counts_down(
    live_server: LiveServer, page: Page
) -> None:
    _seed(live_server)
    with live_server.db.unit_of_work() as session:
        asked = login_links.request_link(
            session, "maria@example.com", client_ip="127.0.0.1", now=datetime.now(UTC), minutes=15
        )
    assert asked.token is not None
    page.goto(f"{live_server.url}/me/login/{asked.token}")
    page.get_by_role("button", name="Iniciar sesión").click()
    nav = page.get_by_role("navigation", name="Principal")
    expect(nav.locator("[data-unread-badge]")).to_have_text("2")
    nav.get_by_role("link", name="Buzón").click()
    expect(page.get_by_role("heading", name="Buzón", exact=True)).to_be_visible()
    expect(page.get_by_text("Has ganado 1.500 puntos. Saldo: 0.")).to_be_visible()
    expect(page.locator("li[data-unread='1']")).to_have_count(2)
    shoot(page, "cockpit-inbox")
    _no_sideways_scroll(page)

    page.locator("li[data-unread='1']").first.get_by_role(
        "button", name="Marcar como leído"
    ).click()
    expect(page.get_by_role("status")).to_contain_text("Marcado como leído.")
    expect(nav.locator("[data-unread-badge]")).to_have_text("1")
    page.get_by_role("button", name="Marcar todo como leído").click()
    expect(page.get_by_role("status")).to_contain_text("Todos los mensajes marcados como leídos.")
    expect(nav.locator("[data-unread-badge]")).to_have_count(0)
    expect(page.get_by_text("Lo has leído todo.")).to_be_visible()

    page.goto(f"{live_server.url}/me/inbox?lang=en")
    expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
    expect(page.get_by_text("You have read everything.")).to_be_visible()
    _no_sideways_scroll(page)


def test_an_admin_fixes_a_template_and_previews_it_for_a_member(
    live_server: LiveServer, page: Page
) -> None:
    _seed(live_server)
    page.goto(f"{live_server.url}/admin/login")
    page.fill("input[name=email]", "admin@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin**")

    page.get_by_role("link", name="Plantillas", exact=True).click()
    expect(page.get_by_role("heading", name="Plantillas de mensajes")).to_be_visible()
    shoot(page, "admin-templates")
    _no_sideways_scroll(page)
    page.locator("tr[data-template='points_earned/email/es'] a").click()
    expect(page.get_by_text("Incluida con Lealta: al guardar la sustituyes.")).to_be_visible()

    page.get_by_label("Asunto").fill("{{ points")
    page.get_by_label("Texto").fill("Hola {{ member.name }}, tienes {{ balance|number }} puntos.")
    page.get_by_role("button", name="Guardar plantilla").click()
    expect(page.get_by_role("alert")).to_contain_text("La plantilla tiene un error: subject")
    expect(page.get_by_label("Texto")).to_have_value(
        "Hola {{ member.name }}, tienes {{ balance|number }} puntos."
    )
    _no_sideways_scroll(page)

    page.get_by_label("Asunto").fill("{{ member.name }}: {{ points|number }} puntos")
    page.get_by_role("button", name="Guardar plantilla").click()
    expect(page.get_by_role("status")).to_contain_text("Plantilla guardada.")
    page.get_by_label("Socio (id de cliente)").fill("maria-1")
    page.get_by_role("button", name="Vista previa", exact=True).click()
    expect(page.locator("[data-preview-text]")).to_contain_text(
        "Hola María García, tienes 0 puntos."
    )
    expect(page.locator("[data-preview-subject]")).to_have_text("María García: 100 puntos")
    shoot(page, "admin-template-edit")
    _no_sideways_scroll(page)

    page.goto(f"{live_server.url}/admin/templates?lang=en")
    expect(page.get_by_role("heading", name="Message templates")).to_be_visible()
    expect(page.locator("tr[data-template='points_earned/email/es']")).to_contain_text("edited")
