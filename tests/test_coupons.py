"""Coupons: code generation (pure), discount maths (pure), and the API on a real database."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from lealta.coupons import codes
from lealta.coupons import service as coupons
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Coupon, CouponUse
from lealta.models.coupon import normalise
from lealta.programme.schema import CouponSpec
from tests.conftest import T0
from tests.test_rewards import enrol, use

DEFAULT_PATTERN = CouponSpec(percent_off=Decimal(10)).code_pattern


# --- codes (pure) -----------------------------------------------------------------------------


class TestCodes:
    def test_alphabet_leaves_out_look_alikes(self) -> None:
        assert not set("0O1IL") & set(codes.ALPHABET)
        assert len(set(codes.ALPHABET)) == len(codes.ALPHABET) == 31

    def test_pattern_literals_are_kept_and_slots_filled(self) -> None:
        code = codes.generate("VIP-##-X#")
        assert code[:4] == "VIP-" and code[6:8] == "-X"
        assert set(code[4:6] + code[8]) <= set(codes.ALPHABET)
        with pytest.raises(ValueError):
            codes.generate("NO-SLOTS")

    def test_generation_is_uniform_over_the_alphabet(self) -> None:
        seen = "".join(codes.generate("####") for _ in range(20_000))
        counts = {ch: seen.count(ch) for ch in codes.ALPHABET}
        expected = len(seen) / len(codes.ALPHABET)
        assert all(abs(c - expected) < expected * 0.15 for c in counts.values())

    def test_a_million_default_codes_have_no_duplicates(self) -> None:
        n = 1_000_000
        drawn = {codes.generate(DEFAULT_PATTERN) for _ in range(n)}
        assert len(drawn) == n
        # Birthday bound for the default pattern (12 random characters, 31^12 ≈ 7.9e17 codes):
        # the chance that a million codes repeat at all is about 6e-7; the database's unique
        # index and the retry in coupons.service.issue handle that case anyway.
        probability = codes.collision_probability(n, DEFAULT_PATTERN)
        assert 5e-7 < probability < 8e-7
        # Why the default is 12 characters: with 8 (31^8 ≈ 8.5e11) a million codes would
        # repeat with probability ~0.44, and one guess in a million would hit a live code.
        assert 0.4 < codes.collision_probability(n, "LEA-####-####") < 0.5

    def test_normalise_accepts_what_people_type(self) -> None:
        assert normalise("  lea-abcd-efgh ") == "LEAABCDEFGH"
        assert normalise("LEA ABCD\u2013efgh") == normalise("LEA-ABCD-EFGH")


# --- discount maths (pure) --------------------------------------------------------------------


def coupon_row(**fields: Any) -> Coupon:
    data: dict[str, Any] = {
        "id": 1,
        "code": "LEA-TEST",
        "member_id": None,
        "reward_id": "r",
        "source": "admin",
        "currency": "EUR",
        "percent_off": None,
        "amount_off_minor": None,
        "free_shipping": False,
        "minimum_order_minor": 0,
        "skus": None,
        "categories": None,
        "valid_from": T0 - timedelta(days=1),
        "valid_until": T0 + timedelta(days=30),
        "uses_allowed": 1,
        "uses": 0,
        "status": "active",
        "created_at": T0,
    }
    return Coupon(**{**data, **fields})


CART = coupons.Cart(
    total_minor=150_00,
    currency="EUR",
    lines=(
        coupons.CartLine("SHOE-1", "calzado", 1, 80_00),
        coupons.CartLine("SOCK-1", "accesorios", 2, 10_00),
        coupons.CartLine("SHIRT-1", "ropa", 1, 50_00),
    ),
)


def check(coupon: Coupon, cart: coupons.Cart = CART, member_id: int | None = None) -> coupons.Check:
    return coupons.check(coupon, cart, member_id=member_id, now=T0)


class TestDiscountMaths:
    def test_percent_applies_to_the_cart_total_without_scope(self) -> None:
        result = check(coupon_row(percent_off="20"))
        assert (result.valid, result.discount_minor, result.eligible_minor) == (True, 30_00, 150_00)

    def test_percent_applies_to_eligible_items_with_a_category_or_sku_scope(self) -> None:
        assert check(coupon_row(percent_off="10", categories=["calzado"])).discount_minor == 8_00
        both = coupon_row(percent_off="10", categories=["calzado"], skus=["SOCK-1"])
        assert check(both).eligible_minor == 100_00
        assert check(both).discount_minor == 10_00

    def test_percent_rounds_half_up_to_the_cent(self) -> None:
        cart = coupons.Cart(total_minor=3_35, currency="EUR")
        assert check(coupon_row(percent_off="10"), cart).discount_minor == 34  # 33.5 -> 34
        assert check(coupon_row(percent_off="12.5"), cart).discount_minor == 42  # 41.875 -> 42

    def test_fixed_amount_is_capped_at_the_eligible_total(self) -> None:
        assert check(coupon_row(amount_off_minor=5_00)).discount_minor == 5_00
        scoped = coupon_row(amount_off_minor=30_00, skus=["SOCK-1"])
        assert check(scoped).discount_minor == 20_00
        small = coupons.Cart(total_minor=3_00, currency="EUR")
        assert check(coupon_row(amount_off_minor=5_00), small).discount_minor == 3_00

    def test_scoped_eligible_total_never_exceeds_what_the_cart_costs(self) -> None:
        discounted = coupons.Cart(total_minor=60_00, currency="EUR", lines=CART.lines)
        result = check(coupon_row(percent_off="50", categories=["calzado"]), discounted)
        assert (result.eligible_minor, result.discount_minor) == (60_00, 30_00)

    @pytest.mark.parametrize(
        ("fields", "cart", "member_id", "reason"),
        [
            ({"status": "void"}, CART, None, "void"),
            ({"member_id": 7}, CART, None, "wrong_member"),
            ({"member_id": 7}, CART, 8, "wrong_member"),
            ({"valid_from": T0 + timedelta(hours=1)}, CART, None, "not_yet_valid"),
            ({"valid_until": T0}, CART, None, "expired"),
            ({"status": "expired"}, CART, None, "expired"),
            ({"uses": 1}, CART, None, "used_up"),
            ({"status": "redeemed"}, CART, None, "used_up"),
            ({}, coupons.Cart(total_minor=100, currency="USD"), None, "currency_mismatch"),
            ({"minimum_order_minor": 200_00}, CART, None, "minimum_order"),
            ({"categories": ["bolsos"]}, CART, None, "no_eligible_items"),
        ],
    )
    def test_refusal_reasons(
        self, fields: dict[str, Any], cart: coupons.Cart, member_id: int | None, reason: str
    ) -> None:
        result = check(coupon_row(percent_off="10", **fields), cart, member_id)
        assert (result.valid, result.reason_code, result.discount_minor) == (False, reason, 0)
        assert result.reason

    def test_a_member_coupon_is_valid_for_its_member(self) -> None:
        assert check(coupon_row(percent_off="10", member_id=7), member_id=7).valid

    def test_free_shipping_coupon_is_valid_with_no_money_discount(self) -> None:
        result = check(coupon_row(free_shipping=True))
        assert (result.valid, result.free_shipping, result.discount_minor) == (True, True, 0)


@st.composite
def scoped_case(draw: st.DrawFn) -> tuple[Coupon, coupons.Cart]:
    lines = tuple(
        coupons.CartLine(
            draw(st.sampled_from(["A", "B", "C"])),
            draw(st.sampled_from([None, "x", "y"])),
            draw(st.integers(1, 5)),
            draw(st.integers(0, 50_000)),
        )
        for _ in range(draw(st.integers(0, 6)))
    )
    items_total = sum(line.unit_price_minor * line.quantity for line in lines)
    total = draw(st.integers(0, items_total + 10_000))
    kind = draw(st.sampled_from(["percent", "amount"]))
    coupon = coupon_row(
        percent_off=str(draw(st.decimals(0, 100, places=2))) if kind == "percent" else None,
        amount_off_minor=draw(st.integers(0, 100_000)) if kind == "amount" else None,
        skus=draw(st.one_of(st.none(), st.lists(st.sampled_from(["A", "B"]), max_size=2))),
        categories=draw(st.one_of(st.none(), st.lists(st.just("x"), max_size=1))),
    )
    return coupon, coupons.Cart(total_minor=total, currency="EUR", lines=lines)


@given(scoped_case())
def test_a_discount_is_never_negative_nor_more_than_the_eligible_total(
    case: tuple[Coupon, coupons.Cart],
) -> None:
    coupon, cart = case
    result = check(coupon, cart)
    if not result.valid:
        assert result.reason_code == "no_eligible_items" and result.discount_minor == 0
        return
    assert 0 <= result.discount_minor <= result.eligible_minor <= cart.total_minor


# --- API --------------------------------------------------------------------------------------


def issue(db: Database, spec: dict[str, Any], *, member_id: int | None = None) -> str:
    """An admin coupon valid from the test clock; returns its code."""
    with db.unit_of_work() as session:
        coupon = coupons.issue(
            session,
            CouponSpec.model_validate(spec),
            reward_id="manual",
            member_id=member_id,
            source="admin",
            currency="EUR",
            valid_from=T0,
            now=T0,
        )
        return coupon.code


def cart(
    total: str = "100.00", currency: str = "EUR", items: list[Any] | None = None
) -> dict[str, Any]:
    return {"total": total, "currency": currency, "items": items or []}


def validate(
    client: TestClient, code: str, body_cart: dict[str, Any], customer: str | None = None
) -> Any:
    payload: dict[str, Any] = {"code": code, "cart": body_cart}
    if customer is not None:
        payload["customer_id"] = customer
    return client.post("/v1/coupons/validate", json=payload)


def use_coupon(
    client: TestClient,
    code: str,
    order: str,
    key: str,
    body_cart: dict[str, Any] | None = None,
    customer: str | None = None,
) -> Any:
    payload: dict[str, Any] = {"order_id": order, "cart": body_cart or cart()}
    if customer is not None:
        payload["customer_id"] = customer
    return client.post(f"/v1/coupons/{code}/redeem", json=payload, headers={"Idempotency-Key": key})


class TestValidateApi:
    def test_discount_for_a_scoped_percent_coupon(self, db: Database, client: TestClient) -> None:
        use(db)
        code = issue(db, {"percent_off": 10, "categories": ["calzado"]})
        items = [
            {"sku": "SHOE-1", "category": "calzado", "quantity": 2, "unit_price": "45.50"},
            {"sku": "TEE-1", "category": "ropa", "quantity": 1, "unit_price": "20.00"},
        ]
        response = validate(client, code.lower(), cart("111.00", items=items))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "code": code,
            "valid": True,
            "discount": "9.10",
            "currency": "EUR",
            "free_shipping": False,
            "eligible_total": "91.00",
            "reason_code": None,
            "reason": None,
        }

    def test_reasons(self, db: Database, client: TestClient, clock: FixedClock) -> None:
        use(db)
        ana = enrol(db, "ana")
        enrol(db, "bea")
        mine = issue(db, {"amount_off": 5, "minimum_order": 30}, member_id=ana)
        scoped = issue(db, {"percent_off": 10, "skus": ["ONLY-THIS"]})

        def reason(code: str, body_cart: dict[str, Any], customer: str | None = "ana") -> Any:
            body = validate(client, code, body_cart, customer).json()
            assert body["valid"] is False and body["discount"] == "0.00"
            return body["reason_code"]

        assert reason("LEA-NOPE-NOPE-NOPE", cart()) == "unknown"
        assert reason(mine, cart(), customer="bea") == "wrong_member"
        assert reason(mine, cart(), customer=None) == "wrong_member"
        assert reason(mine, cart(), customer="ghost") == "wrong_member"
        assert reason(mine, cart("29.99")) == "minimum_order"
        assert reason(mine, cart(currency="USD")) == "currency_mismatch"
        items = [{"sku": "OTHER", "category": "ropa", "quantity": 1, "unit_price": "100.00"}]
        assert reason(scoped, cart(items=items)) == "no_eligible_items"
        assert validate(client, mine, cart(), "ana").json()["discount"] == "5.00"
        clock.set(T0 - timedelta(minutes=1))
        assert reason(mine, cart()) == "not_yet_valid"
        clock.set(T0 + timedelta(days=30))
        assert reason(mine, cart()) == "expired"

    @pytest.mark.parametrize(
        ("body_cart", "status", "code"),
        [
            ({"currency": "EUR"}, 422, "validation_error"),
            ({"total": "-1", "currency": "EUR"}, 422, "validation_error"),
            ({"total": "10", "currency": "EURO"}, 422, "validation_error"),
            ({"total": "10", "currency": "ZZZ"}, 422, "invalid_currency"),
            ({"total": "10.001", "currency": "EUR"}, 422, "invalid_amount"),
            (
                {
                    "total": "10",
                    "currency": "EUR",
                    "items": [{"sku": "A", "quantity": 0, "unit_price": "1"}],
                },
                422,
                "validation_error",
            ),
            (
                {
                    "total": "10",
                    "currency": "EUR",
                    "items": [{"sku": "A", "quantity": 1, "unit_price": "1.005"}],
                },
                422,
                "invalid_amount",
            ),
            ({"total": "10", "currency": "EUR", "extra": 1}, 422, "validation_error"),
            ({"total": "NaN", "currency": "EUR"}, 422, "validation_error"),
        ],
    )
    def test_malformed_carts_are_422(
        self, db: Database, client: TestClient, body_cart: dict[str, Any], status: int, code: str
    ) -> None:
        use(db)
        coupon = issue(db, {"percent_off": 10})
        response = validate(client, coupon, body_cart)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        redeem = use_coupon(client, coupon, "O1", "k1", body_cart)
        assert redeem.status_code == status
        assert redeem.json()["error"]["code"] == code

    def test_a_read_key_may_validate_but_not_redeem(
        self, db: Database, client: TestClient, read_key: str
    ) -> None:
        use(db)
        coupon = issue(db, {"percent_off": 10})
        headers = {"Authorization": f"Bearer {read_key}"}
        ok = client.post(
            "/v1/coupons/validate", json={"code": coupon, "cart": cart()}, headers=headers
        )
        assert ok.status_code == 200
        refused = client.post(
            f"/v1/coupons/{coupon}/redeem",
            json={"order_id": "O1", "cart": cart()},
            headers={**headers, "Idempotency-Key": "k"},
        )
        assert refused.status_code == 403


class TestRedeemApi:
    def test_single_use_coupon_is_used_once(self, db: Database, client: TestClient) -> None:
        use(db)
        code = issue(db, {"percent_off": 20})
        first = use_coupon(client, code, "O1", "k1")
        assert first.status_code == 201, first.text
        body = first.json()
        assert body["use"]["discount"] == "20.00" and body["use"]["order_id"] == "O1"
        assert (body["coupon"]["status"], body["coupon"]["uses"]) == ("redeemed", 1)
        replay = use_coupon(client, code, "O1", "k1")
        assert replay.status_code == 200 and replay.json() == body
        second = use_coupon(client, code, "O2", "k2")
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "coupon_used_up"
        assert second.json()["error"]["details"] == {"reason_code": "used_up"}
        check = validate(client, code, cart()).json()
        assert (check["valid"], check["reason_code"]) == (False, "used_up")

    def test_unknown_code_missing_key_and_member_checks(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        unknown = use_coupon(client, "LEA-NOPE", "O1", "k1")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "coupon_not_found"
        ana = enrol(db, "ana")
        code = issue(db, {"amount_off": 5}, member_id=ana)
        no_key = client.post(f"/v1/coupons/{code}/redeem", json={"order_id": "O1", "cart": cart()})
        assert no_key.status_code == 400
        assert no_key.json()["error"]["code"] == "missing_idempotency_key"
        wrong = use_coupon(client, code, "O1", "k2", customer="bea")
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (409, "coupon_wrong_member")
        small = use_coupon(client, code, "O1", "k3", cart("3.00"), customer="ana")
        assert small.status_code == 201
        assert small.json()["use"]["discount"] == "3.00"

    def test_multi_use_coupon_counts_uses_and_once_per_order(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        code = issue(db, {"amount_off": 10, "uses_per_coupon": 2})
        assert use_coupon(client, code, "O1", "k1").json()["coupon"]["status"] == "active"
        again = use_coupon(client, code, "O1", "k2")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "coupon_already_used_for_order"
        last = use_coupon(client, code, "O2", "k3").json()["coupon"]
        assert (last["uses"], last["status"]) == (2, "redeemed")
        assert use_coupon(client, code, "O3", "k4").json()["error"]["code"] == "coupon_used_up"

    def test_expired_coupon_cannot_be_used(
        self, db: Database, client: TestClient, clock: FixedClock
    ) -> None:
        use(db)
        code = issue(db, {"percent_off": 10, "valid_days": 1})
        clock.set(T0 + timedelta(days=1))
        refused = use_coupon(client, code, "O1", "k1")
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "coupon_expired")


class TestRollbackApi:
    def test_rollback_undoes_the_use_so_the_coupon_works_again(
        self, db: Database, client: TestClient
    ) -> None:
        use(db)
        code = issue(db, {"percent_off": 20})
        use_coupon(client, code, "O1", "k1")
        response = client.post(f"/v1/coupons/{code}/rollback", json={"order_id": "O1"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["coupon"]["status"], body["coupon"]["uses"]) == ("active", 0)
        assert body["use"]["rolled_back_at"] is not None
        again = client.post(f"/v1/coupons/{code}/rollback", json={"order_id": "O1"})
        assert (again.status_code, again.json()["error"]["code"]) == (409, "already_rolled_back")
        never = client.post(f"/v1/coupons/{code}/rollback", json={"order_id": "O9"})
        assert (never.status_code, never.json()["error"]["code"]) == (404, "coupon_use_not_found")
        unknown = client.post("/v1/coupons/LEA-NOPE/rollback", json={"order_id": "O1"})
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "coupon_not_found")
        # Usable again, even on the same order.
        assert use_coupon(client, code, "O1", "k2").status_code == 201
        with db.unit_of_work(write=False) as session:
            uses = session.scalars(select(CouponUse).order_by(CouponUse.id)).all()
            assert [(u.order_ref, u.rolled_back_at is None) for u in uses] == [
                ("O1", False),
                ("O1", True),
            ]

    def test_rollback_with_a_key_replays(self, db: Database, client: TestClient) -> None:
        use(db)
        code = issue(db, {"percent_off": 20})
        use_coupon(client, code, "O1", "k1")
        headers = {"Idempotency-Key": "rb"}
        first = client.post(
            f"/v1/coupons/{code}/rollback", json={"order_id": "O1"}, headers=headers
        )
        second = client.post(
            f"/v1/coupons/{code}/rollback", json={"order_id": "O1"}, headers=headers
        )
        assert first.status_code == 200 and second.status_code == 200
        assert second.headers["Idempotent-Replayed"] == "true"


class TestReadingAndExpiry:
    def test_get_coupon(self, db: Database, client: TestClient, clock: FixedClock) -> None:
        use(db)
        ana = enrol(db, "ana")
        code = issue(
            db, {"amount_off": "7.50", "minimum_order": 20, "valid_days": 10}, member_id=ana
        )
        body = client.get(f"/v1/coupons/{code.lower()}").json()
        assert (body["code"], body["customer_id"], body["amount_off"], body["minimum_order"]) == (
            code,
            "ana",
            "7.50",
            "20.00",
        )
        assert (body["status"], body["uses_allowed"], body["uses"]) == ("active", 1, 0)
        clock.set(T0 + timedelta(days=10))
        assert client.get(f"/v1/coupons/{code}").json()["status"] == "expired"
        missing = client.get("/v1/coupons/LEA-NOPE")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "coupon_not_found")

    def test_wallet_lists_usable_coupons_first(
        self, db: Database, client: TestClient, clock: FixedClock
    ) -> None:
        use(db)
        ana = enrol(db, "ana")
        short = issue(db, {"percent_off": 5, "valid_days": 2}, member_id=ana)
        used = issue(db, {"percent_off": 10, "valid_days": 90}, member_id=ana)
        later = issue(db, {"percent_off": 15, "valid_days": 60}, member_id=ana)
        soon = issue(db, {"percent_off": 20, "valid_days": 20}, member_id=ana)
        issue(db, {"percent_off": 50})  # nobody's
        use_coupon(client, used, "O1", "k1", customer="ana")
        clock.set(T0 + timedelta(days=5))
        wallet = client.get("/v1/members/ana/coupons").json()
        assert [(c["code"], c["status"]) for c in wallet["items"]] == [
            (soon, "active"),
            (later, "active"),
            (used, "redeemed"),
            (short, "expired"),
        ]
        assert client.get("/v1/members/nobody/coupons").status_code == 404

    def test_expire_job_stamps_expired_coupons_once(self, db: Database) -> None:
        use(db)
        old = issue(db, {"percent_off": 5, "valid_days": 1})
        issue(db, {"percent_off": 5, "valid_days": 30})
        with db.unit_of_work() as session:
            assert coupons.expire_coupons(session, T0 + timedelta(days=2)) == 1
        with db.unit_of_work() as session:
            assert coupons.expire_coupons(session, T0 + timedelta(days=2)) == 0
        with db.unit_of_work(write=False) as session:
            statuses = dict(session.execute(select(Coupon.code, Coupon.status)).all())
            assert statuses[old] == "expired"
            assert sorted(statuses.values()) == ["active", "expired"]


class TestIssuing:
    SPEC = CouponSpec(percent_off=Decimal(5), code_pattern="X#")  # a space of 31 codes

    def _fill(self, session: Any, codes_taken: list[str]) -> None:
        for code in codes_taken:
            session.add(coupon_row(id=None, code=code))
        session.flush()

    def _issue(self, session: Any) -> Coupon:
        return coupons.issue(
            session,
            self.SPEC,
            reward_id="tiny",
            member_id=None,
            source="admin",
            currency="EUR",
            valid_from=T0,
            now=T0,
        )

    def test_a_clash_inserts_nothing_and_draws_again_until_a_free_code_is_drawn(
        self, db: Database
    ) -> None:
        every = [f"X{ch}" for ch in codes.ALPHABET]
        free = every.pop(17)
        with db.unit_of_work() as session:
            self._fill(session, every)
            # Each call draws up to 8 times; 30 of 31 codes clash, so keep calling.
            for _ in range(200):
                try:
                    coupon = self._issue(session)
                    break
                except coupons.CodeSpaceExhausted:
                    continue
            else:  # pragma: no cover - (30/31)^1600 never happens
                pytest.fail("never drew the free code")
            assert coupon.code == free
        with db.unit_of_work(write=False) as session:
            assert session.scalar(select(func.count()).select_from(Coupon)) == 31

    def test_a_full_code_space_is_a_clear_error_and_the_transaction_survives(
        self, db: Database
    ) -> None:
        with db.unit_of_work() as session:
            self._fill(session, [f"X{ch}" for ch in codes.ALPHABET])
            with pytest.raises(coupons.CodeSpaceExhausted) as caught:
                self._issue(session)
            assert caught.value.code == "coupon_code_collision"
            assert session.scalar(select(func.count()).select_from(Coupon)) == 31
        with db.unit_of_work(write=False) as session:
            assert session.scalar(select(func.count()).select_from(Coupon)) == 31
