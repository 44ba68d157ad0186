"""Console operations pages (programme, rewards, coupons, till) through real HTTP requests
on a real database: every action is tried by each role, with and without its CSRF token.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.config import Settings
from lealta.coupons import service as coupons
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import Account, AuditLog, Coupon, CouponUse, ProgrammeVersion, Redemption
from lealta.programme import service as programmes
from lealta.rewards import service as rewards
from lealta.staff import service as staff_users
from lealta.web.admin.routes_ops_common import LOCKED, MESSAGES
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff
from tests.test_rewards import DEMO, use

ROLES = ("admin", "marketer", "support", "read_only")
ROOT = Path(__file__).parents[1]

Console = Callable[[str], TestClient]


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture
def console(db: Database, clock: FixedClock, settings: Settings) -> Iterator[Console]:
    """``console(role)``: a client signed in as a user with that role (English pages)."""
    with db.unit_of_work() as session:
        create_staff(session, ROLES, now=clock.now(), domain="shop.test")
    use(db)
    app = app_for(settings, db=db, clock=clock)
    clients: list[TestClient] = []

    def make(role: str) -> TestClient:
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        client.cookies.set("lealta_lang", "en")
        token = csrf(client.get("/admin/login").text)
        response = client.post(
            "/admin/login",
            data={"email": f"{role}@shop.test", "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden field {name}"
    return html.unescape(found.group(1))


def text_of(page: str) -> str:
    """The page as a reader sees it: tags removed, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def member(
    db: Database,
    external_id: str,
    *,
    points: int = 0,
    email: str | None = None,
    name: str | None = None,
) -> int:
    now = T0 - timedelta(days=1)
    with db.unit_of_work() as session:
        row = members.create(
            session, MemberCreate(external_id=external_id, email=email, name=name), now=now
        )
        if points:
            account = ledger.lock_account(session, row.id)
            ledger.credit(
                session,
                account,
                entry_type="adjust",
                points=points,
                reason="test funding",
                source=ledger.Source("test"),
                occurred_at=now,
                now=now,
            )
        return row.id


def issue_coupon(db: Database, clock: FixedClock, external_id: str, reward_id: str) -> str:
    """Redeem ``reward_id`` for the member through the service; the coupon's code."""
    with db.unit_of_work() as session:
        programme = programmes.current(session, now=clock.now())
        redemption = rewards.redeem(
            session,
            programme,
            members.get(session, external_id),
            reward_id,
            now=clock.now(),
            actor="test",
        ).redemption
        coupon = session.get(Coupon, redemption.coupon_id)
        assert coupon is not None
        return coupon.code


