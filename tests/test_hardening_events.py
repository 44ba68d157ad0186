"""Hardening of event ingestion: bounded work per event, bounded amounts and timestamps, the
event id as natural key, a complete member export, and coupon codes however they are typed."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from lealta.coupons import service as coupon_service
from lealta.engine import core as engine
from lealta.events import service as events
from lealta.events.schemas import EventIn
from lealta.exports.service import MEMBER_COLUMNS, export_members
from lealta.imports.service import import_orders
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import (
    Coupon,
    Event,
    LedgerEntry,
    Member,
    Order,
    OutboxMessage,
)
from lealta.models.coupon import normalise
from lealta.programme import service as programmes
from lealta.programme.schema import DEFAULT_PROGRAMME, CouponSpec, Programme
from tests.conftest import T0
from tests.factories import order_paid, order_refunded
from tests.test_concurrency import _race
from tests.test_rewards import DEMO, use

DAY = timedelta(days=1)


def count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


def with_cap(cap: int | None) -> Programme:
    rules = [
        r if cap is None else r.model_copy(update={"max_per_event": cap}) for r in DEMO.thresholds
    ]
    return DEMO.model_copy(update={"thresholds": rules})


# --- 1. bounded work per event ---------------------------------------------------------------


class TestThresholdCap:
    def test_one_big_order_issues_at_most_max_per_event_and_forfeits_the_rest(
        self, client: TestClient, db: Database
    ) -> None:
        use(db)  # every 500 € spent -> a coupon; max_per_event defaults to 10
        assert DEMO.thresholds[0].max_per_event == 10
        r = client.post("/v1/events", json=order_paid("e1", "ana", "O1", "1000000.00", T0))
        assert r.status_code == 201, r.text
        assert r.json()["thresholds_forfeited"] == 2000 - 10
        assert count(db, Coupon) == 10
        assert count(db, OutboxMessage, OutboxMessage.topic == "threshold.reached") == 10
        with db.unit_of_work(write=False) as session:
            notice = session.scalars(
                select(OutboxMessage).where(OutboxMessage.topic == "threshold.forfeited")
            ).one()
        assert notice.payload["issued"] == 10
        assert notice.payload["forfeited"] == 1990
        assert notice.payload["order_id"] == "O1"
        # Forfeited, not carried: the next 500 € issues the next crossing only.
        r = client.post("/v1/events", json=order_paid("e2", "ana", "O2", "500.00", T0))
        assert r.status_code == 201, r.text
        assert r.json()["thresholds_forfeited"] == 0
        assert count(db, Coupon) == 11

    def test_the_cap_is_a_programme_field(self, client: TestClient, db: Database) -> None:
        use(db, with_cap(3))
        r = client.post("/v1/events", json=order_paid("e1", "ana", "O1", "2000.00", T0))
        assert r.status_code == 201, r.text
        assert count(db, Coupon) == 3
        assert r.json()["thresholds_forfeited"] == 1
        under = client.post("/v1/events", json=order_paid("e2", "bea", "O2", "1000.00", T0))
        assert under.json()["thresholds_forfeited"] == 0
        assert count(db, Coupon) == 5

    @pytest.mark.parametrize("bad", [0, -1, 101, "many"])
    def test_the_cap_is_validated(self, bad: Any) -> None:
        document = DEMO.model_dump(mode="json")
        document["thresholds"][0]["max_per_event"] = bad
        with pytest.raises(ValidationError) as caught:
            Programme.model_validate(document)
        assert "max_per_event" in str(caught.value)


class TestAmountBounds:
    def test_a_total_beyond_the_maximum_is_422_and_writes_nothing(
        self, client: TestClient, db: Database
    ) -> None:
        r = client.post("/v1/events", json=order_paid("e1", "ana", "O1", "1000000000000", T0))
        assert r.status_code == 422, r.text
        assert error_code(r) == "amount_too_large"
        assert r.json()["error"]["details"]["field"] == "order.total"
        assert count(db, Order) == count(db, Event) == count(db, Member) == 0
        ok = client.post("/v1/events", json=order_paid("e2", "ana", "O2", "10000000.00", T0))
        assert ok.status_code == 201, ok.text

    def test_item_prices_and_refunds_are_bounded(self, client: TestClient, db: Database) -> None:
        items = [{"sku": "X", "unit_price": "10000000.01"}]
        r = client.post("/v1/events", json=order_paid("e1", "ana", "O1", "1", T0, items=items))
        assert r.status_code == 422, r.text
        assert error_code(r) == "amount_too_large"
        assert r.json()["error"]["details"]["field"] == "order.items.0.unit_price"
        assert client.post("/v1/events", json=order_paid("e2", "ana", "O2", "10", T0)).is_success
        refund = order_refunded("e3", "ana", "O2", T0, amount="20000000")
        r = client.post("/v1/events", json=refund)
        assert r.status_code == 422, r.text
        assert error_code(r) == "amount_too_large"

    def test_the_maximum_is_in_major_units_per_currency(self, db: Database) -> None:
        jpy = DEFAULT_PROGRAMME.model_copy(update={"currency": "JPY"})
        ctx = events.IngestContext(programme=jpy, now=T0, actor="t", max_amount=Decimal(1000))
        with db.unit_of_work() as session:
            ok = EventIn.model_validate(order_paid("e1", "a", "O1", "1000", T0, currency="JPY"))
            assert events.ingest(session, ok, ctx, key=None).status_code == 201
        with pytest.raises(Exception) as caught, db.unit_of_work() as session:
            big = EventIn.model_validate(order_paid("e2", "a", "O2", "1001", T0, currency="JPY"))
            events.ingest(session, big, ctx, key=None)
        assert getattr(caught.value, "code", None) == "amount_too_large"


# --- 6. timestamps ----------------------------------------------------------------------------


class TestTimestamps:
    @pytest.mark.parametrize(
        "at", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "1989-12-31T23:59:59Z"]
    )
    def test_an_event_before_1990_is_422_not_a_500(
        self, client: TestClient, db: Database, at: str
    ) -> None:
        event = order_paid("e1", "ana", "O1", "10", T0)
        event["occurred_at"] = at
        r = client.post("/v1/events", json=event)
        assert r.status_code == 422, r.text
        assert error_code(r) == "occurred_too_early"
        assert count(db, Member) == 0

    def test_far_future_is_occurred_in_future(self, client: TestClient) -> None:
        event = order_paid("e1", "ana", "O1", "10", T0)
        event["occurred_at"] = "9999-12-31T23:59:59-01:00"
        r = client.post("/v1/events", json=event)
        assert r.status_code == 422, r.text
        assert error_code(r) == "occurred_in_future"
        event["occurred_at"] = (T0 + timedelta(minutes=4)).isoformat()
        assert client.post("/v1/events", json=event).status_code == 201

    def test_batch_rejects_only_the_bad_event(self, client: TestClient) -> None:
        bad = order_paid("e1", "ana", "O1", "10", T0)
        bad["occurred_at"] = "0001-01-01T00:00:00+05:00"
        good = order_paid("e2", "ana", "O2", "10", T0)
        r = client.post("/v1/events/batch", json={"events": [bad, good]})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results[0]["error"]["code"] == "occurred_too_early"
        assert results[1]["status"] == "processed"

    def test_refund_before_its_order_is_409(self, client: TestClient, db: Database) -> None:
        assert client.post("/v1/events", json=order_paid("e1", "ana", "O1", "10", T0)).is_success
        r = client.post("/v1/events", json=order_refunded("e2", "ana", "O1", T0 - DAY))
        assert r.status_code == 409, r.text
        assert error_code(r) == "refund_before_order"
        assert count(db, LedgerEntry, LedgerEntry.entry_type == "reverse") == 0

    def test_adjustment_time_is_bounded(self, client: TestClient, db: Database) -> None:
        assert client.post("/v1/events", json=order_paid("e1", "ana", "O1", "10", T0)).is_success
        for at, code in (
            ("0001-01-01T00:00:00+01:00", "occurred_too_early"),
            ((T0 + DAY).isoformat(), "occurred_in_future"),
        ):
            r = client.post(
                "/v1/members/ana/adjustments",
                json={"points": 5, "reason": "Goodwill", "occurred_at": at},
                headers={"Idempotency-Key": f"adj-{code}"},
            )
            assert r.status_code == 422, r.text
            assert error_code(r) == code
        assert count(db, LedgerEntry, LedgerEntry.entry_type == "adjust") == 0

    @pytest.mark.parametrize("birthday", ["0001-01-01", "1899-12-31", "2026-03-01"])
    def test_birthday_is_bounded(self, client: TestClient, db: Database, birthday: str) -> None:
        r = client.post("/v1/members", json={"external_id": "ana", "birthday": birthday})
        assert r.status_code == 422, r.text
        assert error_code(r) == "invalid_birthday"
        assert count(db, Member) == 0
        ok = client.post("/v1/members", json={"external_id": "ana", "birthday": "1950-06-01"})
        assert ok.status_code == 201, ok.text


# --- 1c/6. the same bounds in the CSV import ----------------------------------------------------


def test_csv_import_rejects_out_of_bounds_rows_with_line_and_reason(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "customer_id,order_id,occurred_at,amount,currency,type\n"
        f"ana,O1,{(T0 - 2 * DAY).isoformat()},10.00,EUR,\n"
        f"ana,O2,{(T0 - DAY).isoformat()},1000000000000,EUR,\n"
        "bea,O3,0001-01-01T00:00:00+01:00,10.00,EUR,\n"
        f"ana,O1,{(T0 - 3 * DAY).isoformat()},,EUR,order.refunded\n",
        encoding="utf-8",
    )
    with db.unit_of_work() as session:
        programmes.apply(session, DEFAULT_PROGRAMME, actor="t", now=T0 - 30 * DAY)
    report = import_orders(db, path, programme=DEFAULT_PROGRAMME, now=clock.now(), actor="t")
    assert report.imported == 1
    assert [(r.line, r.code) for r in report.rejected] == [
        (3, "amount_too_large"),
        (4, "occurred_too_early"),
        (5, "refund_before_order"),
    ]
    assert count(db, Order) == 1
    assert count(db, Member) == 1  # "bea" was not enrolled by the rejected row


# --- 9. the event id is the natural key -------------------------------------------------------


class TestEventNaturalKey:
    def test_same_event_id_with_a_fresh_header_is_a_replay(
        self, client: TestClient, db: Database
    ) -> None:
        use(db)
        event = {
            "id": "rev-1",
            "type": "review.posted",
            "customer_id": "ana",
            "occurred_at": T0.isoformat(),
            "properties": {"stars": 5},
        }
        first = client.post("/v1/events", json=event, headers={"Idempotency-Key": "k1"})
        assert first.status_code == 201, first.text
        again = client.post("/v1/events", json=event, headers={"Idempotency-Key": "k2"})
        assert again.status_code == 200, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        bare = client.post("/v1/events", json=event)
        assert bare.status_code == 200
        assert bare.json() == first.json()
        assert count(db, Event) == 1
        assert count(db, LedgerEntry) == len(first.json()["postings"])

    def test_same_event_id_with_another_body_is_409(self, client: TestClient, db: Database) -> None:
        event = order_paid("e1", "ana", "O1", "10", T0)
        assert client.post("/v1/events", json=event, headers={"Idempotency-Key": "k1"}).is_success
        other = order_paid("e1", "ana", "O2", "99", T0)
        r = client.post("/v1/events", json=other, headers={"Idempotency-Key": "k2"})
        assert r.status_code == 409, r.text
        assert error_code(r) == "event_id_reused"
        r = client.post("/v1/events", json=other, headers={"Idempotency-Key": "k1"})
        assert error_code(r) == "idempotency_key_reused"
        assert count(db, Event) == count(db, Order) == 1

    def test_a_refund_event_is_applied_once(self, client: TestClient, db: Database) -> None:
        assert client.post("/v1/events", json=order_paid("e1", "ana", "O1", "100", T0)).is_success
        refund = order_refunded("r1", "ana", "O1", T0, amount="10")
        for key in ("a", "b", "c"):
            r = client.post("/v1/events", json=refund, headers={"Idempotency-Key": key})
            assert r.status_code in (200, 201), r.text
        with db.unit_of_work(write=False) as session:
            order = session.scalars(select(Order)).one()
        assert order.refunded_minor == 1000

    def test_batch_and_single_share_the_rule(self, client: TestClient, db: Database) -> None:
        event = order_paid("e1", "ana", "O1", "10", T0)
        assert client.post("/v1/events", json=event, headers={"Idempotency-Key": "h"}).is_success
        other = order_paid("e1", "ana", "O9", "10", T0)
        r = client.post("/v1/events/batch", json={"events": [event, other]})
        assert [x["status"] for x in r.json()["results"]] == ["replayed", "rejected"]
        assert r.json()["results"][1]["error"]["code"] == "event_id_reused"
        assert count(db, Event) == 1

    @pytest.mark.postgres_only
    def test_concurrent_same_event_id_with_different_headers_earns_once(
        self, db: Database, clock: FixedClock
    ) -> None:
        ctx = events.IngestContext(programme=DEFAULT_PROGRAMME, now=clock.now(), actor="t")
        event = EventIn.model_validate(
            {
                "id": "signup-1",
                "type": "order.paid",
                "customer_id": "ana",
                "occurred_at": T0.isoformat(),
                "order": {"id": "O1", "total": "50.00", "currency": "EUR"},
            }
        )

        def send(i: int) -> Any:
            with db.unit_of_work() as session:
                return events.ingest(session, event, ctx, key=f"header-{i}")

        outcomes = _race(10, send)
        assert all(isinstance(o, events.Outcome) for o in outcomes), outcomes
        assert sum(not o.replayed for o in outcomes) == 1
        assert len({json.dumps(o.body, sort_keys=True) for o in outcomes}) == 1
        assert count(db, Event) == 1
        assert count(db, LedgerEntry) == 1


# --- 8. the member export -----------------------------------------------------------------------


def test_export_has_tier_every_bucket_and_next_expiry(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    use(db)
    with db.unit_of_work() as session:
        ctx = events.IngestContext(programme=programmes.current(session, now=T0), now=T0, actor="t")
        for event in (
            order_paid("e1", "ana", "O1", "1200.00", T0 - 10 * DAY),
            order_paid("e2", "bea", "O2", "10.00", T0 - 5 * DAY),
            order_refunded("e3", "bea", "O2", T0 - 4 * DAY, amount="5.00"),
        ):
            events.ingest(session, EventIn.model_validate(event), ctx, key=None)
    target = tmp_path / "members.csv"
    assert export_members(db, target, now=T0) == 2
    with target.open(newline="", encoding="utf-8") as exported:
        rows = list(csv.DictReader(exported))
    assert tuple(rows[0]) == MEMBER_COLUMNS
    ana, bea = rows
    assert ana["tier"] == "plata"
    assert int(ana["available_points"]) > 0
    assert ana["qualifying_spend"] == "1200.00"
    expected_expiry = engine.expiry_for(DEMO, T0 - 10 * DAY)
    assert expected_expiry is not None
    assert datetime.fromisoformat(ana["next_expiry_at"]) == expected_expiry
    assert int(ana["next_expiry_points"]) == int(ana["available_points"])
    assert bea["tier"] == "basico"  # the entry tier
    for column in ("pending_points", "spent_points", "expired_points", "shortfall_points"):
        assert ana[column] == "0"
    assert bea["qualifying_spend"] == "5.00"


# --- 11. coupon codes however they are typed ---------------------------------------------------


def _issue(db: Database, pattern: str = "LEA-####-####") -> str:
    with db.unit_of_work() as session:
        coupon = coupon_service.issue(
            session,
            CouponSpec(amount_off=Decimal(5), code_pattern=pattern),
            reward_id="r",
            member_id=None,
            source="admin",
            currency="EUR",
            valid_from=T0 - DAY,
            now=T0,
        )
        return coupon.code


class TestCouponCodes:
    def test_lower_case_and_dash_less_codes_are_found_everywhere(
        self, client: TestClient, db: Database
    ) -> None:
        use(db)
        code = _issue(db)
        typed = [code.lower().replace("-", ""), f"  {code.lower()} ", code.replace("-", " ")]
        for variant in typed:
            r = client.get(f"/v1/coupons/{variant}")
            assert r.status_code == 200, (variant, r.text)
            assert r.json()["code"] == code
        cart = {"total": "50.00", "currency": "EUR"}
        r = client.post("/v1/coupons/validate", json={"code": typed[0], "cart": cart})
        assert r.status_code == 200, r.text
        assert r.json()["valid"] is True, r.json()
        r = client.post(
            f"/v1/coupons/{typed[0]}/redeem",
            json={"order_id": "O1", "cart": cart},
            headers={"Idempotency-Key": "redeem-1"},
        )
        assert r.status_code in (200, 201), r.text
        r = client.post(
            f"/v1/coupons/{typed[2]}/rollback",
            json={"order_id": "O1"},
            headers={"Idempotency-Key": "rollback-1"},
        )
        assert r.status_code == 200, r.text

    def test_two_codes_equal_once_normalised_cannot_coexist(self, db: Database) -> None:
        first = _issue(db, "AB-#")
        clash = first.replace("AB-", "A-B")
        assert normalise(clash) == normalise(first)
        with pytest.raises(IntegrityError), db.unit_of_work() as session:
            row = {
                c.name: getattr(session.scalars(select(Coupon)).one(), c.name)
                for c in Coupon.__table__.columns
                if c.name not in ("id", "code", "code_key")
            }
            session.add(Coupon(code=clash, **row))
            session.flush()
