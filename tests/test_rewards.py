"""Rewards catalogue, redemption and rollback on a real database, through the API.

The demo programme (seed 000 and 003) is used as shipped, with ``pending.days`` at 0 so
points are spendable at once.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.coupons import codes
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import (
    Account,
    Coupon,
    LedgerEntry,
    OutboxMessage,
    PointLot,
    Redemption,
    RewardCounter,
)
from lealta.programme import service as programmes
from lealta.programme.schema import Programme, Reward
from lealta.rewards import service as rewards
from tests.conftest import T0
from tests.factories import order_paid
from tests.test_read_paths import recording

_DOCUMENT = yaml.safe_load(
    Path(__file__).parents[1].joinpath("src/lealta/demo/programme.yaml").read_text()
)
DEMO = Programme.model_validate({**_DOCUMENT, "pending": {"days": 0}})


# --- helpers shared by the coupon and concurrency tests -----------------------------------


def use(db: Database, programme: Programme = DEMO) -> None:
    """Put ``programme`` in force (applied a month before the test clock)."""
    with db.unit_of_work() as session:
        programmes.apply(session, programme, actor="test", now=T0 - timedelta(days=30))


def with_rewards(*extra: Reward, base: Programme = DEMO) -> Programme:
    """The demo programme with ``extra`` rewards added (or replacing same-id ones)."""
    ids = {r.id for r in extra}
    return base.model_copy(
        update={"rewards": [r for r in base.rewards if r.id not in ids] + list(extra)}
    )


def reward(reward_id: str, **fields: Any) -> Reward:
    data: dict[str, Any] = {"id": reward_id, "type": "product", "name": {"es": reward_id}}
    return Reward.model_validate({**data, **fields})


def enrol(
    db: Database,
    external_id: str,
    *,
    points: int = 0,
    tier: str | None = None,
    tags: list[str] | None = None,
    attributes: dict[str, Any] | None = None,
) -> int:
    """A member with ``points`` spendable now (a manual credit), in ``tier``; returns the id."""
    now = T0 - timedelta(days=1)
    with db.unit_of_work() as session:
        member = members.create(
            session,
            MemberCreate(external_id=external_id, tags=tags, attributes=attributes),
            now=now,
        )
        account = ledger.lock_account(session, member.id)
        if tier is not None:
            account.tier_id = tier
        if points:
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
        return member.id


def redeem(client: TestClient, customer: str, reward_id: str, key: str, **extra: Any) -> Any:
    return client.post(
        f"/v1/members/{customer}/redemptions",
        json={"reward_id": reward_id, **extra},
        headers={"Idempotency-Key": key},
    )


def available(db: Database, member_id: int) -> int:
    with db.unit_of_work(write=False) as session:
        account = session.get(Account, member_id)
        assert account is not None
        return account.points_available


def assert_ledger_clean(db: Database) -> None:
    with db.unit_of_work(write=False) as session:
        checked, problems = ledger.verify(session)
    assert checked > 0
    assert problems == []


def by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in body["items"]}


def codes_of(item: dict[str, Any]) -> list[str]:
    return [lock["code"] for lock in item["locked_reasons"]]


# --- catalogue ------------------------------------------------------------------------------


class TestCatalogue:
    def test_demo_catalogue_explains_every_locked_reward(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        enrol(db, "ana", points=600)
        response = client.get("/v1/members/ana/rewards")
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["points_available"], body["tier"], body["currency"]) == (600, "basico", "EUR")
        items = by_id(body)
        assert list(items) == [r.id for r in DEMO.rewards]
        assert items["coupon-5"]["redeemable"] is True
        assert items["coupon-5"]["locked_reasons"] == []
        assert items["free-shipping"]["redeemable"] is True
        assert items["pay-with-points"]["redeemable"] is True
        short = items["coupon-10pct"]
        assert short["redeemable"] is False
        assert codes_of(short) == ["insufficient_points"]
        assert short["locked_reasons"][0]["details"]["points_needed"] == 200
        assert "200 more points" in short["locked_reasons"][0]["message"]
        tote = items["tote-bag"]
        assert (tote["stock_left"], tote["per_member_limit"]) == (200, 2)
        assert codes_of(tote) == ["insufficient_points"]
        dinner = items["vip-dinner"]
        assert codes_of(dinner) == ["tier_required", "insufficient_points"]
        assert dinner["locked_reasons"][0]["details"]["tiers"] == ["oro", "platino"]
        assert "Gold or Platinum" in dinner["locked_reasons"][0]["message"]
        threshold = items["coupon-20-threshold"]
        assert codes_of(threshold) == ["not_redeemable"]
        assert threshold["coupon"]["percent_off"] == "20"
        assert items["coupon-5"]["coupon"]["amount_off"] == "5"
        assert items["coupon-5"]["name"] == "5 € de descuento"

    def test_gold_member_with_points_may_take_the_vip_dinner(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        enrol(db, "oscar", points=6000, tier="oro")
        items = by_id(client.get("/v1/members/oscar/rewards").json())
        assert items["vip-dinner"]["redeemable"] is True
        assert items["vip-dinner"]["stock_left"] == 20

    def test_eligibility_cel_sees_tags_attributes_tier_and_time(
        self, db: Database, client: TestClient
    ) -> None:
        use(
            db,
            with_rewards(
                reward("vip-gift", cost=10, eligibility="'vip' in member.tags"),
                reward("city-gift", cost=10, eligibility="member.attributes.city == 'Valencia'"),
                reward("silver-gift", cost=10, eligibility="member.tier == 'plata'"),
                reward("january-gift", cost=10, eligibility="time.month == 1"),
                reward("broken-gift", cost=10, eligibility="member.attributes.missing > 3"),
            ),
        )
        enrol(db, "vera", points=100, tags=["vip"], attributes={"city": "Valencia"})
        enrol(db, "nico", points=100, tier="plata", attributes={"city": "Sevilla"})
        vera = by_id(client.get("/v1/members/vera/rewards").json())
        nico = by_id(client.get("/v1/members/nico/rewards").json())
        assert [vera[r]["redeemable"] for r in ("vip-gift", "city-gift", "silver-gift")] == [
            True,
            True,
            False,
        ]
        assert [nico[r]["redeemable"] for r in ("vip-gift", "city-gift", "silver-gift")] == [
            False,
            False,
            True,
        ]
        assert codes_of(nico["vip-gift"]) == ["not_eligible"]
        assert vera["january-gift"]["redeemable"] is True  # the test clock is in January
        # An expression that errors at run time means "not eligible", never a 500.
        assert codes_of(vera["broken-gift"]) == ["not_eligible"]

    def test_availability_windows_and_stock(
        self, db: Database, client: TestClient, clock: FixedClock
    ) -> None:
        use(
            db,
            with_rewards(
                reward("soon", cost=1, available_from=(T0 + timedelta(days=2)).isoformat()),
                reward("gone", cost=1, available_until=(T0 - timedelta(days=2)).isoformat()),
                reward("scarce", cost=1, stock=1),
            ),
        )
        enrol(db, "ines", points=10)
        enrol(db, "juan", points=10)
        items = by_id(client.get("/v1/members/ines/rewards").json())
        assert codes_of(items["soon"]) == ["not_available_yet"]
        assert codes_of(items["gone"]) == ["no_longer_available"]
        assert items["scarce"]["stock_left"] == 1
        assert redeem(client, "ines", "scarce", "k1").status_code == 201
        items = by_id(client.get("/v1/members/juan/rewards").json())
        assert codes_of(items["scarce"]) == ["out_of_stock"]
        assert items["scarce"]["stock_left"] == 0
        refused = redeem(client, "juan", "scarce", "k2")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "out_of_stock"
        assert redeem(client, "juan", "soon", "k3").json()["error"]["code"] == "not_available_yet"
        clock.set(T0 + timedelta(days=3))
        assert redeem(client, "juan", "soon", "k4").status_code == 201

    def test_unknown_member_is_404(self, db: Database, client: TestClient) -> None:
        use(db)
        response = client.get("/v1/members/nobody/rewards")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "member_not_found"


# --- redeeming -------------------------------------------------------------------------------


class TestRedeem:
    def test_coupon_reward_debits_points_and_puts_a_unique_coupon_in_the_wallet(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        ana = enrol(db, "ana", points=1000)
        response = redeem(client, "ana", "coupon-5", "r1")
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["reward_id"], body["reward_type"], body["points"]) == (
            "coupon-5",
            "coupon",
            500,
        )
        assert body["status"] == "issued"
        assert body["points_available"] == 500
        coupon = body["coupon"]
        assert re.fullmatch(
            rf"LEA-[{codes.ALPHABET}]{{4}}-[{codes.ALPHABET}]{{4}}-[{codes.ALPHABET}]{{4}}",
            coupon["code"],
        )
        assert (coupon["amount_off"], coupon["minimum_order"], coupon["currency"]) == (
            "5.00",
            "30.00",
            "EUR",
        )
        assert coupon["source"] == "redemption"
        assert coupon["customer_id"] == "ana"
        assert coupon["valid_until"].startswith((T0 + timedelta(days=60)).date().isoformat())
        assert body["fulfilment"]["coupon_code"] == coupon["code"]
        assert available(db, ana) == 500
        wallet = client.get("/v1/members/ana/coupons").json()
        assert [c["code"] for c in wallet["items"]] == [coupon["code"]]
        history = client.get("/v1/members/ana/redemptions").json()["items"]
        assert [h["id"] for h in history] == [body["id"]]
        with db.unit_of_work(write=False) as session:
            entry = session.scalars(
                select(LedgerEntry).where(LedgerEntry.entry_type == "redeem")
            ).one()
            assert entry.points == -500
            message = session.scalars(
                select(OutboxMessage).where(OutboxMessage.topic == "reward.redeemed")
            ).one()
            assert message.payload["coupon_code"] == coupon["code"]
        assert_ledger_clean(db)

    def test_a_replayed_key_returns_the_first_redemption_without_a_second_debit(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        ana = enrol(db, "ana", points=1000)
        first = redeem(client, "ana", "coupon-5", "same")
        again = redeem(client, "ana", "coupon-5", "same")
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert available(db, ana) == 500
        reused = redeem(client, "ana", "free-shipping", "same")
        assert reused.status_code == 409
        assert reused.json()["error"]["code"] == "idempotency_key_reused"

    def test_a_redemption_writes_each_row_once_and_answers_from_what_it_wrote(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        ana = enrol(db, "ana", points=1500)
        assert redeem(client, "ana", "coupon-5", "first").status_code == 201  # key verified
        with recording(db) as seen:
            response = redeem(client, "ana", "coupon-5", "second")
        assert response.status_code == 201, response.text
        body = response.json()
        statements = [" ".join(sql.split()) for sql in seen["statements"]]
        # The key; the member, its locked state and the programme in one statement; its
        # lots; the debit (one statement on PostgreSQL, one per table on SQLite); the
        # coupon, the redemption and their announcements: each row written once, no
        # savepoint, nothing read back.
        assert len(statements) <= (9 if db.dialect == "postgresql" else 14), statements
        for table in ("coupons", "redemptions"):
            assert sum(sql.startswith(f"INSERT INTO {table} ") for sql in statements) == 1
        assert not [sql for sql in statements if "SAVEPOINT" in sql.upper()]
        read_back = ("FROM coupons", "FROM accounts", "FROM redemptions", "FROM reward_counters")
        assert not [
            sql
            for sql in statements
            if (sql.startswith("SELECT") and sql.endswith(read_back))
            or any(f"{table} WHERE" in sql for table in read_back)
        ], statements
        # What it answered is what it stored.
        assert body["points_available"] == available(db, ana) == 500
        wallet = client.get("/v1/members/ana/coupons").json()["items"]
        assert body["coupon"] in wallet
        history = client.get("/v1/members/ana/redemptions").json()["items"]
        assert history[0] == {**body, "points_available": None}

    def test_a_redemption_takes_the_programme_in_force_at_the_clocks_moment(
        self, db: Database, client: TestClient, clock: FixedClock
    ) -> None:
        use(db)
        with db.unit_of_work() as session:  # a version with a new reward, from tomorrow
            later = with_rewards(reward("scarf", cost=100))
            programmes.apply(
                session, later, actor="test", now=T0, activate_at=T0 + timedelta(days=1)
            )
        enrol(db, "ana", points=1000)
        early = redeem(client, "ana", "scarf", "today")
        assert early.status_code == 404
        assert early.json()["error"]["code"] == "reward_not_found"
        clock.set(T0 + timedelta(days=2))
        assert redeem(client, "ana", "scarf", "later").status_code == 201

    def test_an_idempotency_key_is_required(self, db: Database, client: TestClient) -> None:
        use(db)
        enrol(db, "ana", points=1000)
        response = client.post("/v1/members/ana/redemptions", json={"reward_id": "coupon-5"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "missing_idempotency_key"

    def test_refusals_have_precise_codes_and_change_nothing(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        ana = enrol(db, "ana", points=400)
        cases = {
            "no-such-reward": (404, "reward_not_found"),
            "coupon-5": (409, "insufficient_points"),
            "vip-dinner": (409, "tier_required"),
            "coupon-20-threshold": (409, "not_redeemable"),
        }
        for i, (reward_id, (status, code)) in enumerate(cases.items()):
            response = redeem(client, "ana", reward_id, f"k{i}")
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code
        short = redeem(client, "ana", "coupon-5", "k-short").json()["error"]
        assert short["details"] == {"available": 400, "requested": 500}
        assert redeem(client, "nobody", "coupon-5", "k-x").json()["error"]["code"] == (
            "member_not_found"
        )
        malformed = client.post(
            "/v1/members/ana/redemptions",
            json={"reward": "coupon-5"},
            headers={"Idempotency-Key": "m"},
        )
        assert malformed.status_code == 422
        assert available(db, ana) == 400
        with db.unit_of_work(write=False) as session:
            assert session.scalar(select(func.count()).select_from(Redemption)) == 0
            assert session.scalar(select(func.count()).select_from(Coupon)) == 0

    def test_product_redemption_takes_stock_and_respects_the_per_member_limit(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        enrol(db, "ana", points=5000)
        first = redeem(client, "ana", "tote-bag", "t1").json()
        assert first["fulfilment"] == {"type": "product", "state": "awaiting_fulfilment"}
        assert first["coupon"] is None and first["status"] == "issued"
        assert redeem(client, "ana", "tote-bag", "t2").status_code == 201
        third = redeem(client, "ana", "tote-bag", "t3")
        assert third.status_code == 409
        assert third.json()["error"]["code"] == "limit_reached"
        items = by_id(client.get("/v1/members/ana/rewards").json())
        assert items["tote-bag"]["stock_left"] == 198
        assert items["tote-bag"]["redeemed_by_member"] == 2
        assert codes_of(items["tote-bag"]) == ["limit_reached"]
        rolled = client.post(
            f"/v1/redemptions/{first['id']}/rollback", headers={"Idempotency-Key": "rb"}
        )
        assert rolled.status_code == 200, rolled.text
        assert redeem(client, "ana", "tote-bag", "t4").status_code == 201
        assert_ledger_clean(db)

    def test_experience_for_gold_members(self, db: Database, client: TestClient) -> None:
        use(db)
        enrol(db, "oscar", points=6000, tier="oro")
        body = redeem(client, "oscar", "vip-dinner", "d1").json()
        assert body["fulfilment"] == {"type": "experience", "state": "awaiting_fulfilment"}
        assert body["points_available"] == 1000

    def test_pay_with_points_returns_the_currency_value(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        ana = enrol(db, "ana", points=3000)
        default = redeem(client, "ana", "pay-with-points", "p1").json()
        assert (default["points"], default["value"], default["status"]) == (
            100,
            "1.00",
            "fulfilled",
        )
        more = redeem(client, "ana", "pay-with-points", "p2", points=2555).json()
        assert (more["value"], more["currency"]) == ("25.55", "EUR")
        assert available(db, ana) == 3000 - 100 - 2555
        below = redeem(client, "ana", "pay-with-points", "p3", points=50)
        assert below.status_code == 422
        assert below.json()["error"]["code"] == "points_below_minimum"
        wrong = redeem(client, "ana", "coupon-5", "p4", points=500)
        assert wrong.status_code == 422
        assert wrong.json()["error"]["code"] == "points_not_applicable"

    def test_free_shipping_reward_issues_a_free_shipping_coupon(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        enrol(db, "ana", points=300)
        coupon = redeem(client, "ana", "free-shipping", "f1").json()["coupon"]
        assert coupon["free_shipping"] is True
        check = client.post(
            "/v1/coupons/validate",
            json={
                "code": coupon["code"],
                "customer_id": "ana",
                "cart": {"total": "12.00", "currency": "EUR", "items": []},
            },
        ).json()
        assert (check["valid"], check["free_shipping"], check["discount"]) == (True, True, "0.00")


# --- rollback --------------------------------------------------------------------------------


class TestRollback:
    def test_rollback_restores_the_exact_lots_the_stock_and_voids_the_coupon(
        self, db: Database, client: TestClient, clock: FixedClock
    ) -> None:
        use(
            db,
            with_rewards(
                reward("mug", type="coupon", cost=700, stock=3, coupon={"percent_off": 15})
            ),
        )
        ana = enrol(db, "ana", points=400)
        with db.unit_of_work() as session:  # a second lot, so the debit spans two lots
            account = ledger.lock_account(session, ana)
            ledger.credit(
                session,
                account,
                entry_type="adjust",
                points=500,
                reason="second lot",
                source=ledger.Source("test"),
                occurred_at=T0,
                now=T0,
                expires_at=T0 + timedelta(days=10),
            )
        with db.unit_of_work(write=False) as session:
            before = {i: r for i, r in session.execute(select(PointLot.id, PointLot.remaining))}
        body = redeem(client, "ana", "mug", "r1").json()
        assert available(db, ana) == 200
        clock.set(T0 + timedelta(hours=1))
        response = client.post(
            f"/v1/redemptions/{body['id']}/rollback", headers={"Idempotency-Key": "rb1"}
        )
        assert response.status_code == 200, response.text
        rolled = response.json()
        assert rolled["status"] == "rolled_back"
        assert rolled["rolled_back_at"] is not None
        assert rolled["coupon"]["status"] == "void"
        assert rolled["points_available"] == 900
        with db.unit_of_work(write=False) as session:
            after = {i: r for i, r in session.execute(select(PointLot.id, PointLot.remaining))}
            assert after == before
            assert session.get(RewardCounter, "mug").issued == 0  # type: ignore[union-attr]
        check = client.post(
            "/v1/coupons/validate",
            json={
                "code": body["coupon"]["code"],
                "customer_id": "ana",
                "cart": {"total": "50.00", "currency": "EUR"},
            },
        ).json()
        assert (check["valid"], check["reason_code"]) == (False, "void")
        wallet = client.get("/v1/members/ana/coupons").json()["items"]
        assert [c["status"] for c in wallet] == ["void"]
        # The same key replays; a new key is refused.
        replay = client.post(
            f"/v1/redemptions/{body['id']}/rollback", headers={"Idempotency-Key": "rb1"}
        )
        assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
        second = client.post(
            f"/v1/redemptions/{body['id']}/rollback", headers={"Idempotency-Key": "rb2"}
        )
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "already_rolled_back"
        assert available(db, ana) == 900
        history = client.get("/v1/members/ana/redemptions").json()["items"]
        assert [h["status"] for h in history] == ["rolled_back"]
        assert_ledger_clean(db)

    def test_rollback_is_refused_while_the_coupon_is_used_and_allowed_after_undoing_the_use(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        ana = enrol(db, "ana", points=500)
        body = redeem(client, "ana", "coupon-5", "r1").json()
        code = body["coupon"]["code"]
        cart = {"total": "40.00", "currency": "EUR"}
        used = client.post(
            f"/v1/coupons/{code}/redeem",
            json={"order_id": "W1", "customer_id": "ana", "cart": cart},
            headers={"Idempotency-Key": "use-1"},
        )
        assert used.status_code == 201, used.text
        refused = client.post(
            f"/v1/redemptions/{body['id']}/rollback", headers={"Idempotency-Key": "rb1"}
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "coupon_already_used"
        assert available(db, ana) == 0
        undo = client.post(f"/v1/coupons/{code}/rollback", json={"order_id": "W1"})
        assert undo.status_code == 200, undo.text
        done = client.post(
            f"/v1/redemptions/{body['id']}/rollback", headers={"Idempotency-Key": "rb2"}
        )
        assert done.status_code == 200, done.text
        assert available(db, ana) == 500
        assert_ledger_clean(db)

    def test_unknown_redemption_and_missing_key(self, db: Database, client: TestClient) -> None:
        use(db)
        missing = client.post("/v1/redemptions/999/rollback", headers={"Idempotency-Key": "x"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "redemption_not_found"
        no_key = client.post("/v1/redemptions/999/rollback")
        assert no_key.status_code == 400
        assert no_key.json()["error"]["code"] == "missing_idempotency_key"
        bad_id = client.post("/v1/redemptions/abc/rollback", headers={"Idempotency-Key": "y"})
        assert bad_id.status_code == 422


# --- seed 003 --------------------------------------------------------------------------------


class TestSpendThresholdCoupons:
    def test_spending_1200_issues_two_unique_20_percent_coupons(
        self, db: Database, client: TestClient, clock: FixedClock
    ) -> None:
        use(db)
        at = T0 - timedelta(days=2)
        clock.set(at)
        response = client.post("/v1/events", json=order_paid("e1", "teo", "O1", "1200.00", at))
        assert response.status_code == 201, response.text
        clock.set(T0)
        wallet = client.get("/v1/members/teo/coupons").json()["items"]
        assert len(wallet) == 2
        assert len({c["code"] for c in wallet}) == 2
        for coupon in wallet:
            assert (coupon["percent_off"], coupon["source"], coupon["status"]) == (
                "20",
                "threshold",
                "active",
            )
            assert coupon["reward_id"] == "coupon-20-threshold"
            assert coupon["valid_until"].startswith((at + timedelta(days=30)).date().isoformat())
        with db.unit_of_work(write=False) as session:
            payloads = session.scalars(
                select(OutboxMessage.payload)
                .where(OutboxMessage.topic == "threshold.reached")
                .order_by(OutboxMessage.id)
            ).all()
        assert [p["crossed"] for p in payloads] == ["500.00", "1000.00"]
        assert {p["coupon_code"] for p in payloads} == {c["code"] for c in wallet}
        # Free of points: the member keeps every point the order earned.
        assert client.get("/v1/members/teo/balance").json()["available"] == 1200
        check = client.post(
            "/v1/coupons/validate",
            json={
                "code": wallet[0]["code"],
                "customer_id": "teo",
                "cart": {"total": "150.00", "currency": "EUR"},
            },
        ).json()
        assert (check["valid"], check["discount"]) == (True, "30.00")
        assert_ledger_clean(db)

    def test_a_threshold_reward_without_coupon_terms_is_only_announced(
        self, db: Database, client: TestClient, clock: FixedClock
    ) -> None:
        programme = with_rewards(reward("gift-500", cost=0))
        programme = programme.model_copy(
            update={
                "thresholds": [programme.thresholds[0].model_copy(update={"reward": "gift-500"})]
            }
        )
        use(db, programme)
        clock.set(T0)
        client.post("/v1/events", json=order_paid("e1", "teo", "O1", "600.00", T0))
        with db.unit_of_work(write=False) as session:
            payload = session.scalars(
                select(OutboxMessage.payload).where(OutboxMessage.topic == "threshold.reached")
            ).one()
            assert session.scalar(select(func.count()).select_from(Coupon)) == 0
        assert payload["coupon_code"] is None
        items = by_id(client.get("/v1/members/teo/rewards").json())
        assert codes_of(items["gift-500"]) == ["not_redeemable"]


def test_locked_reasons_is_pure_and_lists_every_reason_in_order() -> None:
    gift = reward(
        "gift",
        cost=100,
        stock=1,
        tiers=["oro"],
        per_member_limit=1,
        eligibility="false",
        available_from=(T0 + timedelta(days=1)).isoformat(),
        available_until=(T0 + timedelta(days=2)).isoformat(),
    )
    programme = with_rewards(gift)
    locks = rewards.locked_reasons(
        programme,
        gift,
        tier="basico",
        points_available=40,
        eligible=False,
        stock_left=0,
        redeemed_by_member=1,
        now=T0,
    )
    assert [lock.code for lock in locks] == [
        "not_available_yet",
        "tier_required",
        "not_eligible",
        "limit_reached",
        "out_of_stock",
        "insufficient_points",
    ]
    assert locks[-1].details["points_needed"] == 60
    late = rewards.locked_reasons(
        programme,
        gift,
        tier="oro",
        points_available=100,
        eligible=True,
        stock_left=1,
        redeemed_by_member=0,
        now=T0 + timedelta(days=3),
    )
    assert [lock.code for lock in late] == ["no_longer_available"]