def count(db: Database, model: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def points(db: Database, member_id: int) -> int:
    with db.unit_of_work(write=False) as session:
        account = session.get(Account, member_id)
        assert account is not None
        return account.points_available


def audit_actions(db: Database) -> list[tuple[str, str]]:
    with db.unit_of_work(write=False) as session:
        return [
            (a.action, a.actor) for a in session.scalars(select(AuditLog).order_by(AuditLog.id))
        ]


def demo_text(**changes: Any) -> str:
    document = DEMO.model_dump(mode="json")
    document.update(changes)
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def validate(client: TestClient, text: str) -> Any:
    token = csrf(client.get("/admin/programme").text)
    return client.post("/admin/programme/validate", data={"csrf_token": token, "text": text})


def confirm_form(page: str) -> dict[str, str]:
    return {
        name: hidden(page, name)
        for name in ("csrf_token", "document", "signature", "base_version", "origin")
    }


# --- programme ----------------------------------------------------------------------------


class TestProgrammePage:
    def test_every_role_sees_the_programme_in_force(self, console: Console) -> None:
        for role in ROLES:
            page = console(role).get("/admin/programme")
            assert page.status_code == 200
            text = text_of(page.text)
            assert "Version 1 is in force" in text
            for expected in (
                "Silver",
                "\u00d7 1.5",
                "review.posted",
                "has(event.properties.stars)",
            ):
                assert expected in text
            assert "Version history" in text
            can_change = role in ("admin", "marketer")
            assert ('action="/admin/programme/validate"' in page.text) is can_change

    def test_each_version_has_its_own_page_with_its_changes(self, console: Console) -> None:
        page = console("read_only").get("/admin/programme/versions/1")
        assert page.status_code == 200
        assert "tiers" in text_of(page.text)
        assert console("read_only").get("/admin/programme/versions/9").status_code == 404

    def test_the_pages_speak_spanish_by_default(self, console: Console) -> None:
        client = console("marketer")
        client.cookies.delete("lealta_lang")
        text = text_of(client.get("/admin/programme").text)
        assert "Historial de versiones" in text and "Validar" in text

    def test_an_anonymous_visitor_is_sent_to_sign_in(
        self, db: Database, clock: FixedClock, settings: Settings
    ) -> None:
        with TestClient(app_for(settings, db=db, clock=clock)) as anonymous:
            response = anonymous.get("/admin/programme", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/admin/login")


class TestProgrammeUpload:
    def test_problems_are_listed_with_their_paths_and_nothing_changes(
        self, console: Console, db: Database
    ) -> None:
        document = DEMO.model_dump(mode="json")
        document["tiers"]["levels"][1]["threshold"] = -5
        document["rules"][0]["condition"] = "event.nope ++"
        response = validate(console("marketer"), yaml.safe_dump(document))
        assert response.status_code == 422
        assert "tiers.levels.1.threshold" in response.text
        assert "Nothing was changed" in text_of(response.text)
        assert count(db, ProgrammeVersion) == 1

    def test_a_syntax_error_names_line_and_column(self, console: Console, db: Database) -> None:
        response = validate(console("admin"), "name: x\n  bad: [\n")
        assert response.status_code == 422
        assert "line" in response.text and "column" in response.text
        assert count(db, ProgrammeVersion) == 1

    def test_a_reference_error_names_the_path(self, console: Console) -> None:
        document = DEMO.model_dump(mode="json")
        document["thresholds"][0]["reward"] = "no-such-reward"
        response = validate(console("marketer"), yaml.safe_dump(document))
        assert response.status_code == 422
        assert "thresholds.0.reward" in response.text

    def test_an_uploaded_file_is_validated(self, console: Console) -> None:
        client = console("marketer")
        token = csrf(client.get("/admin/programme").text)
        response = client.post(
            "/admin/programme/validate",
            data={"csrf_token": token},
            files={"file": ("p.json", b'{"name": "X", "currency": "EUR", "rewards": 3}')},
        )
        assert response.status_code == 422
        assert '<code class="problem-path">rewards</code>' in response.text

    def test_a_valid_document_shows_the_diff_then_apply_makes_a_version(
        self, console: Console, db: Database
    ) -> None:
        client = console("marketer")
        response = validate(client, demo_text(earning={"points_per_unit": "2"}))
        assert response.status_code == 200
        text = text_of(response.text)
        assert "earning.points_per_unit" in text and "Apply as a new version" in text
        assert count(db, ProgrammeVersion) == 1  # validating changes nothing
        applied = client.post(
            "/admin/programme/apply", data=confirm_form(response.text), follow_redirects=False
        )
        assert applied.status_code == 303
        assert applied.headers["location"] == "/admin/programme/versions/2?applied=1"
        with db.unit_of_work(write=False) as session:
            assert programmes.current(session, now=T0).earning.points_per_unit == 2
        assert ("programme.apply", "admin:marketer@shop.test") in audit_actions(db)
        shown = client.get(applied.headers["location"])
        assert "Version 2 applied" in text_of(shown.text)

    def test_an_unchanged_document_offers_nothing_to_apply(self, console: Console) -> None:
        response = validate(console("marketer"), demo_text())
        assert response.status_code == 200
        assert "nothing to apply" in text_of(response.text)
        assert 'action="/admin/programme/apply"' not in response.text

    def test_a_later_activation_time_schedules_the_version(
        self, console: Console, db: Database
    ) -> None:
        client = console("admin")
        response = validate(client, demo_text(currency="USD"))
        form = {**confirm_form(response.text), "activate_at": "2026-02-01T09:00"}
        assert client.post("/admin/programme/apply", data=form).status_code == 200
        with db.unit_of_work(write=False) as session:
            assert programmes.current(session, now=T0).currency == "EUR"
            assert (
                programmes.version(session, 2)
                .activated_at.isoformat()
                .startswith("2026-02-01T09:00")
            )
        assert "scheduled" in text_of(client.get("/admin/programme").text)

    def test_an_activation_time_in_the_past_is_refused(
        self, console: Console, db: Database
    ) -> None:
        client = console("admin")
        response = validate(client, demo_text(currency="USD"))
        form = {**confirm_form(response.text), "activate_at": "2025-01-01T00:00"}
        refused = client.post("/admin/programme/apply", data=form)
        assert refused.status_code == 422
        assert "cannot be in the past" in text_of(refused.text)
        assert count(db, ProgrammeVersion) == 1


class TestTamperedConfirmStep:
    def test_an_altered_document_is_refused(self, console: Console, db: Database) -> None:
        client = console("marketer")
        response = validate(client, demo_text(earning={"points_per_unit": "2"}))
        form = confirm_form(response.text)
        form["document"] = form["document"].replace(
            '"points_per_unit":"2"', '"points_per_unit":"50"'
        )
        assert '"points_per_unit":"50"' in form["document"]
        refused = client.post("/admin/programme/apply", data=form)
        assert refused.status_code == 400
        assert "tampered_document" in refused.text
        assert count(db, ProgrammeVersion) == 1

    def test_a_changed_base_version_or_origin_is_refused(
        self, console: Console, db: Database
    ) -> None:
        client = console("marketer")
        form = confirm_form(validate(client, demo_text(currency="USD")).text)
        for field, value in (("base_version", "7"), ("origin", "reward:coupon-5")):
            assert (
                client.post("/admin/programme/apply", data={**form, field: value}).status_code
                == 400
            )
        assert (
            client.post("/admin/programme/apply", data={**form, "signature": ""}).status_code == 400
        )
        assert count(db, ProgrammeVersion) == 1

    def test_a_confirm_step_from_another_session_is_refused(
        self, console: Console, db: Database
    ) -> None:
        form = confirm_form(validate(console("marketer"), demo_text(currency="USD")).text)
        other = console("admin")
        form["csrf_token"] = csrf(other.get("/admin/programme").text)
        assert other.post("/admin/programme/apply", data=form).status_code == 400
        assert count(db, ProgrammeVersion) == 1

    def test_a_stale_confirm_step_is_refused_after_another_apply(
        self, console: Console, db: Database
    ) -> None:
        client = console("marketer")
        first = confirm_form(validate(client, demo_text(currency="USD")).text)
        second = confirm_form(validate(client, demo_text(currency="GBP")).text)
        assert client.post("/admin/programme/apply", data=first).status_code == 200
        stale = client.post("/admin/programme/apply", data=second)
        assert stale.status_code == 409
        assert "changed since you validated" in text_of(stale.text)
        assert count(db, ProgrammeVersion) == 2


# --- rewards ------------------------------------------------------------------------------


class TestRewards:
    def test_the_list_shows_cost_stock_left_eligibility_and_window(
        self, console: Console, db: Database, clock: FixedClock
    ) -> None:
        member(db, "c1", points=5000)
        with db.unit_of_work() as session:
            rewards.redeem(
                session, DEMO, members.get(session, "c1"), "tote-bag", now=clock.now(), actor="t"
            )
        text = text_of(console("read_only").get("/admin/rewards").text)
        assert "Cotton tote bag" in text and "1,200 pts" in text
        assert "199 / 200" in text and "1 issued" in text
        assert "Up to 2 per member" in text and "Tiers: Gold, Platinum" in text

    def test_an_edit_is_validated_diffed_and_applied_as_a_version(
        self, console: Console, db: Database
    ) -> None:
        client = console("marketer")
        token = csrf(client.get("/admin/rewards/tote-bag").text)
        preview = client.post(
            "/admin/rewards/tote-bag",
            data={
                "csrf_token": token,
                "cost": "1500",
                "stock": "150",
                "available_from": "",
                "available_until": "2026-03-01T00:00",
            },
        )
        assert preview.status_code == 200
        text = text_of(preview.text)
        assert "rewards.tote-bag.cost" in text and "rewards.tote-bag.available_until" in text
        assert count(db, ProgrammeVersion) == 1
        done = client.post(
            "/admin/programme/apply", data=confirm_form(preview.text), follow_redirects=False
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/admin/rewards?updated=tote-bag&version=2"
        with db.unit_of_work(write=False) as session:
            tote = programmes.current(session, now=T0).reward("tote-bag")
        assert tote is not None and (tote.cost, tote.stock) == (1500, 150)
        assert tote.available_until is not None and tote.available_until.month == 3
        actions = [a for a, _ in audit_actions(db)]
        assert "programme.apply" in actions and "reward.update" in actions
        assert "programme version 2" in text_of(client.get(done.headers["location"]).text)

    def test_bad_values_show_their_paths_and_change_nothing(
        self, console: Console, db: Database
    ) -> None:
        client = console("admin")
        token = csrf(client.get("/admin/rewards/tote-bag").text)
        response = client.post(
            "/admin/rewards/tote-bag",
            data={
                "csrf_token": token,
                "cost": "-3",
                "stock": "",
                "available_from": "2026-03-01T00:00",
                "available_until": "2026-02-01T00:00",
            },
        )
        assert response.status_code == 422
        assert "rewards.3.cost" in response.text
        assert count(db, ProgrammeVersion) == 1

    def test_an_unknown_reward_is_404(self, console: Console) -> None:
        assert console("read_only").get("/admin/rewards/nope").status_code == 404


# --- coupons ------------------------------------------------------------------------------


class TestCoupons:
    def test_look_up_shows_status_member_terms_and_uses_then_roll_back(
        self, console: Console, db: Database, clock: FixedClock
    ) -> None:
        member(db, "c1", points=1000, name="Ana Pérez")
        code = issue_coupon(db, clock, "c1", "coupon-5")
        with db.unit_of_work() as session:
            coupons.redeem(
                session,
                code,
                order_id="ORD-77",
                cart=coupons.Cart(total_minor=4000, currency="EUR"),
                customer_id="c1",
                now=clock.now(),
            )
        client = console("support")
        page = client.get(f"/admin/coupons?code={code.lower()}")
        text = text_of(page.text)
        assert page.status_code == 200
        for expected in (code, "used", "Ana Pérez", "€5.00 off", "minimum order €30.00", "ORD-77"):
            assert expected in text
        done = client.post(
            "/admin/coupons/rollback",
            data={"csrf_token": csrf(page.text), "code": code, "order_ref": "ORD-77"},
            follow_redirects=False,
        )
        assert done.status_code == 303
        after = text_of(client.get(done.headers["location"]).text)
        assert "was rolled back" in after and "active" in after
        with db.unit_of_work(write=False) as session:
            use_row = session.scalars(select(CouponUse)).one()
            assert use_row.rolled_back_at is not None
        assert ("coupon.rollback_use", "admin:support@shop.test") in audit_actions(db)
        again = client.post(
            "/admin/coupons/rollback",
            data={"csrf_token": csrf(page.text), "code": code, "order_ref": "ORD-77"},
        )
        assert again.status_code == 409 and "already rolled back" in text_of(again.text)

    def test_an_unknown_code_says_so(self, console: Console) -> None:
        page = console("read_only").get("/admin/coupons?code=NOPE-1234")
        assert page.status_code == 404
        assert "No coupon has this code" in text_of(page.text)

    def test_read_only_sees_uses_but_no_rollback_button(
        self, console: Console, db: Database, clock: FixedClock
    ) -> None:
        member(db, "c1", points=1000)
        code = issue_coupon(db, clock, "c1", "coupon-5")
        with db.unit_of_work() as session:
            coupons.redeem(
                session,
                code,
                order_id="ORD-1",
                cart=coupons.Cart(total_minor=4000, currency="EUR"),
                customer_id="c1",
                now=clock.now(),
            )
        page = console("read_only").get(f"/admin/coupons?code={code}")
        assert "ORD-1" in page.text and "/admin/coupons/rollback" not in page.text


# --- the till -----------------------------------------------------------------------------


class TestTillFind:
    @pytest.mark.parametrize(
        "query", ["shop-42", "ANA@Example.com", " shop-42\n"], ids=["id", "email", "card"]
    )
    def test_finds_the_member(self, console: Console, db: Database, query: str) -> None:
        member(db, "shop-42", points=750, email="ana@example.com", name="Ana Pérez")
        page = console("support").get("/admin/till", params={"q": query})
        assert page.status_code == 200
        text = text_of(page.text)
        assert "Ana Pérez" in text and "750 points available" in text and "Basic" in text

    def test_a_scanned_coupon_code_finds_its_owner_and_fills_the_code(
        self, console: Console, db: Database, clock: FixedClock
    ) -> None:
        member(db, "c1", points=600, name="Ana")
        code = issue_coupon(db, clock, "c1", "coupon-5")
        page = console("support").get("/admin/till", params={"q": code.lower()})
        assert page.status_code == 200 and "Ana" in text_of(page.text)
        assert f'name="code" value="{code}"' in page.text

    def test_an_unknown_member_says_so(self, console: Console) -> None:
        page = console("support").get("/admin/till", params={"q": "ghost"})
        assert page.status_code == 404 and "No member matches" in text_of(page.text)

    def test_several_members_with_one_email_are_listed(
        self, console: Console, db: Database
    ) -> None:
        member(db, "a1", email="fam@example.com")
        member(db, "a2", email="fam@example.com")
        text = text_of(console("support").get("/admin/till?q=fam@example.com").text)
        assert "Several members match" in text and "a1" in text and "a2" in text

    def test_valid_coupons_and_locked_rewards_are_shown(
        self, console: Console, db: Database, clock: FixedClock
    ) -> None:
        member(db, "c1", points=900)
        code = issue_coupon(db, clock, "c1", "coupon-5")
        text = text_of(console("admin").get("/admin/till?member=c1").text)
        assert code in text and "400 points available" in text
        assert "Not enough points" in text and "Needs a higher tier" in text


def till_form(client: TestClient, external_id: str, form: str) -> dict[str, str]:
    page = client.get("/admin/till", params={"member": external_id}).text
    start = page.index(f'action="/admin/till/{form}"')
    return {"csrf_token": csrf(page), "idempotency_key": hidden(page[start:], "idempotency_key")}


class TestTillCoupon:
    def test_redeems_and_confirms_once_however_often_submitted(
        self, console: Console, db: Database, clock: FixedClock
    ) -> None:
        member_id = member(db, "c1", points=600, name="Ana")
        code = issue_coupon(db, clock, "c1", "coupon-5")
        client = console("support")
        form = {
            **till_form(client, "c1", "coupon"),
            "member": "c1",
            "code": code,
            "order_ref": "POS-1",
            "amount": "42,50",
        }
        first = client.post("/admin/till/coupon", data=form, follow_redirects=False)
        second = client.post("/admin/till/coupon", data=form, follow_redirects=False)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        assert count(db, CouponUse) == 1
        done = text_of(client.get(first.headers["location"]).text)
        assert "Coupon applied" in done and code in done and "€5.00" in done and "POS-1" in done
        assert "Ana now has 100 points" in done
        assert points(db, member_id) == 100
        assert ("coupon.redeem", "admin:support@shop.test") in audit_actions(db)

    @pytest.mark.parametrize(
        ("code", "amount", "status", "message"),
        [
            ("LEA-NOPE-NOPE-NOPE", "40", 404, "No coupon has this code"),
            (None, "abc", 422, "Give the order amount as a number"),
            (None, "-4", 422, "must not be negative"),
            (None, "12.345", 422, "more decimals than the currency allows"),
            (None, "10", 409, "below the coupon's minimum order"),
        ],
        ids=["unknown-code", "not-a-number", "negative", "sub-cent", "below-minimum"],
    )
    def test_bad_inputs_show_a_message_and_change_nothing(
        self,
        console: Console,
        db: Database,
        clock: FixedClock,
        code: str | None,
        amount: str,
        status: int,
        message: str,
    ) -> None:
        member(db, "c1", points=600)
        real = issue_coupon(db, clock, "c1", "coupon-5")
        client = console("support")
        form = {
            **till_form(client, "c1", "coupon"),
            "member": "c1",
            "code": code or real,
            "order_ref": "POS-9",
            "amount": amount,
        }
        response = client.post("/admin/till/coupon", data=form)
        assert response.status_code == status
        assert message in text_of(response.text)
        assert 'value="POS-9"' in response.text  # the form keeps what was typed
        assert count(db, CouponUse) == 0
        with db.unit_of_work(write=False) as session:
            assert session.scalars(select(Coupon)).one().uses == 0

    def test_another_members_coupon_is_refused(
        self, console: Console, db: Database, clock: FixedClock
    ) -> None:
        member(db, "c1", points=600)
        member(db, "c2")
        code = issue_coupon(db, clock, "c1", "coupon-5")
        client = console("admin")
        form = {
            **till_form(client, "c2", "coupon"),
            "member": "c2",
            "code": code,
            "order_ref": "POS-2",
            "amount": "50",
        }
        response = client.post("/admin/till/coupon", data=form)
        assert response.status_code == 409
        assert "belongs to another customer" in text_of(response.text)
        assert count(db, CouponUse) == 0


class TestTillReward:
    def test_a_product_is_redeemed_once_however_often_submitted(
        self, console: Console, db: Database
    ) -> None:
        member_id = member(db, "c1", points=2000, name="Ana")
        client = console("support")
        form = {**till_form(client, "c1", "reward"), "member": "c1", "reward_id": "tote-bag"}
        # The page holds one key per reward; pick the tote bag's.
        page = client.get("/admin/till?member=c1").text
        start = page.index('value="tote-bag"')
        form["idempotency_key"] = hidden(page[start:], "idempotency_key")
        first = client.post("/admin/till/reward", data=form, follow_redirects=False)
        second = client.post("/admin/till/reward", data=form, follow_redirects=False)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        assert count(db, Redemption) == 1
        assert points(db, member_id) == 800
        done = text_of(client.get(first.headers["location"]).text)
        assert "Reward redeemed" in done and "Cotton tote bag" in done
        assert "Hand the item to the member" in done and "Ana now has 800 points" in done
        assert ("reward.redeem", "admin:support@shop.test") in audit_actions(db)

    def test_a_coupon_reward_shows_its_new_code(self, console: Console, db: Database) -> None:
        member(db, "c1", points=600)
        client = console("admin")
        page = client.get("/admin/till?member=c1").text
        start = page.index('value="coupon-5"')
        form = {
            "csrf_token": csrf(page),
            "member": "c1",
            "reward_id": "coupon-5",
            "idempotency_key": hidden(page[start:], "idempotency_key"),
        }
        done = client.post("/admin/till/reward", data=form)
        with db.unit_of_work(write=False) as session:
            code = session.scalars(select(Coupon)).one().code
        assert done.status_code == 200
        assert code in text_of(done.text) and "100 points" in text_of(done.text)

    def test_insufficient_points_shows_a_message_and_changes_nothing(
        self, console: Console, db: Database
    ) -> None:
        member_id = member(db, "c1", points=100)
        client = console("support")
        form = {
            **till_form(client, "c1", "reward"),
            "member": "c1",
            "reward_id": "tote-bag",
        }
        response = client.post("/admin/till/reward", data=form)
        assert response.status_code == 409
        assert "does not have enough points" in text_of(response.text)
        assert count(db, Redemption) == 0 and points(db, member_id) == 100

    def test_a_tier_locked_or_unknown_reward_is_refused(
        self, console: Console, db: Database
    ) -> None:
        member(db, "c1", points=9000)
        client = console("support")
        for reward_id, status in (("vip-dinner", 409), ("nope", 404)):
            form = {**till_form(client, "c1", "reward"), "member": "c1", "reward_id": reward_id}
            assert client.post("/admin/till/reward", data=form).status_code == status
        assert count(db, Redemption) == 0

    def test_a_form_without_an_idempotency_key_is_refused(
        self, console: Console, db: Database
    ) -> None:
        member(db, "c1", points=2000)
        client = console("support")
        form = {**till_form(client, "c1", "reward"), "member": "c1", "reward_id": "tote-bag"}
        form["idempotency_key"] = ""
        assert client.post("/admin/till/reward", data=form).status_code == 400
        assert count(db, Redemption) == 0


# --- roles and CSRF -----------------------------------------------------------------------

# (method, path, capability needed); the programme form bodies are filled in per test.
ACTIONS: list[tuple[str, str, str]] = [
    ("GET", "/admin/programme", "view"),
    ("GET", "/admin/programme/versions/1", "view"),
    ("GET", "/admin/rewards", "view"),
    ("GET", "/admin/rewards/tote-bag", "view"),
    ("GET", "/admin/coupons", "view"),
    ("POST", "/admin/programme/validate", "marketing"),
    ("POST", "/admin/programme/apply", "marketing"),
    ("POST", "/admin/rewards/tote-bag", "marketing"),
    ("POST", "/admin/coupons/rollback", "support"),
    ("GET", "/admin/till", "support"),
    ("POST", "/admin/till/coupon", "support"),
    ("POST", "/admin/till/reward", "support"),
]


class TestRolesAndCsrf:
    @pytest.mark.parametrize("role", ROLES)
    def test_each_action_is_allowed_only_to_the_roles_that_may(
        self, console: Console, db: Database, role: str
    ) -> None:
        member(db, "c1", points=10)
        client = console(role)
        token = csrf(client.get("/admin/programme").text)
        for method, path, needs in ACTIONS:
            if method == "GET":
                response = client.get(path)
            else:
                response = client.post(path, data={"csrf_token": token, "member": "c1"})
            allowed = staff_users.Staff(0, "x", "x", role).can(needs)
            if allowed:
                assert response.status_code != 403, (role, path)
            else:
                assert response.status_code == 403, (role, path)
                assert "forbidden_for_role" in response.text
        assert count(db, ProgrammeVersion) == 1 and count(db, Redemption) == 0

    @pytest.mark.parametrize(
        "path",
        [
            "/admin/programme/validate",
            "/admin/programme/apply",
            "/admin/rewards/tote-bag",
            "/admin/coupons/rollback",
            "/admin/till/coupon",
            "/admin/till/reward",
        ],
    )
    def test_a_form_without_its_csrf_token_is_refused(
        self, console: Console, db: Database, path: str
    ) -> None:
        member(db, "c1", points=2000)
        response = console("admin").post(
            path, data={"member": "c1", "reward_id": "tote-bag", "idempotency_key": "k1"}
        )
        assert response.status_code == 403
        assert "csrf_failed" in response.text
        assert count(db, Redemption) == 0


# --- translations -------------------------------------------------------------------------


def test_every_string_on_these_pages_has_a_spanish_translation() -> None:
    """Source strings in the templates and routes all appear in a Spanish catalogue."""
    web = ROOT / "src/lealta/web"
    sources = [
        *(web / "templates/admin").glob("programme*.html"),
        *(web / "templates/admin").glob("rewards*.html"),
        *(web / "templates/admin").glob("coupons*.html"),
        *(web / "templates/admin").glob("till*.html"),
        *(web / "admin").glob("routes_ops*.py"),
    ]
    used: set[str] = set(MESSAGES.values()) | set(LOCKED.values()) | {"Not available"}
    for path in sources:
        for match in re.finditer(r"""_\(\s*(["'])(.+?)\1\s*[,)]""", path.read_text()):
            used.add(match.group(2))
    known: dict[str, str] = {}
    for po in (web / "locale/es/LC_MESSAGES").glob("*.po"):
        with po.open("rb") as handle:
            for message in read_po(handle):
                if message.id and message.string:
                    known[str(message.id)] = str(message.string)
    missing = sorted(m for m in used if m not in known)
    assert missing == [], missing
