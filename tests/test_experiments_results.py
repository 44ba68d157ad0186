"""Per-arm results of a campaign from stored rows (SQLite and PostgreSQL): every figure
against a hand count, the conversion window's edges, attribution of points and coupons, other
campaigns left out, recomputation identical, and the API (JSON, CSV, 404)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from lealta.campaigns.schema import Campaign
from lealta.config import Settings
from lealta.experiments import results
from lealta.experiments.assign import assign
from lealta.experiments.schema import Experiment
from lealta.experiments.schemas import results_out
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import (
    CampaignRecipient,
    CampaignState,
    Coupon,
    CouponUse,
    Event,
    Message,
    Order,
)
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks, visible_text

CID = "spring"
EXPERIMENT = {
    "holdout_percent": 20,
    "variants": [
        {"id": "a", "name": {"es": "Variante A", "en": "Variant A"}, "weight": 1},
        {"id": "b", "weight": 1, "steps": [{"type": "award_points", "points": 5}]},
    ],
    "conversion": {"days": 7},
    "confidence": 0.9,
}


def definition(cid: str, experiment: dict[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": cid,
        "name": {"es": "Primavera", "en": "Spring"},
        "starts_at": T0.isoformat(),
        "steps": [{"type": "send_message", "template": "points_earned", "channel": "inapp"}],
    }
    if experiment is not None:
        data["experiment"] = experiment
    return Campaign.model_validate(data).model_dump(mode="json", exclude_none=True)


@dataclass
class World:
    arms: dict[str, list[int]]
    reached_at: dict[int, datetime]


class Builder:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.n = 0

    def state(self, cid: str, experiment: dict[str, Any] | None) -> None:
        self.s.add(
            CampaignState(
                campaign_id=cid, source="api", definition=definition(cid, experiment),
                status="running", launched_at=T0, created_at=T0, updated_at=T0, detail={},
            )
        )  # fmt: skip

    def recipient(
        self, cid: str, member: int, arm: str, status: str, reached: datetime | None, **kw: Any
    ) -> None:
        self.s.add(
            CampaignRecipient(
                campaign_id=cid, member_id=member, arm=arm, status=status, assigned_at=T0,
                reached_at=reached, detail=kw.pop("detail", {}), **kw,
            )
        )  # fmt: skip

    def message(self, member: int, status: str = "sent", read: datetime | None = None) -> int:
        self.n += 1
        row = Message(
            member_id=member, template_key="points_earned", channel="inapp", language="es",
            status=status, effect_key=f"test:{self.n}", context={}, created_at=T0,
            updated_at=T0, due_at=T0, sent_at=T0 if status == "sent" else None, read_at=read,
        )  # fmt: skip
        self.s.add(row)
        self.s.flush()
        return row.id

    def order(
        self, member: int, total: int, at: datetime, refunded: int = 0, status: str = "paid"
    ) -> None:
        self.n += 1
        self.s.add(
            Order(
                member_id=member, external_id=f"o{self.n}", total_minor=total,
                refunded_minor=refunded, currency="EUR", status=status, occurred_at=at,
                recorded_at=at,
            )
        )  # fmt: skip

    def points(self, member: int, points: int, source: str, ref: str) -> None:
        account = ledger.lock_account(self.s, member)
        src = ledger.Source(source, ref)
        if points > 0:
            ledger.credit(
                self.s, account, entry_type="adjust", points=points, reason="campaign",
                source=src, occurred_at=T0, now=T0,
            )  # fmt: skip
        else:
            ledger.debit(
                self.s, account, entry_type="reverse", points=-points, reason="campaign",
                source=src, occurred_at=T0, now=T0,
            )  # fmt: skip

    def coupon(
        self, member: int, code: str, used: int | None, *, rolled_back: bool = False
    ) -> None:
        row = Coupon(
            code=code, member_id=member, reward_id="ten-off", source="campaign", currency="EUR",
            amount_off_minor=1000, valid_from=T0, valid_until=T0 + timedelta(days=30),
            created_at=T0,
        )  # fmt: skip
        self.s.add(row)
        self.s.flush()
        if used is not None:
            self.s.add(
                CouponUse(
                    coupon_id=row.id, order_ref=f"ref-{code}", discount_minor=used,
                    used_at=T0 + timedelta(days=1),
                    rolled_back_at=T0 + timedelta(days=2) if rolled_back else None,
                )
            )  # fmt: skip


def _members(db: Database, count: int) -> list[int]:
    ids = []
    with db.unit_of_work() as session:
        for i in range(count):
            m = members.create(
                session, MemberCreate(external_id=f"m{i:03d}"), now=T0 - timedelta(days=30),
                backfill=True,
            )  # fmt: skip
            ids.append(m.id)
    return ids


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    """30 members split by :func:`assign` into holdout / a / b, with a story per member."""
    ids = _members(db, 30)
    exp = Experiment.model_validate(EXPERIMENT)
    arms: dict[str, list[int]] = {"holdout": [], "a": [], "b": []}
    for m in ids:
        arms[assign(CID, m, exp)].append(m)
    assert all(len(v) >= 4 for v in arms.values()), {k: len(v) for k, v in arms.items()}
    reached: dict[int, datetime] = {}
    with db.unit_of_work() as session:
        b = Builder(session)
        b.state(CID, EXPERIMENT)
        b.state("other", None)
        for i, m in enumerate(ids):
            reached[m] = T0 + timedelta(minutes=i, microseconds=123456 * (i % 2))
        h, a, v = arms["holdout"], arms["a"], arms["b"]
        # Holdout: everyone held out and reached, except the last one still pending.
        for m in h[:-1]:
            b.recipient(CID, m, "holdout", "held_out", reached[m])
        b.recipient(CID, h[-1], "holdout", "pending", None)
        # Variant a: two delivered messages (one read, one clicked), a no-consent member, a
        # failed message, the others sent, the last one cancelled.
        for k, m in enumerate(a[:-1]):
            if k == 0:
                b.recipient(CID, m, "a", "sent", reached[m], message_id=b.message(m, read=T0),
                            detail={"coupon_code": "CAMP-A0"})  # fmt: skip
            elif k == 1:
                clicked = T0 + timedelta(hours=1)
                b.recipient(CID, m, "a", "sent", reached[m], message_id=b.message(m),
                            clicked_at=clicked, detail={"coupon_code": "CAMP-A1"})  # fmt: skip
            elif k == 2:
                b.recipient(CID, m, "a", "no_consent", reached[m], reason="no consent")
            elif k == 3:
                b.recipient(CID, m, "a", "failed", reached[m], message_id=b.message(m, "failed"))
            else:
                b.recipient(CID, m, "a", "sent", reached[m], message_id=b.message(m))
        b.recipient(CID, a[-1], "a", "cancelled", None)
        # Variant b: everyone sent; the first got a coupon they did not use.
        for k, m in enumerate(v):
            detail = {"coupon_code": "CAMP-B0"} if k == 0 else {}
            b.recipient(CID, m, "b", "sent", reached[m], message_id=b.message(m), detail=detail)
        # Another campaign over the same members: never mixed in.
        for m in ids[:10]:
            b.recipient("other", m, "control", "sent", T0, opened_at=T0)
        session.flush()

        day = timedelta(days=1)
        # Holdout: 50.00 with 10.00 refunded inside; one at the window's end (out); one
        # before being reached (out); the pending member's order (not reached: out).
        b.order(h[0], 5000, reached[h[0]] + day, refunded=1000, status="partially_refunded")
        b.order(h[1], 3000, reached[h[1]] + 7 * day)
        b.order(h[2], 2000, reached[h[2]] - timedelta(hours=1))
        b.order(h[-1], 7000, T0 + day)
        # a: two orders (the second 1 µs before the window closes); one fully refunded (no
        # conversion, no revenue); the no-consent member buys (intention to treat); the
        # cancelled member's order is not counted.
        b.order(a[0], 10000, reached[a[0]] + timedelta(hours=2))
        b.order(a[0], 2500, reached[a[0]] + 7 * day - timedelta(microseconds=1))
        b.order(a[1], 6000, reached[a[1]] + day, refunded=6000, status="refunded")
        b.order(a[2], 1500, reached[a[2]] + 3 * day)
        b.order(a[-1], 9900, T0 + day)
        # b: one order at the exact start of the window (in), one the next day.
        b.order(v[0], 8000, reached[v[0]] + day)
        b.order(v[1], 2000, reached[v[1]])

        # Points: a[0] +50, a[1] +50 then reversed, b[0] +50 (and +70 from another campaign,
        # +30 of a workflow quoting the same reference: neither counted).
        b.points(a[0], 50, "campaign", f"campaign:{CID}:{a[0]}")
        b.points(a[1], 50, "campaign", f"campaign:{CID}:{a[1]}")
        b.points(a[1], -50, "campaign", f"campaign:{CID}:{a[1]}")
        b.points(v[0], 50, "campaign", f"campaign:{CID}:{v[0]}")
        b.points(v[0], 70, "campaign", f"campaign:{CID}x:{v[0]}")
        b.points(v[0], 30, "workflow", f"campaign:{CID}:{v[0]}")
        # Coupons: a[0] used for 5.00; a[1] used then rolled back; b[0] unused.
        b.coupon(a[0], "CAMP-A0", 500)
        b.coupon(a[1], "CAMP-A1", 500, rolled_back=True)
        b.coupon(v[0], "CAMP-B0", None)
    yield World(arms, reached)


def _compute(db: Database) -> results.Results:
    with db.unit_of_work(write=False) as session:
        return results.compute(session, CID, currency="EUR", point_cost=Decimal("0.01"))


def test_every_figure_per_arm_matches_the_hand_count(db: Database, world: World) -> None:
    r = _compute(db)
    h, a, v = (world.arms[k] for k in ("holdout", "a", "b"))
    assert [x.arm for x in r.arms] == ["holdout", "a", "b"]
    assert (r.confidence, r.conversion_event, r.conversion_days) == (0.9, "order.paid", 7)
    hold, va, vb = r.arms
    assert hold.holdout and not va.holdout
    assert (hold.audience, hold.reached) == (len(h), len(h) - 1)
    assert hold.statuses == {"held_out": len(h) - 1, "pending": 1}
    assert (hold.delivered, hold.opened, hold.clicked) == (0, 0, 0)
    assert (hold.conversions, hold.buyers, hold.revenue_minor) == (1, 1, 4000)
    assert (hold.points, hold.coupon_uses, hold.coupon_cost_minor) == (0, 0, 0)

    assert (va.audience, va.reached) == (len(a), len(a) - 1)
    assert va.statuses == {
        "sent": len(a) - 3, "no_consent": 1, "failed": 1, "cancelled": 1,
    }  # fmt: skip
    assert va.delivered == len(a) - 3  # the failed message and no-consent: not delivered
    assert (va.opened, va.clicked, va.coupons_issued) == (1, 1, 2)
    assert (va.conversions, va.buyers) == (2, 3)  # the refunded buyer did not convert
    assert va.revenue_minor == 10000 + 2500 + 0 + 1500
    assert va.revenue_squares == 12500**2 + 1500**2
    assert va.points == 50 and va.points_cost_minor == Decimal("50.00")
    assert (va.coupon_uses, va.coupon_cost_minor) == (1, 500)

    assert (vb.audience, vb.reached, vb.delivered) == (len(v), len(v), len(v))
    assert (vb.conversions, vb.revenue_minor, vb.points, vb.coupons_issued) == (2, 10000, 50, 1)
    assert (vb.coupon_uses, vb.coupon_cost_minor) == (0, 0)

    # Rates and lift against the holdout at the experiment's 90 %.
    assert va.conversion_rate == pytest.approx(2 / (len(a) - 1))
    assert va.revenue_per_member_minor == pytest.approx(14000 / (len(a) - 1))
    lift = va.conversion_lift
    assert lift is not None and lift.value == pytest.approx(2 / (len(a) - 1) - 1 / (len(h) - 1))
    assert lift.low is not None and lift.high is not None and lift.low < lift.value < lift.high
    assert va.relative_lift == pytest.approx((2 / (len(a) - 1)) / (1 / (len(h) - 1)) - 1)
    money = va.revenue_lift
    assert money is not None and money.value == pytest.approx(
        14000 / (len(a) - 1) - 4000 / (len(h) - 1)
    )
    assert money.low is not None and money.low < money.value
    assert hold.conversion_lift is None and hold.revenue_lift is None
    assert r.window_closes_at == max(world.reached_at[m] for m in h[:-1] + a[:-1] + v) + (
        timedelta(days=7)
    )


def test_results_are_reproducible_and_other_campaigns_apart(db: Database, world: World) -> None:
    first = results_out(_compute(db), now=T0).model_dump()
    again = results_out(_compute(db), now=T0).model_dump()
    assert first == again
    with db.unit_of_work(write=False) as session:
        other = results.compute(session, "other", currency="EUR", point_cost=Decimal("0.01"))
    assert [a.arm for a in other.arms] == ["control"] and not other.experiment
    (control,) = other.arms
    assert (control.audience, control.reached, control.opened) == (10, 10, 10)
    assert control.delivered == 0  # recipients without a message
    assert control.conversion_lift is None and other.holdout is None


def test_other_conversion_events_are_counted_from_events(db: Database) -> None:
    ids = _members(db, 12)
    exp = {**EXPERIMENT, "conversion": {"event": "review.written", "days": 2}}
    parsed = Experiment.model_validate(exp)
    with db.unit_of_work() as session:
        b = Builder(session)
        b.state("reviews", exp)
        for m in ids:
            b.recipient("reviews", m, assign("reviews", m, parsed), "sent", T0)
        for k, (m, at) in enumerate(
            [(ids[0], T0 + timedelta(days=1)), (ids[0], T0 + timedelta(days=1, hours=1)),
             (ids[1], T0 + timedelta(days=2)), (ids[2], T0 - timedelta(seconds=1))]
        ):  # fmt: skip
            session.add(
                Event(
                    idempotency_key=f"e{k}", event_type="review.written", member_id=m,
                    payload={}, occurred_at=at, received_at=at,
                )
            )  # fmt: skip
        session.add(
            Event(
                idempotency_key="x", event_type="review.deleted", member_id=ids[3], payload={},
                occurred_at=T0, received_at=T0,
            )
        )  # fmt: skip
    with db.unit_of_work(write=False) as session:
        r = results.compute(session, "reviews", currency="EUR", point_cost=Decimal("0.01"))
    # Only ids[0] converts (twice in its window, counted once); ids[1] is at the window's
    # end, ids[2] before being reached, ids[3]'s event is another type.
    by_arm = {a.arm: a.conversions for a in r.arms}
    assert sum(by_arm.values()) == 1
    assert by_arm[assign("reviews", ids[0], parsed)] == 1


def test_api_json_csv_and_not_found(client: TestClient, world: World) -> None:
    r = client.get(f"/v1/campaigns/{CID}/results")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["currency"] == "EUR" and body["confidence"] == 0.9
    assert body["conversion"] == {"event": "order.paid", "days": 7}
    assert body["complete"] is False  # the test clock is T0: windows still open
    arms = {a["arm"]: a for a in body["arms"]}
    a = arms["a"]
    assert a["name"] == {"es": "Variante A", "en": "Variant A"}
    assert a["revenue"] == "140.00" and a["points_cost"] == "0.50" and a["coupon_cost"] == "5.00"
    assert a["conversions"] == 2 and a["coupons_used"] == 1
    assert arms["holdout"]["lift"] is None and arms["holdout"]["revenue"] == "40.00"
    lift = a["lift"]
    assert lift["conversion_rate"]["low"] < lift["conversion_rate"]["value"]
    assert lift["conversion_rate"]["detectable"] in (True, False)
    assert isinstance(lift["revenue_per_member"]["low"], str)

    csv_response = client.get(f"/v1/campaigns/{CID}/results", params={"format": "csv"})
    assert csv_response.status_code == 200
    assert csv_response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_response.text)))
    assert [row["arm"] for row in rows] == ["holdout", "a", "b"]
    assert rows[1]["revenue"] == "140.00" and rows[1]["conversions"] == "2"
    assert rows[0]["conversion_rate_diff"] == "" and rows[1]["conversion_rate_diff"] != ""

    missing = client.get("/v1/campaigns/nope/results")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "campaign_not_found"
    bad = client.get(f"/v1/campaigns/{CID}/results", params={"format": "xml"})
    assert bad.status_code == 422
    assert client.get("/v1/campaigns/NOT%20A%20SLUG/results").status_code == 422


def test_api_needs_a_key(client: TestClient, read_key: str, world: World) -> None:
    anonymous = client.get(f"/v1/campaigns/{CID}/results", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    reader = client.get(
        f"/v1/campaigns/{CID}/results", headers={"Authorization": f"Bearer {read_key}"}
    )
    assert reader.status_code == 200


# --- the console page (over HTTP; the browser test drives it in Chromium) -------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _console(site: Any, lang: str, role: str = "read_only") -> TestClient:
    client = TestClient(site, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set("lealta_lang", lang)
    token = CSRF.search(client.get("/admin/login").text)
    assert token
    signed = client.post(
        "/admin/login",
        data={"email": f"{role}@shop.test", "password": PASSWORD, "csrf_token": token[1]},
    )
    assert signed.status_code == 303, signed.text
    return client


@pytest.fixture
def site(db: Database, clock: FixedClock, settings: Settings, world: World) -> Any:
    with db.unit_of_work() as session:
        create_staff(session, ("read_only",), now=clock.now(), domain="shop.test")
    return app_for(settings, db=db, clock=clock)


def test_results_page_in_both_languages(site: Any, clock: FixedClock) -> None:
    es = _console(site, "es")
    page = es.get(f"/admin/campaigns/{CID}/results")
    assert page.status_code == 200, page.text
    text = visible_text(page.text)
    assert "Resultados: Primavera" in text and "Grupo de control" in text
    assert "Variante A" in text and "Ingresos netos" in text
    assert "140,00 €" in text and "40,00 €" in text  # net revenue of a and of the holdout
    assert "Hay periodos de conversión abiertos" in text
    assert "data-chart" in page.text and "<svg" in page.text and "data-whisker" in page.text
    assert len(re.findall(r"data-verdict", page.text)) == 2  # one per variant
    assert english_leaks(page.text) == []
    assert "{" not in text  # never raw JSON

    clock.set(T0 + timedelta(days=8))  # every window has closed
    en = _console(site, "en")
    page = en.get(f"/admin/campaigns/{CID}/results")
    text = visible_text(page.text)
    assert "Results: Spring" in text and "Variant A" in text and "Holdout" in text
    assert "these figures are final" in text
    assert "€140.00" in text
    verdict = r"Variant A(?: converts [\d.]+ points (?:better|worse) than|: no detectable)"
    assert re.search(verdict, text), text
    assert spanish_leaks(page.text) == []

    csv_page = en.get(f"/admin/campaigns/{CID}/results.csv")
    assert csv_page.status_code == 200 and csv_page.headers["content-type"].startswith("text/csv")
    assert csv_page.text.splitlines()[0].startswith("arm,holdout,audience,reached")

    missing = en.get("/admin/campaigns/nope/results")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    other = en.get("/admin/campaigns/other/results")
    assert "This campaign has no experiment" in visible_text(other.text)
    anonymous = TestClient(site, follow_redirects=False).get(f"/admin/campaigns/{CID}/results")
    assert anonymous.status_code in (303, 401)


def test_cli_prints_the_table_and_json(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from lealta.cli import app as cli_app
    from lealta.config import get_settings

    monkeypatch.setenv("LEALTA_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        shown = runner.invoke(cli_app, ["experiments", "results", CID])
        assert shown.exit_code == 0, shown.output
        assert "conversion rate" in shown.output and "140.00" in shown.output
        assert "conversion vs holdout (points, 90 %)" in shown.output
        as_json = runner.invoke(cli_app, ["experiments", "results", CID, "--json"])
        assert as_json.exit_code == 0, as_json.output
        data = json.loads(as_json.output)
        assert [a["arm"] for a in data["arms"]] == ["holdout", "a", "b"]
        assert data["arms"][1]["revenue"] == "140.00"
        missing = runner.invoke(cli_app, ["experiments", "results", "nope"])
        assert missing.exit_code == 4 and "campaign_not_found" in missing.output
    finally:
        get_settings.cache_clear()


def test_a_campaign_nobody_was_reached_in_yet(
    db: Database, client: TestClient, settings: Settings, clock: FixedClock
) -> None:
    with db.unit_of_work() as session:
        Builder(session).state("fresh", EXPERIMENT)
        create_staff(session, ("read_only",), now=clock.now(), domain="shop.test")
    body = client.get("/v1/campaigns/fresh/results").json()
    assert [a["arm"] for a in body["arms"]] == ["holdout", "a", "b"]
    assert all(a["reached"] == 0 and a["conversion_rate"] is None for a in body["arms"])
    lift = body["arms"][1]["lift"]
    assert lift["conversion_rate"] == {
        "value": None, "low": None, "high": None, "reason": "empty_arm", "detectable": None,
    }  # fmt: skip
    assert body["window_closes_at"] is None and body["complete"] is False
    es = _console(app_for(settings, db=db, clock=clock), "es")
    page = es.get("/admin/campaigns/fresh/results")
    assert page.status_code == 200
    text = visible_text(page.text)
    assert "Todavía no se ha alcanzado a nadie" in text
    assert "aún no hay intervalo para la tasa de conversión" in text
    assert english_leaks(page.text) == []
