"""Referrals in real Chromium at phone width (390 px): a member's ``/me/referrals`` in
Spanish and English (link, QR code, friends with masked names and their status), the
friend's landing page ``/r/<code>`` in both languages without any cookie, and the console's
review queue. The phone screenshot of the cockpit page is saved to
``docs/cockpit-referrals.png`` for the README."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from playwright.sync_api import Page, expect
from sqlalchemy import select

from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import Member
from lealta.programme import service as programmes
from lealta.referrals import service
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, readme_shot, shoot, sign_in_member
from tests.test_referrals import _programme

PASSWORD = "correct horse battery"


def _setup(live_server: LiveServer) -> str:
    """Ana refers Beatriz (pending) and a look-alike of herself (flagged); returns her code."""
    now = datetime.now(UTC)
    db = live_server.db
    programme = _programme(on_self_referral="flag")
    with db.unit_of_work() as session:
        programmes.apply(session, programme, actor="test", now=now)
        staff_users.create_user(
            session, email="admin@shop.test", name="Ana Admin", role="admin",
            password=PASSWORD, now=now,
        )  # fmt: skip
        ana = members.create(
            session,
            MemberCreate(external_id="ana", email="ana@example.com", name="Ana García"),
            now=now,
        )
        code = service.code_for(session, ana.id, now=now)
    with db.unit_of_work() as session:
        for external_id, name, email in (
            ("bea", "Beatriz Soler", "bea@example.com"),
            ("carlos", "Carlos Ruiz Pérez", "carlos@example.com"),
            ("twin", "Ana Otra", "ana+shop@example.com"),
        ):
            friend = members.create(
                session, MemberCreate(external_id=external_id, email=email, name=name), now=now
            )
            service.claim(session, friend, code, channel="signup", now=now, programme=programme)
    return code


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], width


def test_the_referral_page_and_the_landing_page_at_phone_width_in_both_languages(
    live_server: LiveServer, page: Page
) -> None:
    code = _setup(live_server)
    page.set_viewport_size(PHONE)
    sign_in_member(live_server, page, "ana@example.com")
    page.goto(f"{live_server.url}/me/referrals?lang=es")
    expect(page.get_by_role("heading", name="Recomienda a un amigo", exact=True)).to_be_visible()
    expect(page.locator("[data-referral-link]")).to_have_value(f"{live_server.url}/r/{code}")
    expect(page.get_by_role("img", name="Código QR con tu enlace de recomendación")).to_be_visible()
    assert page.locator(".qr svg").count() == 1
    expect(page.get_by_role("rowheader", name="Beatriz S.")).to_be_visible()
    expect(page.get_by_role("rowheader", name="Carlos P.")).to_be_visible()
    expect(page.get_by_text("Beatriz Soler")).to_have_count(0)
    expect(page.locator("tr[data-friend-status=flagged]")).to_contain_text("En revisión")
    expect(page.locator("[data-kpi=invited]")).to_have_text("3")
    expect(page.get_by_role("link", name="Compartir por WhatsApp")).to_have_attribute(
        "href", re.compile(rf"^https://wa\.me/\?text=.*r/{code}$")
    )
    _no_sideways_scroll(page)
    readme_shot(page, "cockpit-referrals.png")
    shoot(page, "cockpit-referrals")

    page.goto(f"{live_server.url}/me/referrals?lang=en")
    expect(page.get_by_role("heading", name="Refer a friend", exact=True)).to_be_visible()
    expect(page.get_by_text("You earn 500 points for each friend")).to_be_visible()
    expect(page.locator("tr[data-friend-status=flagged]")).to_contain_text("Under review")
    _no_sideways_scroll(page)

    # The friend's page, in a fresh browser context: no cookie at all.
    friend = page.context.browser.new_context(viewport=PHONE, locale="es-ES")  # type: ignore[union-attr]
    landing = friend.new_page()
    landing.goto(f"{live_server.url}/r/{code.lower()}")
    expect(landing.get_by_role("heading", name="Un amigo te invita")).to_be_visible()
    expect(landing.locator("[data-referral-code]")).to_have_text(code)
    expect(landing.get_by_role("link", name="Regístrate")).to_have_attribute(
        "href", f"https://shop.example/join?ref={code}"
    )
    _no_sideways_scroll(landing)
    shoot(landing, "referral-landing")
    landing.goto(f"{live_server.url}/r/{code}?lang=en")
    expect(landing.get_by_role("heading", name="A friend invites you")).to_be_visible()
    _no_sideways_scroll(landing)
    landing.goto(f"{live_server.url}/r/NOPE2345")
    expect(landing.get_by_role("alert")).to_contain_text("no es válido")
    assert friend.cookies() == []
    friend.close()


def test_an_admin_rejects_a_flagged_referral_from_the_queue(
    live_server: LiveServer, page: Page
) -> None:
    _setup(live_server)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/admin/login?lang=es")
    page.fill("input[name=email]", "admin@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin**")
    page.goto(f"{live_server.url}/admin/referrals")
    expect(page.get_by_role("heading", name="Cola de revisión")).to_be_visible()
    expect(page.locator("[data-kpi=flagged]")).to_have_text("1")
    with live_server.db.unit_of_work(write=False) as session:
        twin = session.scalar(select(Member.id).where(Member.external_id == "twin"))
        referral = service.by_friend(session, twin or 0)
        assert referral is not None
        referral_id = referral.id
    row = page.locator(f"tr[data-referral='{referral_id}']")
    expect(row).to_contain_text("mismo correo")
    row.get_by_label("Motivo").fill("La misma persona")
    row.get_by_role("button", name="Rechazar").click()
    expect(page.get_by_text(f"Recomendación {referral_id} rechazada.")).to_be_visible()
    expect(page.get_by_text("Nada que revisar.")).to_be_visible()
    _no_sideways_scroll(page)
    page.set_viewport_size(DESKTOP)
    shoot(page, "admin-referrals")
