"""Event ingestion over HTTP: idempotency, refunds, batches, implicit enrolment, ops routes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.kit.db import Database
from lealta.models import Event, LedgerEntry, Member, Order
from tests.conftest import T0
from tests.factories import order_paid, order_refunded


def balance(client: TestClient, customer: str) -> dict[str, Any]:
    r = client.get(f"/v1/members/{customer}/balance")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def ledger(client: TestClient, customer: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/members/{customer}/ledger", params={"limit": 200})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def orders(client: TestClient, customer: str) -> dict[str, dict[str, Any]]:
    r = client.get(f"/v1/members/{customer}/orders")
    assert r.status_code == 200, r.text
    return {o["order_id"]: o for o in r.json()["items"]}


def post_event(client: TestClient, event: dict[str, Any], status: int = 201) -> dict[str, Any]:
    r = client.post("/v1/events", json=event)
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def count(db: Database, model: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# --- idempotency -----------------------------------------------------------------------------


def test_first_order_paid_is_201_and_earns_by_the_base_rate(client: TestClient) -> None:
    body = post_event(client, order_paid("e1", "c1", "O1", "59.90", T0))
    assert body["points_delta"] == 59
    assert [p["entry_type"] for p in body["postings"]] == ["earn"]
    assert body["balance"]["available"] == 59
    assert body["event_id"] == "e1"


def test_replaying_an_event_1000_times_earns_once(client: TestClient, db: Database) -> None:
    event = order_paid("e1", "c1", "O1", "120.50", T0)
    first = client.post("/v1/events", json=event)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    for _ in range(1000):
        replay = client.post("/v1/events", json=event)
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()
    earns = [e for e in ledger(client, "c1") if e["entry_type"] == "earn"]
    assert len(earns) == 1
    assert balance(client, "c1")["available"] == first.json()["points_delta"]
    assert count(db, Event) == 1


def test_replay_with_idempotency_key_header_earns_once(client: TestClient) -> None:
    event = order_paid("x", "c1", "O1", "80.00", T0)
    del event["id"]
    headers = {"Idempotency-Key": "checkout-7781"}
    first = client.post("/v1/events", json=event, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["event_id"] == "checkout-7781"
    for _ in range(50):
        replay = client.post("/v1/events", json=event, headers=headers)
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()
    assert len(ledger(client, "c1")) == 1
    assert balance(client, "c1")["available"] == first.json()["points_delta"]


def test_header_key_takes_precedence_over_event_id(client: TestClient) -> None:
    event = order_paid("evt-a", "c1", "O1", "10.00", T0)
    r = client.post("/v1/events", json=event, headers={"Idempotency-Key": "hdr-1"})
    assert r.status_code == 201
    assert r.json()["event_id"] == "hdr-1"
    again = client.post("/v1/events", json=event, headers={"Idempotency-Key": "hdr-1"})
    assert again.status_code == 200


def test_replay_after_later_activity_returns_the_original_balance(client: TestClient) -> None:
    event = order_paid("e1", "c1", "O1", "10.00", T0)
    first = post_event(client, event)
    post_event(client, order_paid("e2", "c1", "O2", "20.00", T0))
    replay = client.post("/v1/events", json=event)
    assert replay.status_code == 200
    assert replay.json() == first
    assert balance(client, "c1")["available"] == first["points_delta"] + 20


def test_failed_event_does_not_burn_its_key(client: TestClient) -> None:
    bad = order_paid("e1", "c1", "O1", "10.00", T0 + timedelta(days=1))
    assert client.post("/v1/events", json=bad).status_code == 422
    good = order_paid("e1", "c1", "O1", "10.00", T0)
    assert client.post("/v1/events", json=good).status_code == 201


def test_batch_with_duplicated_ids_processes_each_id_once(client: TestClient, db: Database) -> None:
    event = order_paid("dup", "c1", "O1", "30.00", T0)
    r = client.post("/v1/events/batch", json={"events": [event, event, event]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["processed"], body["replayed"], body["rejected"]) == (1, 2, 0)
    assert [item["status"] for item in body["results"]] == ["processed", "replayed", "replayed"]
    assert body["results"][1]["result"] == body["results"][0]["result"]
    assert len(ledger(client, "c1")) == 1
    assert balance(client, "c1")["available"] == body["results"][0]["result"]["points_delta"]
    assert count(db, Event) == 1


def test_batch_replays_an_event_already_sent_alone(client: TestClient) -> None:
    event = order_paid("e1", "c1", "O1", "30.00", T0)
    first = post_event(client, event)
    body = client.post("/v1/events/batch", json={"events": [event]}).json()
    assert body["results"][0]["status"] == "replayed"
    assert body["results"][0]["result"] == first


# --- refunds ---------------------------------------------------------------------------------


def test_full_refund_reverses_exactly_what_was_earned(client: TestClient) -> None:
    earned = post_event(client, order_paid("e1", "c1", "O1", "87.65", T0))["points_delta"]
    refund = post_event(client, order_refunded("r1", "c1", "O1", T0))
    assert refund["points_delta"] == -earned
    bal = balance(client, "c1")
    assert bal["available"] == 0
    assert bal["lifetime_earned"] == 0
    assert Decimal(bal["qualifying_spend"]) == 0
    assert orders(client, "c1")["O1"]["status"] == "refunded"


@pytest.mark.parametrize(
    ("total", "parts"),
    [
        ("99.99", ["10.00"] * 9 + ["9.99"]),
        ("100.00", ["33.33", "33.33", "33.34"]),
        ("7.00", ["0.01", "3.00", "3.99"]),
        ("1234.56", ["0.99", "1000.00", "233.57"]),
    ],
)
def test_partial_refunds_summing_to_the_total_reverse_exactly_what_was_earned(
    client: TestClient, total: str, parts: list[str]
) -> None:
    assert sum(Decimal(p) for p in parts) == Decimal(total)
    earned = post_event(client, order_paid("e1", "c1", "O1", total, T0))["points_delta"]
    reversed_so_far = 0
    refunded = Decimal(0)
    for i, part in enumerate(parts):
        result = post_event(client, order_refunded(f"r{i}", "c1", "O1", T0, amount=part))
        reversed_so_far -= result["points_delta"]
        refunded += Decimal(part)
        assert 0 <= reversed_so_far <= earned
        # pro rata on cumulative figures: never ahead of the refunded share
        assert reversed_so_far <= earned * refunded / Decimal(total)
        assert Decimal(balance(client, "c1")["qualifying_spend"]) == Decimal(total) - refunded
        expected_status = "refunded" if refunded == Decimal(total) else "partially_refunded"
        order = orders(client, "c1")["O1"]
        assert order["status"] == expected_status
        assert Decimal(order["refunded"]) == refunded
        assert order["points_reversed"] == reversed_so_far
    assert reversed_so_far == earned
    assert balance(client, "c1")["available"] == 0


def test_refund_without_amount_takes_what_is_left(client: TestClient) -> None:
    earned = post_event(client, order_paid("e1", "c1", "O1", "50.00", T0))["points_delta"]
    first = post_event(client, order_refunded("r1", "c1", "O1", T0, amount="20.00"))
    rest = post_event(client, order_refunded("r2", "c1", "O1", T0))
    assert -(first["points_delta"] + rest["points_delta"]) == earned
    order = orders(client, "c1")["O1"]
    assert order["status"] == "refunded"
    assert Decimal(order["refunded"]) == Decimal(order["total"])


def test_refund_after_partial_spend_records_shortfall_and_never_goes_negative(
    client: TestClient,
) -> None:
    earned = post_event(client, order_paid("e1", "c1", "O1", "100.00", T0))["points_delta"]
    spent = earned - 20
    r = client.post(
        "/v1/members/c1/spend", json={"points": spent}, headers={"Idempotency-Key": "s1"}
    )
    assert r.status_code == 201, r.text
    refund = post_event(client, order_refunded("r1", "c1", "O1", T0))
    [posting] = refund["postings"]
    assert posting["entry_type"] == "reverse"
    assert posting["points"] == -(earned - spent)
    assert posting["shortfall"] == spent
    bal = balance(client, "c1")
    assert bal["available"] == 0
    assert bal["shortfall"] == spent
    assert bal["lifetime_spent"] == spent
    assert all(e["balance_after"] >= 0 for e in ledger(client, "c1"))
    assert orders(client, "c1")["O1"]["points_reversed"] == earned


def test_refund_prefers_the_points_of_the_refunded_order(client: TestClient) -> None:
    post_event(client, order_paid("e1", "c1", "O1", "40.00", T0 - timedelta(days=2)))
    post_event(client, order_paid("e2", "c1", "O2", "60.00", T0 - timedelta(days=1)))
    spend = client.post(
        "/v1/members/c1/spend", json={"points": 40}, headers={"Idempotency-Key": "s1"}
    )
    assert spend.status_code == 201
    # FIFO took O1's 40 points; refunding O2 must find its own 60 still there.
    refund = post_event(client, order_refunded("r1", "c1", "O2", T0))
    assert refund["postings"][0]["shortfall"] == 0
    assert refund["points_delta"] == -60
    assert balance(client, "c1")["available"] == 0


def test_refund_currency_other_than_the_orders_is_422(client: TestClient) -> None:
    post_event(client, order_paid("e1", "c1", "O1", "40.00", T0))
    event = order_refunded("r1", "c1", "O1", T0, amount="1.00")
    event["refund"]["currency"] = "USD"
    r = client.post("/v1/events", json=event)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "currency_mismatch"
    assert orders(client, "c1")["O1"]["status"] == "paid"


def test_orders_endpoint_lists_items_and_amounts(client: TestClient) -> None:
    items = [{"sku": "A", "category": "home", "quantity": 2, "unit_price": "5.25"}]
    post_event(client, order_paid("e1", "c1", "O1", "10.50", T0, items=items))
    order = orders(client, "c1")["O1"]
    assert Decimal(order["total"]) == Decimal("10.50")
    assert order["items"] == [{"sku": "A", "category": "home", "quantity": 2, "unit_price": "5.25"}]
    assert order["status"] == "paid"


# --- batches ---------------------------------------------------------------------------------


def test_batch_mixes_valid_and_invalid_events_in_input_order(
    client: TestClient, db: Database
) -> None:
    events: list[dict[str, Any]] = [
        order_paid("b0", "c1", "O1", "10.00", T0),
        {"id": "b1", "type": "order.paid", "customer_id": "c1"},  # schema error
        order_paid("b2", "c9", "O9", "10.00", T0, currency="USD"),  # business error
        order_paid("b3", "c2", "O2", "25.00", T0),
        order_refunded("b4", "c1", "NOPE", T0),  # unknown order
    ]
    r = client.post("/v1/events/batch", json={"events": events})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [item["index"] for item in body["results"]] == list(range(len(events)))
    statuses = [item["status"] for item in body["results"]]
    assert statuses == ["processed", "rejected", "rejected", "processed", "rejected"]
    assert (body["processed"], body["replayed"], body["rejected"]) == (2, 0, 3)
    codes = [item["error"]["code"] for item in body["results"] if item["error"]]
    assert codes == ["validation_error", "currency_mismatch", "order_not_found"]
    for item in body["results"]:
        if item["status"] == "rejected":
            assert set(item["error"]) == {"code", "message", "details"}
            assert item["result"] is None
    # the rejected ones left nothing behind
    with db.unit_of_work(write=False) as session:
        members = set(session.scalars(select(Member.external_id)))
        assert members == {"c1", "c2"}
        assert set(session.scalars(select(Order.external_id))) == {"O1", "O2"}
        assert set(session.scalars(select(Event.idempotency_key))) == {"b0", "b3"}
    assert count(db, LedgerEntry) == 2


def test_batch_processes_in_occurred_at_order(client: TestClient) -> None:
    later = order_refunded("b0", "c1", "O1", T0 - timedelta(hours=1))
    earlier = order_paid("b1", "c1", "O1", "40.00", T0 - timedelta(hours=2))
    body = client.post("/v1/events/batch", json={"events": [later, earlier]}).json()
    assert [item["status"] for item in body["results"]] == ["processed", "processed"]
    assert body["results"][0]["result"]["type"] == "order.refunded"
    assert body["results"][0]["result"]["points_delta"] == -40
    assert balance(client, "c1")["available"] == 0
    history = ledger(client, "c1")
    assert [e["entry_type"] for e in history] == ["reverse", "earn"]


def test_batch_event_without_id_is_rejected_alone(client: TestClient) -> None:
    anonymous = order_paid("x", "c1", "O1", "10.00", T0)
    del anonymous["id"]
    body = client.post(
        "/v1/events/batch", json={"events": [anonymous, order_paid("b1", "c1", "O2", "5.00", T0)]}
    ).json()
    assert body["results"][0]["error"]["code"] == "missing_idempotency_key"
    assert body["results"][1]["status"] == "processed"
    assert balance(client, "c1")["available"] == 5


def test_batch_duplicate_order_under_two_ids_rejects_the_second(client: TestClient) -> None:
    events = [order_paid("b0", "c1", "O1", "10.00", T0), order_paid("b1", "c1", "O1", "10.00", T0)]
    body = client.post("/v1/events/batch", json={"events": events}).json()
    assert body["results"][1]["error"]["code"] == "order_already_recorded"
    assert balance(client, "c1")["available"] == 10


def test_empty_batch_is_422(client: TestClient) -> None:
    r = client.post("/v1/events/batch", json={"events": []})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"


def test_batch_of_exactly_1000_events_is_accepted(client: TestClient) -> None:
    events = [
        {"id": f"v{i}", "type": "page.viewed", "customer_id": "c1", "occurred_at": T0.isoformat()}
        for i in range(1000)
    ]
    body = client.post("/v1/events/batch", json={"events": events}).json()
    assert body["processed"] == 1000


# --- custom events and enrolment -------------------------------------------------------------


def test_custom_event_is_recorded_without_points(client: TestClient, db: Database) -> None:
    body = post_event(
        client,
        {
            "id": "v1",
            "type": "review.posted",
            "customer_id": "c1",
            "occurred_at": T0.isoformat(),
            "properties": {"stars": 5},
        },
    )
    assert body["postings"] == []
    assert body["points_delta"] == 0
    assert count(db, Event) == 1


def test_first_event_enrols_the_customer_with_its_profile(client: TestClient) -> None:
    event = order_paid("e1", "new-1", "O1", "10.00", T0 - timedelta(days=3))
    event["customer"] = {
        "email": "ana@example.com",
        "name": "Ana",
        "language": "en",
        "attributes": {"vip": True},
        "tags": ["web"],
    }
    event["order"]["channel"] = "web"
    post_event(client, event)
    member = client.get("/v1/members/new-1").json()
    assert member["email"] == "ana@example.com"
    assert member["name"] == "Ana"
    assert member["language"] == "en"
    assert member["attributes"] == {"vip": True}
    assert member["tags"] == ["web"]
    assert member["enrolment_channel"] == "web"
    assert member["enrolled_at"].startswith((T0 - timedelta(days=3)).date().isoformat())


def test_profile_on_a_later_event_does_not_overwrite_the_member(client: TestClient) -> None:
    assert client.post("/v1/members", json={"external_id": "c1", "name": "Ana"}).status_code == 201
    event = order_paid("e1", "c1", "O1", "10.00", T0)
    event["customer"] = {"name": "Other"}
    post_event(client, event)
    assert client.get("/v1/members/c1").json()["name"] == "Ana"


def test_invalid_profile_on_an_event_is_422_and_enrols_nobody(client: TestClient) -> None:
    event = order_paid("e1", "c1", "O1", "10.00", T0)
    event["customer"] = {"email": "not-an-email"}
    assert client.post("/v1/events", json=event).status_code == 422
    assert client.get("/v1/members/c1").status_code == 404


# --- ops and documentation -------------------------------------------------------------------


def test_health_is_ok(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_ready_reports_the_database(client: TestClient, db: Database) -> None:
    r = client.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "database": db.dialect}


def test_metrics_count_requests(client: TestClient) -> None:
    client.get("/health")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert "lealta_http_requests_total" in r.text
    assert 'route="/health"' in r.text


def test_responses_carry_a_request_id(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-Id": "abc"}).headers["x-request-id"] == "abc"
    assert len(client.get("/health").headers["x-request-id"]) == 32


def test_openapi_is_3_1_with_event_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    post = spec["paths"]["/v1/events"]["post"]
    body_schema = post["requestBody"]["content"]["application/json"]["schema"]
    ref = body_schema["$ref"].rsplit("/", 1)[-1]
    examples = spec["components"]["schemas"][ref]["examples"]
    assert {e["type"] for e in examples} >= {"order.paid", "order.refunded"}
    batch = spec["paths"]["/v1/events/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["examples"]
    assert "ErrorResponse" in spec["components"]["schemas"]


def test_openapi_examples_are_accepted_by_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ref = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["$ref"].rsplit("/", 1)[-1]
    examples = spec["components"]["schemas"][ref]["examples"]
    clock = client.app.state.clock  # type: ignore[attr-defined]
    clock.set(T0 + timedelta(days=400))
    for example in examples:
        r = client.post("/v1/events", json=example)
        assert r.status_code == 201, r.text


def test_docs_are_html(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "swagger" in r.text.lower()


def test_one_header_key_with_two_different_event_ids_is_a_reused_key(client: TestClient) -> None:
    headers = {"Idempotency-Key": "hdr-1"}
    first = client.post(
        "/v1/events", json=order_paid("a", "c1", "O1", "10.00", T0), headers=headers
    )
    assert first.status_code == 201
    other = client.post(
        "/v1/events", json=order_paid("b", "c1", "O1", "10.00", T0), headers=headers
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    again = client.post(
        "/v1/events", json=order_paid("a", "c1", "O1", "10.00", T0), headers=headers
    )
    assert again.status_code == 200 and again.json() == first.json()
