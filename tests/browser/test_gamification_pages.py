"""Ways to earn, badges and challenges, and the leaderboard in real Chromium at phone width
(390 px), in Spanish and in English, including a refused display name. Saves
``docs/cockpit-earn.png`` and ``docs/cockpit-badges.png`` for the README."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from lealta.gamification import maths, service
from lealta.ledger import operations as ledger_ops
from lealta.models import ChallengeProgress, Member, MemberBadge, StreakState
from lealta.programme import service as programmes
from tests.browser.conftest import PHONE, LiveServer, readme_shot, shoot, sign_in_member
from tests.factories import add_member
from tests.test_rewards import DEMO


def _seed(live_server: LiveServer) -> None:
    now = datetime.now(UTC)
    db = live_server.db
    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=now - timedelta(days=1))
    people = {"sara": "es", "sam": "en", "rivals1": "es", "rivals2": "es"}
    ids = {}
    for external_id, language in people.items():
        ids[external_id] = add_member(db, external_id, f"{external_id}@example.com")
        with db.unit_of_work() as session:
            member = session.get(Member, ids[external_id])
            assert member is not None
            member.language = language
    month = maths.month_index(now, "Europe/Madrid")
    period = maths.period_key("month", now, "Europe/Madrid")
    with db.unit_of_work() as session:
        for who in ("sara", "sam"):
            session.add(
                MemberBadge(
                    member_id=ids[who], badge_id="first-order", points=0,
                    ledger_entry_id=None, backfill=False, awarded_at=now,
                )
            )  # fmt: skip
            session.add(
                ChallengeProgress(
                    member_id=ids[who], challenge_id="three-orders-month", period=period,
                    value=2, target=3, completed_at=None, points=0, ledger_entry_id=None,
                    coupon_id=None, updated_at=now,
                )
            )  # fmt: skip
            session.add(
                StreakState(
                    member_id=ids[who], streak_id="monthly-orders", started_month=month - 1,
                    last_month=month, length=2, best=2, updated_at=now,
                )
            )  # fmt: skip
        for who, points in (("rivals1", 300), ("rivals2", 120), ("sara", 120)):
            ledger_ops.award(
                session, who, points=points, reason="Challenge", actor="test",
                source_type="challenge", source_ref="x", now=now, programme=DEMO,
            )  # fmt: skip
        for who, name in (("rivals1", "Rayo"), ("rivals2", "Brisa")):
            member = session.get(Member, ids[who])
            assert member is not None
            service.set_leaderboard(session, member, display_name=name, join=True, now=now)


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width


def _save(page: Page, name: str) -> None:
    readme_shot(page, name)


def test_earn_badges_and_leaderboard_in_spanish_at_phone_width(
    live_server: LiveServer, page: Page
) -> None:
    _seed(live_server)
    page.set_viewport_size(PHONE)
    sign_in_member(live_server, page, "sara@example.com")
    page.goto(f"{live_server.url}/me/earn")
    expect(page.get_by_role("heading", name="Formas de ganar", exact=True)).to_be_visible()
    expect(page.get_by_text("Escribe una opinión de producto")).to_be_visible()
    expect(page.get_by_text("3 compras este mes").first).to_be_visible()
    expect(page.get_by_text("12 meses seguidos")).to_be_visible()
    expect(page.get_by_role("heading", name="Invita a tus amigos")).to_be_visible()
    expect(page.get_by_role("link", name="Consigue tu enlace de invitación")).to_be_visible()
    _no_sideways_scroll(page)
    _save(page, "cockpit-earn.png")

    page.get_by_role("link", name="Insignias y retos").click()
    expect(page.get_by_role("heading", name="Insignias y retos", exact=True)).to_be_visible()
    bar = page.get_by_role("progressbar", name="3 compras este mes")
    expect(bar).to_have_attribute("aria-valuenow", "66")
    expect(page.get_by_text("2 de 3")).to_be_visible()
    expect(page.get_by_text("Racha actual: 2 meses")).to_be_visible()
    expect(page.get_by_text("Primera compra", exact=True)).to_be_visible()
    expect(page.get_by_text("Bloqueada").first).to_be_visible()
    _no_sideways_scroll(page)
    _save(page, "cockpit-badges.png")

    page.get_by_role("link", name="Clasificación").click()
    rows = page.locator("table.leaderboard tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Rayo")
    page.get_by_label("Nombre para mostrar").fill("sara@example.com")
    page.get_by_label("Aparecer en la clasificación").check()
    page.get_by_role("button", name="Guardar").click()
    expect(page.get_by_role("alert")).to_contain_text("No uses una dirección de e-mail")
    _no_sideways_scroll(page)
    page.get_by_label("Nombre para mostrar").fill("brisa")
    page.get_by_role("button", name="Guardar").click()
    expect(page.get_by_role("alert")).to_contain_text("Otro miembro ya usa este nombre")
    page.get_by_label("Nombre para mostrar").fill("Sara S.")
    page.get_by_role("button", name="Guardar").click()
    expect(page.get_by_text("Se han guardado tus preferencias")).to_be_visible()
    expect(rows).to_have_count(3)
    # Brisa and Sara tie on 120 points: both second.
    expect(page.locator("tr.me")).to_contain_text("2")
    expect(page.locator("tr.me")).to_contain_text("Sara S.")
    _no_sideways_scroll(page)
    shoot(page, "cockpit-leaderboard")


def test_the_same_pages_in_english(live_server: LiveServer, page: Page) -> None:
    _seed(live_server)
    page.set_viewport_size(PHONE)
    sign_in_member(live_server, page, "sam@example.com")
    page.goto(f"{live_server.url}/me/earn")
    expect(page.get_by_role("heading", name="Ways to earn", exact=True)).to_be_visible()
    expect(page.get_by_text("Leave a product review")).to_be_visible()
    _no_sideways_scroll(page)
    page.goto(f"{live_server.url}/me/badges")
    expect(page.get_by_text("Current streak: 2 months")).to_be_visible()
    expect(page.get_by_text("First order", exact=True)).to_be_visible()
    _no_sideways_scroll(page)
    page.goto(f"{live_server.url}/me/leaderboard")
    expect(page.get_by_role("heading", name="Leaderboard", exact=True)).to_be_visible()
    expect(page.get_by_text("Rayo")).to_be_visible()
    _no_sideways_scroll(page)
