"""Surveys in real Chromium: a member answers from the signed link of an e-mail (a problem
first, then thanks with the points), in Spanish at phone width and in English at desktop
width; an admin reads the NPS on the console."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from playwright.sync_api import Page, expect

from lealta.models import Member
from lealta.programme import service as programmes
from lealta.staff import service as staff_users
from lealta.surveys import service as surveys
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot
from tests.factories import add_member
from tests.test_rewards import DEMO
from tests.test_surveys_maths import DEFINITION

PASSWORD = "correct horse battery"


def _links(live_server: LiveServer) -> dict[str, str]:
    now = datetime.now(UTC)
    db = live_server.db
    links = {}
    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=now)
        survey = surveys.create(
            session, surveys.parse(json.dumps(DEFINITION)), actor="test", now=now
        )
        staff_users.create_user(
            session, email="admin@shop.test", name="Ana Admin", role="admin",
            password=PASSWORD, now=now,
        )  # fmt: skip
    for external_id, language in (("lucia", "es"), ("liam", "en")):
        member_id = add_member(db, external_id, f"{external_id}@example.com")
        with db.unit_of_work() as session:
            member = session.get(Member, member_id)
            assert member is not None
            member.language = language
            token = surveys.link_token(live_server.settings.secret_key, survey, member)
        links[external_id] = f"{live_server.url}/s/{token}"
    return links


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], width


def test_members_answer_from_their_link_and_the_admin_reads_the_nps(
    live_server: LiveServer, page: Page
) -> None:
    links = _links(live_server)

    page.set_viewport_size(PHONE)
    page.goto(links["lucia"])
    expect(page.get_by_role("heading", name="Satisfacción")).to_be_visible()
    page.get_by_role("group", name="¿Nos recomendarías?").get_by_label("10").check()
    page.get_by_role("button", name="Enviar mis respuestas").click()
    expect(page.get_by_role("alert").first).to_contain_text("Faltan respuestas")
    expect(page.locator("#err_delivery")).to_have_text("Esta pregunta necesita una respuesta.")
    _no_sideways_scroll(page)
    shoot(page, "survey-link-error")
    expect(page.get_by_role("group", name="¿Nos recomendarías?").get_by_label("10")).to_be_checked()
    page.get_by_role("group", name="Entrega").get_by_label("4").check()
    page.get_by_role("group", name="Canal").get_by_label("Tienda").check()
    page.get_by_role("button", name="Enviar mis respuestas").click()
    expect(page.get_by_text("Has ganado 50 puntos")).to_be_visible()
    _no_sideways_scroll(page)

    page.set_viewport_size(DESKTOP)
    page.goto(links["liam"])
    expect(page.get_by_role("heading", name="Satisfaction")).to_be_visible()
    page.get_by_role("group", name="Would you recommend us?").get_by_label("3").check()
    page.get_by_role("group", name="Delivery").get_by_label("2").check()
    page.get_by_role("group", name="Channel").get_by_label("Web").check()
    page.get_by_label("Comments").fill("Slow delivery")
    shoot(page, "survey-link")
    page.get_by_role("button", name="Send my answers").click()
    expect(page.get_by_text("You have earned 50 points")).to_be_visible()

    page.goto(f"{live_server.url}/admin/login?lang=es")
    page.fill("input[name=email]", "admin@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin**")
    page.get_by_role("link", name="Encuestas", exact=True).click()
    page.get_by_role("link", name="Satisfacción").click()
    page.wait_for_url("**/admin/surveys/satisfaction")
    # One promoter (10) and one detractor (3) of two: 50 % - 50 % = 0.
    expect(page.locator("[data-kpi=nps]")).to_have_text("0")
    expect(page.get_by_text("Slow delivery")).to_be_visible()
    shoot(page, "admin-survey")
    page.set_viewport_size(PHONE)
    _no_sideways_scroll(page)
