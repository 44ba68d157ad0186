"""Every client error: its status, the one JSON error shape, and no change to the data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.apikeys import service as apikeys
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import (
    Account,
    AuditLog,
    Event,
    IdempotencyRecord,
    LedgerEntry,
    Member,
    Order,
    OutboxMessage,
)
from tests.conftest import T0
from tests.factories import order_paid, order_refunded

State = dict[str, int]


def snapshot(db: Database) -> State:
    """Row counts and balance sums: anything a failed request must leave alone."""
    with db.unit_of_work(write=False) as session:
        counts = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (
                Member,
                Account,
                LedgerEntry,
                Order,
                Event,
                IdempotencyRecord,
                AuditLog,
                OutboxMessage,
            )
        }
        sums = session.execute(
            select(
                func.coalesce(func.sum(Account.points_available), 0),
                func.coalesce(func.sum(Account.points_shortfall), 0),
                func.coalesce(func.sum(Account.qualifying_spend_minor), 0),
            )
        ).one()
    return {**counts, "available": sums[0], "shortfall": sums[1], "spend": sums[2]}


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
def seeded(client: TestClient) -> Iterator[TestClient]:
    """Member c1 with 100 points from order O1 (100.00 EUR)."""
    r = client.post("/v1/events", json=order_paid("seed-1", "c1", "O1", "100.00", T0))
    assert r.status_code == 201, r.text
    yield client


def _unchanged(db: Database, before: State) -> None:
    assert snapshot(db) == before


# --- unknown member --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["", "/balance", "/ledger", "/orders"], ids=["member", "balance", "ledger", "orders"]
)
def test_reading_unknown_member_is_404_member_not_found(
    seeded: TestClient, db: Database, path: str
) -> None:
    before = snapshot(db)
    err = assert_error(seeded.get(f"/v1/members/nobody{path}"), 404, "member_not_found")
    assert err["details"] == {"external_id": "nobody"}
    _unchanged(db, before)


@pytest.mark.parametrize("path", ["adjustments", "spend"])
def test_writing_points_for_unknown_member_is_404(
    seeded: TestClient, db: Database, path: str
) -> None:
    before = snapshot(db)
    r = seeded.post(
        f"/v1/members/nobody/{path}",
        json={"points": 5, "reason": "Because"},
        headers={"Idempotency-Key": f"k-{path}"},
    )
    assert_error(r, 404, "member_not_found")
    _unchanged(db, before)


# --- money -----------------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["XXX", "EURO", "E1R"])
def test_unknown_currency_is_422_invalid_currency(
    seeded: TestClient, db: Database, currency: str
) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_paid("e2", "c2", "O2", "10.00", T0, currency=currency))
    assert_error(r, 422, "invalid_currency")
    _unchanged(db, before)


def test_currency_other_than_the_programme_is_422_currency_mismatch(
    seeded: TestClient, db: Database
) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_paid("e2", "c1", "O2", "10.00", T0, currency="USD"))
    err = assert_error(r, 422, "currency_mismatch")
    assert err["details"] == {"expected": "EUR", "got": "USD"}
    _unchanged(db, before)


def test_negative_order_total_is_422(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    assert_error(seeded.post("/v1/events", json=order_paid("e2", "c1", "O2", "-1.00", T0)), 422)
    _unchanged(db, before)


def test_negative_refund_amount_is_422(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_refunded("r1", "c1", "O1", T0, amount="-5.00"))
    assert_error(r, 422)
    _unchanged(db, before)


@pytest.mark.parametrize("total", ["10.001", "0.999"])
def test_more_decimals_than_the_currency_allows_is_422_invalid_amount(
    seeded: TestClient, db: Database, total: str
) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_paid("e2", "c1", "O2", total, T0))
    err = assert_error(r, 422, "invalid_amount")
    assert err["details"]["field"] == "order.total"
    _unchanged(db, before)


def test_absurdly_large_order_total_is_422_not_a_server_error(
    seeded: TestClient, db: Database
) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_paid("e2", "c1", "O2", "999999999999999999", T0))
    assert_error(r, 422)
    _unchanged(db, before)


def test_refund_of_zero_is_422_not_a_conflict(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_refunded("r1", "c1", "O1", T0, amount="0"))
    assert_error(r, 422, "invalid_amount")
    _unchanged(db, before)


# --- malformed requests ----------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{", b'{"id": "e1",}', b"not json", b'{"a": 1} trailing'])
def test_malformed_json_is_400_malformed_json(seeded: TestClient, db: Database, raw: bytes) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "malformed_json")
    _unchanged(db, before)


def test_batch_of_1001_events_is_413_batch_too_large(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    events = [order_paid(f"b{i}", "c1", f"BO{i}", "1.00", T0) for i in range(1001)]
    err = assert_error(
        seeded.post("/v1/events/batch", json={"events": events}), 413, "batch_too_large"
    )
    assert err["details"] == {"max": 1000, "got": 1001}
    _unchanged(db, before)


def test_body_over_the_limit_is_413(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    limit = seeded.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    raw = b'{"pad": "' + b"x" * limit + b'"}'
    r = seeded.post("/v1/events", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    _unchanged(db, before)


def test_chunked_body_over_the_limit_is_413(seeded: TestClient, db: Database) -> None:
    """No Content-Length to refuse up front: the limit must still hold while streaming."""
    before = snapshot(db)
    limit = seeded.app.state.settings.max_body_bytes  # type: ignore[attr-defined]

    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    r = seeded.post("/v1/events", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    _unchanged(db, before)


def test_event_without_id_or_header_is_missing_idempotency_key(
    seeded: TestClient, db: Database
) -> None:
    before = snapshot(db)
    event = order_paid("x", "c1", "O2", "10.00", T0)
    del event["id"]
    err = assert_error(seeded.post("/v1/events", json=event), 400, "missing_idempotency_key")
    assert "Idempotency-Key" in err["message"]
    _unchanged(db, before)


@pytest.mark.parametrize("path", ["adjustments", "spend"])
def test_points_write_without_header_is_missing_idempotency_key(
    seeded: TestClient, db: Database, path: str
) -> None:
    before = snapshot(db)
    r = seeded.post(f"/v1/members/c1/{path}", json={"points": 5, "reason": "Because"})
    assert_error(r, 400, "missing_idempotency_key")
    _unchanged(db, before)


def test_event_id_reused_with_a_different_body_is_409(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_paid("seed-1", "c1", "O1", "99.00", T0))
    err = assert_error(r, 409, "idempotency_key_reused")
    assert err["details"] == {"key": "seed-1"}
    _unchanged(db, before)


def test_header_key_reused_with_a_different_adjustment_is_409(
    seeded: TestClient, db: Database
) -> None:
    headers = {"Idempotency-Key": "adj-1"}
    first = seeded.post(
        "/v1/members/c1/adjustments", json={"points": 5, "reason": "Goodwill"}, headers=headers
    )
    assert first.status_code == 201, first.text
    before = snapshot(db)
    r = seeded.post(
        "/v1/members/c1/adjustments", json={"points": 6, "reason": "Goodwill"}, headers=headers
    )
    assert_error(r, 409, "idempotency_key_reused")
    _unchanged(db, before)


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_api_key"),
        ("Bearer ", "missing_api_key"),
        ("Bearer not-a-key", "invalid_api_key"),
        ("Bearer lea_deadbeef_secret", "invalid_api_key"),
        ("Basic dXNlcjpwYXNz", "missing_api_key"),
    ],
)
def test_missing_or_invalid_api_key_is_401(
    seeded: TestClient, db: Database, authorization: str | None, code: str
) -> None:
    before = snapshot(db)
    headers = {"Authorization": authorization} if authorization else {}
    anon = TestClient(seeded.app, raise_server_exceptions=False)
    r = anon.post("/v1/events", json=order_paid("e9", "c9", "O9", "1.00", T0), headers=headers)
    assert_error(r, 401, code)
    assert_error(anon.get("/v1/members/c1/balance", headers=headers), 401, code)
    _unchanged(db, before)


def test_wrong_secret_for_a_real_prefix_is_401(
    seeded: TestClient, db: Database, server_key: str
) -> None:
    before = snapshot(db)
    forged = server_key[:-4] + ("AAAA" if not server_key.endswith("AAAA") else "BBBB")
    r = seeded.get("/v1/members/c1", headers={"Authorization": f"Bearer {forged}"})
    assert_error(r, 401, "invalid_api_key")
    _unchanged(db, before)


def test_revoked_api_key_is_401(
    seeded: TestClient, db: Database, clock: FixedClock, server_key: str
) -> None:
    with db.unit_of_work() as session:
        apikeys.revoke(session, server_key.split("_")[1], now=clock.now())
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_paid("e9", "c9", "O9", "1.00", T0))
    assert_error(r, 401, "revoked_api_key")
    _unchanged(db, before)


def test_x_api_key_header_is_accepted(seeded: TestClient, server_key: str) -> None:
    anon = TestClient(seeded.app, raise_server_exceptions=False)
    assert anon.get("/v1/members/c1", headers={"X-API-Key": server_key}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/events", order_paid("e9", "c1", "O9", "1.00", T0)),
        ("/v1/events/batch", {"events": [order_paid("e9", "c1", "O9", "1.00", T0)]}),
        ("/v1/members", {"external_id": "new"}),
        ("/v1/members/c1/adjustments", {"points": 5, "reason": "Because"}),
        ("/v1/members/c1/spend", {"points": 5}),
        ("/v1/members/c1/consents", {"purpose": "marketing_email", "granted": True}),
    ],
)
def test_read_key_writing_is_403_insufficient_scope(
    seeded: TestClient, db: Database, read_key: str, path: str, body: dict[str, Any]
) -> None:
    before = snapshot(db)
    headers = {"Authorization": f"Bearer {read_key}", "Idempotency-Key": "k"}
    assert_error(seeded.post(path, json=body, headers=headers), 403, "insufficient_scope")
    _unchanged(db, before)


def test_read_key_may_read(seeded: TestClient, read_key: str) -> None:
    r = seeded.get("/v1/members/c1/balance", headers={"Authorization": f"Bearer {read_key}"})
    assert r.status_code == 200
    assert r.json()["available"] == 100


# --- business conflicts ----------------------------------------------------------------------


def test_order_recorded_twice_under_different_event_ids_is_409(
    seeded: TestClient, db: Database
) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_paid("other-id", "c1", "O1", "100.00", T0))
    err = assert_error(r, 409, "order_already_recorded")
    assert err["details"] == {"order_id": "O1"}
    _unchanged(db, before)


def test_refund_over_the_order_total_is_409(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_refunded("r1", "c1", "O1", T0, amount="100.01"))
    err = assert_error(r, 409, "refund_exceeds_order")
    assert err["details"]["refundable_minor"] == 10000
    _unchanged(db, before)


def test_refund_of_an_already_refunded_order_is_409(seeded: TestClient, db: Database) -> None:
    assert seeded.post("/v1/events", json=order_refunded("r1", "c1", "O1", T0)).status_code == 201
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_refunded("r2", "c1", "O1", T0))
    assert_error(r, 409, "refund_exceeds_order")
    _unchanged(db, before)


def test_refund_of_unknown_order_is_404_order_not_found(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_refunded("r1", "c1", "NOPE", T0))
    assert_error(r, 404, "order_not_found")
    _unchanged(db, before)


def test_refund_for_unknown_customer_enrols_nobody(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_refunded("r1", "ghost", "O1", T0))
    assert_error(r, 404, "order_not_found")
    _unchanged(db, before)


def test_refund_of_another_customers_order_is_404(seeded: TestClient, db: Database) -> None:
    assert seeded.post("/v1/members", json={"external_id": "c2"}).status_code == 201
    before = snapshot(db)
    r = seeded.post("/v1/events", json=order_refunded("r1", "c2", "O1", T0))
    assert_error(r, 404, "order_not_found")
    _unchanged(db, before)


def test_spend_beyond_balance_is_409_insufficient_points(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/members/c1/spend", json={"points": 101}, headers={"Idempotency-Key": "s1"})
    err = assert_error(r, 409, "insufficient_points")
    assert err["details"] == {"available": 100, "requested": 101}
    _unchanged(db, before)


def test_negative_adjustment_beyond_balance_is_409_insufficient_points(
    seeded: TestClient, db: Database
) -> None:
    before = snapshot(db)
    r = seeded.post(
        "/v1/members/c1/adjustments",
        json={"points": -101, "reason": "Clawback"},
        headers={"Idempotency-Key": "a1"},
    )
    assert_error(r, 409, "insufficient_points")
    _unchanged(db, before)


@pytest.mark.parametrize(
    "body",
    [
        {"points": 5},
        {"points": 5, "reason": ""},
        {"points": 5, "reason": "  "},
        {"points": 5, "reason": "ab"},
    ],
    ids=["absent", "empty", "blank", "too-short"],
)
def test_adjustment_without_a_reason_is_422(
    seeded: TestClient, db: Database, body: dict[str, Any]
) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/members/c1/adjustments", json=body, headers={"Idempotency-Key": "a1"})
    err = assert_error(r, 422, "validation_error")
    assert err["details"][0]["loc"][-1] == "reason"
    _unchanged(db, before)


def test_adjustment_of_zero_points_is_422_zero_points(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.post(
        "/v1/members/c1/adjustments",
        json={"points": 0, "reason": "Nothing"},
        headers={"Idempotency-Key": "a1"},
    )
    assert_error(r, 422, "zero_points")
    _unchanged(db, before)


def test_spend_of_zero_points_is_422(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.post("/v1/members/c1/spend", json={"points": 0}, headers={"Idempotency-Key": "s"})
    assert_error(r, 422, "validation_error")
    _unchanged(db, before)


# --- time and shape --------------------------------------------------------------------------


def test_event_in_the_future_is_422_occurred_in_future(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    future = order_paid("e2", "c1", "O2", "1.00", T0 + timedelta(hours=1))
    r = seeded.post("/v1/events", json=future)
    assert_error(r, 422, "occurred_in_future")
    _unchanged(db, before)


def test_event_within_clock_skew_is_accepted(seeded: TestClient) -> None:
    r = seeded.post(
        "/v1/events", json=order_paid("e2", "c1", "O2", "1.00", T0 + timedelta(minutes=4))
    )
    assert r.status_code == 201, r.text


def test_naive_datetime_is_422(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    event = order_paid("e2", "c1", "O2", "1.00", T0)
    event["occurred_at"] = "2026-01-05T10:00:00"
    err = assert_error(seeded.post("/v1/events", json=event), 422, "validation_error")
    assert err["details"][0]["loc"] == ["body", "occurred_at"]
    _unchanged(db, before)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/events", {**order_paid("e2", "c1", "O2", "1.00", T0), "colour": "red"}),
        (
            "/v1/events",
            order_paid("e2", "c1", "O2", "1.00", T0)
            | {"order": {"id": "O2", "total": "1.00", "currency": "EUR", "coupon": "X"}},
        ),
        ("/v1/members", {"external_id": "n1", "nickname": "Bob"}),
        ("/v1/members/c1/adjustments", {"points": 5, "reason": "Because", "by": "me"}),
        ("/v1/events/batch", {"events": [], "extra": 1}),
    ],
    ids=["event", "order", "member", "adjustment", "batch"],
)
def test_unknown_fields_are_422(
    seeded: TestClient, db: Database, path: str, body: dict[str, Any]
) -> None:
    before = snapshot(db)
    assert_error(seeded.post(path, json=body, headers={"Idempotency-Key": "k"}), 422)
    _unchanged(db, before)


def test_order_paid_without_order_is_422(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    event = order_paid("e2", "c1", "O2", "1.00", T0)
    del event["order"]
    assert_error(seeded.post("/v1/events", json=event), 422, "validation_error")
    _unchanged(db, before)


def test_unknown_route_is_404_in_the_error_shape(seeded: TestClient) -> None:
    assert_error(seeded.get("/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_in_the_error_shape(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    r = seeded.put("/v1/members/c1", json={})
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]
    _unchanged(db, before)


def test_invalid_query_parameter_is_422(seeded: TestClient) -> None:
    assert_error(seeded.get("/v1/members/c1/ledger?limit=0"), 422, "validation_error")
    assert_error(seeded.get("/v1/members/c1/ledger?limit=abc"), 422, "validation_error")


# --- values no database stores alike ---------------------------------------------------------


def _raw_post(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    raw = json.dumps(body, allow_nan=True).encode()
    return client.post(path, content=raw, headers={"Content-Type": "application/json", **headers})


def _event_with(**changes: Any) -> dict[str, Any]:
    return order_paid("e2", "c2", "O2", "1.00", T0) | changes


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/events", _event_with(customer_id="c\x00")),
        ("/v1/events", _event_with(properties={"note": "a\x00b"})),
        ("/v1/events", _event_with(properties={"k\x00": 1})),
        ("/v1/events", _event_with(properties={"x": float("nan")})),
        ("/v1/events", _event_with(properties={"x": [float("inf")]})),
        ("/v1/members", {"external_id": "n1", "name": "A\x00"}),
        ("/v1/members", {"external_id": "n1", "attributes": {"score": float("inf")}}),
        ("/v1/members/c1/adjustments", {"points": 5, "reason": "Good\x00will"}),
    ],
    ids=[
        "nul-id",
        "nul-value",
        "nul-key",
        "nan",
        "inf-in-list",
        "nul-name",
        "inf-attr",
        "nul-reason",
    ],
)
def test_nul_characters_and_non_finite_numbers_are_422(
    seeded: TestClient, db: Database, path: str, body: dict[str, Any]
) -> None:
    before = snapshot(db)
    r = _raw_post(seeded, path, body, **{"Idempotency-Key": "k1"})
    assert_error(r, 422, "validation_error")
    _unchanged(db, before)


def test_nul_character_in_a_batch_rejects_only_that_event(seeded: TestClient, db: Database) -> None:
    events = [_event_with(customer_id="c\x00"), order_paid("e3", "c1", "O3", "2.00", T0)]
    body = _raw_post(seeded, "/v1/events/batch", {"events": events}).json()
    assert [r["status"] for r in body["results"]] == ["rejected", "processed"]
    assert seeded.get("/v1/members/c1/balance").json()["available"] == 102


def test_nul_character_in_the_path_is_a_client_error(seeded: TestClient) -> None:
    r = seeded.get("/v1/members/c%00/balance")
    assert 400 <= r.status_code < 500
    assert_error(r, r.status_code)


def test_integer_property_beyond_64_bits_is_accepted_and_replayable(seeded: TestClient) -> None:
    event = _event_with(properties={"n": 10**30})
    first = seeded.post("/v1/events", json=event)
    assert first.status_code == 201, first.text
    replay = seeded.post("/v1/events", json=event)
    assert replay.status_code == 200
    assert replay.json() == first.json()
