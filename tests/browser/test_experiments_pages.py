"""A campaign's results page in real Chromium: a simulated experiment where one variant truly
converts better reads as a detectable lift, the other as no detectable difference; the chart
and the table fit a phone without sideways scrolling; Spanish at phone width, English at
desktop width; the CSV link downloads the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from playwright.sync_api import Page, expect

from lealta.experiments.assign import assign
from lealta.experiments.schema import Experiment
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import (
    CampaignRecipient,
    CampaignState,
    Coupon,
    CouponUse,
    Message,
    Order,
)
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot

PASSWORD = "correct horse battery"
CID = "points-reminder"
EXPERIMENT = {
    "holdout_percent": 20,
    "variants": [
        {"id": "coupon", "name": {"es": "Recordatorio con cupón", "en": "Reminder with coupon"}},
        {"id": "plain", "name": {"es": "Solo recordatorio", "en": "Reminder only"}},
    ],
    "conversion": {"days": 14},
}
RATES = {"holdout": 0.08, "coupon": 0.30, "plain": 0.09}


def _seed(live_server: LiveServer) -> None:
    now = datetime.now(UTC)
    launched = now - timedelta(days=30)
    rng = np.random.default_rng(42)
    exp = Experiment.model_validate(EXPERIMENT)
    with live_server.db.unit_of_work() as session:
        staff_users.create_user(
            session, email="marketer@shop.test", name="Marta", role="marketer",
            password=PASSWORD, now=now,
        )  # fmt: skip
        session.add(
            CampaignState(
                campaign_id=CID, source="api", status="completed", launched_at=launched,
                created_at=launched, updated_at=now, detail={},
                definition={
                    "id": CID, "name": {"es": "Recordatorio de puntos", "en": "Points reminder"},
                    "starts_at": launched.isoformat(), "experiment": EXPERIMENT,
                    "steps": [{"type": "send_message", "template": "points_earned"}],
                },
            )
        )  # fmt: skip
        for i in range(400):
            m = members.create(
                session, MemberCreate(external_id=f"c{i:04d}"), now=launched - timedelta(days=90),
                backfill=True,
            )  # fmt: skip
            arm = assign(CID, m.id, exp)
            reached = launched + timedelta(minutes=i)
            code = f"SPRING-{i:04d}" if arm == "coupon" else None
            message = None
            if arm != "holdout":
                message = Message(
                    member_id=m.id, template_key="points_earned", channel="inapp",
                    language="es", status="sent", effect_key=f"campaign:{CID}:{m.id}:0",
                    context={}, created_at=reached, updated_at=reached, due_at=reached,
                    sent_at=reached, read_at=reached if rng.random() < 0.4 else None,
                )  # fmt: skip
                session.add(message)
                session.flush()
            session.add(
                CampaignRecipient(
                    campaign_id=CID, member_id=m.id, arm=arm,
                    status="held_out" if arm == "holdout" else "sent", assigned_at=launched,
                    reached_at=reached, message_id=message.id if message else None,
                    clicked_at=reached if message and rng.random() < 0.1 else None,
                    detail={"coupon_code": code} if code else {},
                )
            )  # fmt: skip
            if arm != "holdout":
                ledger.credit(
                    session, ledger.lock_account(session, m.id), entry_type="adjust",
                    points=100, reason="campaign", occurred_at=reached, now=reached,
                    source=ledger.Source("campaign", f"campaign:{CID}:{m.id}"),
                )  # fmt: skip
            converted = rng.random() < RATES[arm]
            if converted:
                total = int(rng.integers(2000, 8000))
                session.add(
                    Order(
                        member_id=m.id, external_id=f"o{i}", total_minor=total, currency="EUR",
                        status="paid", occurred_at=reached + timedelta(days=2),
                        recorded_at=reached + timedelta(days=2),
                    )
                )  # fmt: skip
            if code:
                session.add(
                    coupon := Coupon(
                        code=code, member_id=m.id, reward_id="five-off", source="campaign",
                        currency="EUR", amount_off_minor=500, valid_from=launched,
                        valid_until=now, created_at=launched,
                    )
                )  # fmt: skip
                if converted:
                    session.flush()
                    session.add(
                        CouponUse(
                            coupon_id=coupon.id, order_ref=f"o{i}", discount_minor=500,
                            used_at=reached + timedelta(days=2),
                        )
                    )  # fmt: skip


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], width


def test_results_page_reads_the_lift_in_both_languages(live_server: LiveServer, page: Page) -> None:
    _seed(live_server)
    base = live_server.url
    page.set_viewport_size(PHONE)
    page.goto(f"{base}/admin/login?lang=es")
    page.fill("input[name=email]", "marketer@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{base}/admin**")

    page.goto(f"{base}/admin/campaigns/{CID}/results")
    expect(page.get_by_role("heading", level=1)).to_have_text("Resultados: Recordatorio de puntos")
    better = page.locator("[data-verdict][data-kind=better]")
    expect(better).to_have_count(1)
    expect(better).to_contain_text("Recordatorio con cupón convierte")
    expect(better).to_contain_text("puntos más que el grupo de control (IC 95")
    same = page.locator("[data-verdict][data-kind=same]")
    expect(same).to_contain_text("Solo recordatorio: sin diferencia detectable")
    expect(page.locator("#window")).to_contain_text("estas cifras son definitivas")
    chart = page.locator("svg[data-chart=conversion]")
    expect(chart).to_be_visible()
    expect(chart.locator("[data-whisker]")).to_have_count(3)
    table = page.locator("table.results")
    expect(table.locator("thead th")).to_have_text(
        ["Cifra", "Grupo de control", "Recordatorio con cupón", "Solo recordatorio"]
    )
    expect(table).to_contain_text("Tasa de conversión")
    expect(table).to_contain_text("Coste de los cupones")
    _no_sideways_scroll(page)
    shoot(page, "experiment-results-es")

    with page.expect_download() as download:
        page.locator("a[data-csv]").click()
    lines = download.value.path().read_text().splitlines()
    assert lines[0].startswith("arm,holdout,audience,reached")
    assert [line.split(",")[0] for line in lines[1:]] == ["holdout", "coupon", "plain"]

    page.set_viewport_size(DESKTOP)
    page.goto(f"{base}/admin/campaigns/{CID}/results?lang=en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Results: Points reminder")
    expect(page.locator("[data-verdict][data-kind=better]")).to_contain_text(
        "Reminder with coupon converts"
    )
    expect(page.locator("[data-verdict][data-kind=better]")).to_contain_text(
        "points better than the holdout (95% CI"
    )
    expect(page.locator("[data-verdict][data-kind=same]")).to_contain_text(
        "Reminder only: no detectable difference"
    )
    _no_sideways_scroll(page)
    shoot(page, "experiment-results-en")

    page.goto(f"{base}/admin/campaigns/missing/results?lang=es")
    expect(page.get_by_role("alert")).to_contain_text("No hay ninguna campaña con este")
    expect(page.get_by_role("alert")).to_contain_text("campaign_not_found")
