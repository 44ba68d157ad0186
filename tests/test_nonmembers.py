"""Customers who buy without joining (implicit enrolment off): their orders and refunds are
kept (202, no points, idempotent), through the API, the batch, the CSV import and Shopify, and
the dashboard compares members with them: participation, retention and historic CLV."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.analytics import rollups
from lealta.config import Settings
from lealta.imports import service as imports
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Event, Member, NonMemberEvent
from lealta.nonmembers import service as nonmembers
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from tests.conftest import app_for
from tests.factories import order_paid, order_refunded

PLAIN = Programme.model_validate({"name": "Plain", "currency": "EUR"})


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 12, 0, tzinfo=UTC)


@pytest.fixture
def shop(
    db: Database, clock: FixedClock, settings: Settings, server_key: str
) -> Iterator[TestClient]:
    with db.unit_of_work() as session:
        programmes.apply(session, PLAIN, actor="test", now=at(1, 1))
    configured = settings.model_copy(update={"auto_enrol": False, "worker_poll_seconds": 0.01})
    with TestClient(app_for(configured, db=db, clock=clock), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {server_key}"
        yield c


def send(shop: TestClient, clock: FixedClock, payload: dict[str, Any]) -> Any:
    clock.set(datetime.fromisoformat(payload["occurred_at"]))
    return shop.post("/v1/events", json=payload)


def count(db: Database, model: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_an_order_of_a_non_member_is_kept_without_points_and_replays(
    shop: TestClient, clock: FixedClock, db: Database
) -> None:
    r = send(shop, clock, order_paid("e1", "guest-1", "G1", "80.00", at(3, 2)))
    assert r.status_code == 202, r.text
    assert r.json() == {
        "id": "e1", "type": "order.paid", "customer_id": "guest-1", "member": False,
        "order_id": "G1", "amount": "80.00", "currency": "EUR", "points": 0,
    }  # fmt: skip
    again = send(shop, clock, order_paid("e1", "guest-1", "G1", "80.00", at(3, 2)))
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (200, "true")
    assert again.json() == r.json()
    other = order_paid("e1", "guest-1", "G1", "90.00", at(3, 2))
    r2 = shop.post("/v1/events", json=other, headers={"Idempotency-Key": "k2"})
    assert (r2.status_code, r2.json()["error"]["code"]) == (409, "event_id_reused")
    r3 = shop.post("/v1/events", json=other)  # the id is the key: the key was used
    assert (r3.status_code, r3.json()["error"]["code"]) == (409, "idempotency_key_reused")
    same_order = send(shop, clock, order_paid("e2", "guest-1", "G1", "80.00", at(3, 2)))
    assert same_order.json()["error"]["code"] == "order_already_recorded"
    assert (count(db, Member), count(db, Event), count(db, NonMemberEvent)) == (0, 0, 1)


def test_refunds_of_non_members_are_checked_like_members(
    shop: TestClient, clock: FixedClock, db: Database
) -> None:
    send(shop, clock, order_paid("e1", "guest-1", "G1", "80.00", at(3, 2)))
    r = send(shop, clock, order_refunded("e2", "guest-1", "G1", at(3, 4), "30.00"))
    assert (r.status_code, r.json()["amount"]) == (202, "30.00")
    too_much = send(shop, clock, order_refunded("e3", "guest-1", "G1", at(3, 5), "60.00"))
    assert (too_much.status_code, too_much.json()["error"]["code"]) == (409, "refund_exceeds_order")
    unknown = send(shop, clock, order_refunded("e4", "guest-1", "G9", at(3, 5), "1.00"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "order_not_found")
    rest = send(shop, clock, order_refunded("e5", "guest-1", "G1", at(3, 6)))
    assert rest.json()["amount"] == "50.00"  # whatever is left
    wrong = send(shop, clock, order_paid("e6", "guest-2", "G2", "10.00", at(3, 6), currency="USD"))
    assert wrong.json()["error"]["code"] == "currency_mismatch"
    assert count(db, NonMemberEvent) == 3


def test_other_events_of_unknown_customers_are_still_refused(
    shop: TestClient, clock: FixedClock
) -> None:
    clock.set(at(3, 3))
    r = shop.post(
        "/v1/events",
        json={"id": "x1", "type": "review.posted", "customer_id": "guest-1",
              "occurred_at": at(3, 3).isoformat()},
    )  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"]) == (404, "member_not_found")


def test_the_batch_and_the_csv_import_keep_them_too(
    shop: TestClient, clock: FixedClock, db: Database, tmp_path: Path
) -> None:
    clock.set(at(4, 1))
    r = shop.post(
        "/v1/events/batch",
        json={"events": [
            order_paid("b1", "guest-1", "G1", "20.00", at(3, 1)),
            order_refunded("b2", "guest-1", "G1", at(3, 2), "5.00"),
            order_paid("b3", "guest-2", "G1", "20.00", at(3, 1), currency="USD"),
        ]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["processed", "processed", "rejected"]
    assert body["results"][0]["result"]["member"] is False
    assert body["results"][2]["error"]["code"] == "currency_mismatch"
    path = tmp_path / "orders.csv"
    path.write_text(
        "type,event_id,customer_id,order_id,occurred_at,amount,currency\n"
        "order.paid,c1,guest-3,G3,2026-03-03T10:00:00+00:00,40.00,EUR\n"
        "order.paid,c2,guest-1,G1,2026-03-01T12:00:00+00:00,20.00,EUR\n"
    )
    report = imports.import_orders(
        db, path, programme=PLAIN, now=at(4, 1), actor="test", auto_enrol=False
    )
    assert (report.imported, report.replayed) == (1, 0)
    assert [r.code for r in report.rejected] == ["order_already_recorded"]  # G1 came by API
    again = imports.import_orders(
        db, path, programme=PLAIN, now=at(4, 1), actor="test", auto_enrol=False
    )
    assert (again.imported, again.replayed) == (0, 1)
    assert (count(db, Member), count(db, NonMemberEvent)) == (0, 3)


def test_the_dashboard_compares_members_with_non_members(
    shop: TestClient, clock: FixedClock, db: Database, settings: Settings
) -> None:
    # Members: ana buys in Feb and Mar (retained), bea in Feb only.
    for name in ("ana", "bea"):
        clock.set(at(1, 10))
        assert shop.post("/v1/members", json={"external_id": name}).status_code == 201
    send(shop, clock, order_paid("m1", "ana", "A1", "100.00", at(2, 10)))
    send(shop, clock, order_paid("m2", "bea", "B1", "50.00", at(2, 11)))
    send(shop, clock, order_paid("m3", "ana", "A2", "100.00", at(3, 10)))
    # Non-members: gil buys in Feb only; hugo in Feb and Mar, one order refunded by 10 €;
    # iris in Mar; jon bought in Feb and has joined since, so he counts as a member.
    send(shop, clock, order_paid("n1", "gil", "G1", "30.00", at(2, 12)))
    send(shop, clock, order_paid("n2", "hugo", "H1", "40.00", at(2, 13)))
    send(shop, clock, order_paid("n3", "hugo", "H2", "20.00", at(3, 14)))
    send(shop, clock, order_refunded("n4", "hugo", "H2", at(3, 15), "10.00"))
    send(shop, clock, order_paid("n5", "iris", "I1", "60.00", at(3, 16)))
    send(shop, clock, order_paid("n6", "jon", "J1", "99.00", at(2, 17)))
    clock.set(at(3, 20))
    assert shop.post("/v1/members", json={"external_id": "jon"}).status_code == 201
    clock.set(at(4, 1))
    Worker(db, clock=clock, settings=settings, name="nm", schedule=False).run(until_idle=True)
    with db.unit_of_work() as session:  # the five-minute schedule: jon enrolled without an event
        rollups.sync_unseen(session, now=clock.now())

    march = {"start": at(3, 1) - timedelta(hours=12), "end": at(4, 1) - timedelta(hours=12)}
    with db.unit_of_work(write=False) as session:
        f = nonmembers.figures(session, **march)
    assert (f.customers, f.previous_active, f.retained) == (3, 2, 1)  # gil, hugo, iris
    assert f.revenue_to_date_minor == 3_000 + 4_000 + 2_000 - 1_000 + 6_000

    r = shop.get("/v1/analytics/kpis", params={"from": "2026-03-01", "to": "2026-03-31"})
    assert r.status_code == 200, r.text
    k = r.json()["kpis"]
    assert k["participation_rate"] == 0.5  # 3 members (ana, bea, jon) / 6 customers
    assert k["retention_rate"] == 0.5  # ana of {ana, bea}
    assert k["non_member_retention_rate"] == 0.5  # hugo of {gil, hugo}; iris is new
    assert k["non_member_historic_clv"] == "46.67"  # 140 € / 3 buyers


def test_orders_before_joining_are_exported_and_erased_with_the_member(
    shop: TestClient, clock: FixedClock, db: Database
) -> None:
    send(shop, clock, order_paid("n1", "kim", "K1", "25.00", at(3, 1)))
    clock.set(at(3, 2))
    assert shop.post("/v1/members", json={"external_id": "kim"}).status_code == 201
    exported = shop.get("/v1/members/kim/data-export").json()
    assert [o["order_id"] for o in exported["orders_before_joining"]] == ["K1"]
    assert shop.delete("/v1/members/kim").status_code == 200
    assert count(db, NonMemberEvent) == 0
