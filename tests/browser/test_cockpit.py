"""The member cockpit in real Chromium: sign in with the emailed link, see the tier progress,
redeem a reward and find the coupon's QR code in the wallet."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from lealta.events import service as events
from lealta.events.schemas import EventIn
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.programme import service as programmes
from tests.browser.conftest import LiveServer, Mailbox, shoot
from tests.factories import order_paid
from tests.test_rewards import DEMO

LINK = re.compile(r"https?://\S+/me/login/[A-Za-z0-9_-]+")


def _member_with_history(live_server: LiveServer) -> None:
    """María, with three orders over the last weeks (1.600 € spent: Plata, 1.900 points)."""
    now = datetime.now(UTC)
    with live_server.db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=now - timedelta(days=120))
    with live_server.db.unit_of_work() as session:
        members.create(
            session,
            MemberCreate(
                external_id="maria-1",
                email="maria@example.com",
                name="María García",
                timezone="Europe/Madrid",
            ),
            now=now - timedelta(days=90),
        )
    for i, (days, total) in enumerate(((75, "420.00"), (40, "880.00"), (6, "300.00"))):
        with live_server.db.unit_of_work() as session:
            ctx = events.IngestContext(
                programme=programmes.current(session, now=now), now=now, actor="test"
            )
            event = EventIn.model_validate(
                order_paid(f"evt-{i}", "maria-1", f"ORD-{i}", total, now - timedelta(days=days))
            )
            events.ingest(session, event, ctx, key=None)


def test_member_signs_in_by_email_and_redeems_a_reward(live_server: LiveServer, page: Page) -> None:
    _member_with_history(live_server)

    page.goto(f"{live_server.url}/me")
    expect(page).to_have_url(re.compile(r"/me/login"))
    expect(page.get_by_role("heading", name="Tu espacio de fidelización")).to_be_visible()
    shoot(page, "cockpit-login")
    page.get_by_label("Correo electrónico").fill("maria@example.com")
    page.get_by_role("button", name="Enviarme un enlace de acceso").click()
    expect(page.get_by_role("heading", name="Revisa tu correo")).to_be_visible()

    message = live_server.mailbox.wait_for("maria@example.com")
    body = Mailbox.text(message)
    assert "Hola María García" in body
    found = LINK.search(body)
    assert found, body
    page.goto(found.group(0))
    page.get_by_role("button", name="Iniciar sesión").click()

    expect(page.get_by_role("heading", name="Hola, María García")).to_be_visible()
    expect(page.get_by_role("heading", name="Tu nivel: Plata")).to_be_visible()
    bar = page.get_by_role("progressbar", name="Progreso hacia Oro")
    expect(bar).to_be_visible()
    assert bar.get_attribute("aria-valuenow") == "32.0"
    expect(page.get_by_text("Te faltan 3.400,00 € para llegar a Oro")).to_be_visible()
    expect(page.get_by_text("10 % de descuento en todas tus compras")).to_be_visible()
    shoot(page, "cockpit-dashboard")

    page.get_by_role("navigation", name="Principal").get_by_role("link", name="Recompensas").click()
    expect(page.get_by_role("heading", name="Recompensas", exact=True)).to_be_visible()
    expect(page.get_by_text("Solo para socios de nivel Oro / Platino.")).to_be_visible()
    shoot(page, "cockpit-rewards")
    page.get_by_role("link", name="Canjear 5 € de descuento").click()
    page.get_by_role("button", name="Confirmar: canjear por 500 puntos").click()

    expect(page.get_by_text("¡Hecho! Tu recompensa ya está en tus cupones.")).to_be_visible()
    coupon = page.locator("li.coupon", has_text="5 € de descuento")
    expect(coupon).to_have_count(1)
    qr = coupon.get_by_role("img", name=re.compile("Código QR del cupón LEA-"))
    expect(qr).to_be_visible()
    # Visible is not loaded: on a busy machine the image may still be on its way.
    image = qr.element_handle()
    page.wait_for_function("img => img.complete", arg=image)
    assert page.evaluate("img => img.naturalWidth > 0", image), "the QR image did not load"
    shoot(page, "cockpit-wallet")

    page.get_by_role("link", name="Perfil").click()
    expect(page.get_by_role("heading", name="Tu perfil")).to_be_visible()
    shoot(page, "cockpit-profile")
    page.get_by_role("combobox", name="Idioma").select_option("en")
    page.get_by_role("button", name="Guardar").click()
    expect(page.get_by_text("Your profile was saved.")).to_be_visible()
