"""Ledger over HTTP: history pagination, adjustments (audited) and spends."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.kit.db import Database
from lealta.models import AuditLog, LedgerEntry
from tests.conftest import T0
from tests.factories import order_paid


def earn(client: TestClient, customer: str, n: int, *, same_time: bool = False) -> None:
    for i in range(n):
        at = T0 if same_time else T0 - timedelta(hours=n - i)
        r = client.post(
            "/v1/events",
            json=order_paid(f"{customer}-e{i}", customer, f"{customer}-O{i}", f"{i + 1}.00", at),
        )
        assert r.status_code == 201, r.text


def adjust(client: TestClient, customer: str, points: int, reason: str, key: str) -> Any:
    return client.post(
        f"/v1/members/{customer}/adjustments",
        json={"points": points, "reason": reason},
        headers={"Idempotency-Key": key},
    )


def spend(client: TestClient, customer: str, points: int, key: str, **extra: Any) -> Any:
    return client.post(
        f"/v1/members/{customer}/spend",
        json={"points": points, **extra},
        headers={"Idempotency-Key": key},
    )


def walk(client: TestClient, customer: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Follow next_cursor to the end; returns the entries and the number of pages."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = client.get(f"/v1/members/{customer}/ledger", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages


def all_entry_ids(db: Database) -> list[int]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(LedgerEntry.id)))


# --- history ---------------------------------------------------------------------------------


@pytest.mark.parametrize("same_time", [False, True], ids=["spread", "same-instant"])
def test_history_walks_every_entry_once_newest_first(
    client: TestClient, db: Database, same_time: bool
) -> None:
    earn(client, "c1", 7, same_time=same_time)
    items, pages = walk(client, "c1", limit=2)
    ids = [e["id"] for e in items]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(all_entry_ids(db))
    assert pages == 4
    keys = [(e["occurred_at"], e["id"]) for e in items]
    assert keys == sorted(keys, reverse=True)


def test_history_of_exactly_one_page_has_no_cursor(client: TestClient) -> None:
    earn(client, "c1", 2)
    page = client.get("/v1/members/c1/ledger", params={"limit": 2}).json()
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


def test_history_only_shows_the_members_own_entries(client: TestClient) -> None:
    earn(client, "c1", 2)
    earn(client, "c2", 3)
    items, _ = walk(client, "c1", limit=2)
    assert len(items) == 2
    assert {e["source_ref"] for e in items} == {"c1-O0", "c1-O1"}


def test_history_balance_after_tracks_the_running_balance(client: TestClient) -> None:
    earn(client, "c1", 4)
    items, _ = walk(client, "c1", limit=3)
    running = 0
    for entry in reversed(items):
        running += entry["points"]
        assert entry["balance_after"] == running
    assert client.get("/v1/members/c1/balance").json()["available"] == running


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "e30",  # {}
        _cursor(["not a date", 1]),
        _cursor([1, 2, 3]),
        _cursor("just a string"),
        _cursor(["2026-01-05T12:00:00", 5]),  # naive datetime
        _cursor(["2026-01-05T12:00:00+00:00", 10**30]),  # id out of range
        _cursor(["2026-01-05T12:00:00+00:00", "abc"]),
    ],
)
def test_invalid_cursor_is_422_invalid_cursor(client: TestClient, cursor: str) -> None:
    earn(client, "c1", 1)
    for path in ("ledger", "orders"):
        r = client.get(f"/v1/members/c1/{path}", params={"cursor": cursor})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_cursor"


def test_orders_paginate_with_the_same_cursor_scheme(client: TestClient) -> None:
    earn(client, "c1", 5)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/members/c1/orders", params=params).json()
        seen.extend(o["order_id"] for o in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"c1-O{i}" for i in reversed(range(5))]


# --- adjustments -----------------------------------------------------------------------------


def test_positive_adjustment_credits_and_is_audited(client: TestClient, db: Database) -> None:
    client.post("/v1/members", json={"external_id": "c1"})
    r = adjust(client, "c1", 250, "Goodwill: late delivery", "a1")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["entry"]["entry_type"] == "adjust"
    assert body["entry"]["points"] == 250
    assert body["entry"]["reason"] == "Goodwill: late delivery"
    assert body["entry"]["actor"] == "apikey:test-server"
    assert body["balance"]["available"] == 250
    assert body["balance"]["lifetime_earned"] == 250
    with db.unit_of_work(write=False) as session:
        [row] = session.scalars(select(AuditLog)).all()
        assert row.action == "points.adjust"
        assert row.target_id == "c1"
        assert row.reason == "Goodwill: late delivery"
        assert row.actor == "apikey:test-server"
        assert row.details == {"points": 250, "entry_id": body["entry"]["id"]}


def test_negative_adjustment_debits_and_is_audited(client: TestClient, db: Database) -> None:
    earn(client, "c1", 3)  # 1 + 2 + 3 points
    available = client.get("/v1/members/c1/balance").json()["available"]
    r = adjust(client, "c1", -(available - 1), "Duplicate order clawback", "a1")
    assert r.status_code == 201, r.text
    assert r.json()["entry"]["points"] == -(available - 1)
    assert r.json()["balance"]["available"] == 1
    with db.unit_of_work(write=False) as session:
        reasons = list(session.scalars(select(AuditLog.reason)))
    assert reasons == ["Duplicate order clawback"]


def test_failed_adjustment_writes_no_audit_row(client: TestClient, db: Database) -> None:
    client.post("/v1/members", json={"external_id": "c1"})
    assert adjust(client, "c1", -1, "Clawback", "a1").status_code == 409
    with db.unit_of_work(write=False) as session:
        assert session.scalars(select(AuditLog)).all() == []


def test_adjustment_replay_returns_the_first_result(client: TestClient) -> None:
    client.post("/v1/members", json={"external_id": "c1"})
    first = adjust(client, "c1", 10, "Birthday gift", "a1")
    replay = adjust(client, "c1", 10, "Birthday gift", "a1")
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert client.get("/v1/members/c1/balance").json()["available"] == 10


def test_same_key_for_two_members_acts_on_each(client: TestClient) -> None:
    for customer in ("c1", "c2"):
        client.post("/v1/members", json={"external_id": customer})
        assert adjust(client, customer, 10, "Welcome gift", "same-key").status_code == 201
    for customer in ("c1", "c2"):
        assert client.get(f"/v1/members/{customer}/balance").json()["available"] == 10


def test_adjustment_for_a_member_with_a_long_external_id(client: TestClient) -> None:
    long_id = "m" * 128
    assert client.post("/v1/members", json={"external_id": long_id}).status_code == 201
    r = adjust(client, long_id, 5, "Goodwill", "a1")
    assert r.status_code == 201, r.text
    assert spend(client, long_id, 5, "s1").status_code == 201


# --- spend -----------------------------------------------------------------------------------


def test_spend_debits_and_counts_as_spent(client: TestClient) -> None:
    earn(client, "c1", 4)  # 10 points
    before = client.get("/v1/members/c1/balance").json()
    r = spend(client, "c1", 7, "s1", order_id="ORD-7", reason="Paid with points")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["entry"]["entry_type"] == "redeem"
    assert body["entry"]["points"] == -7
    assert body["entry"]["source_ref"] == "ORD-7"
    assert body["balance"]["available"] == before["available"] - 7
    assert body["balance"]["lifetime_spent"] == 7
    assert body["balance"]["lifetime_earned"] == before["lifetime_earned"]


def test_spend_of_the_whole_balance_leaves_zero(client: TestClient) -> None:
    earn(client, "c1", 3)
    available = client.get("/v1/members/c1/balance").json()["available"]
    assert spend(client, "c1", available, "s1").json()["balance"]["available"] == 0
    assert spend(client, "c1", 1, "s2").status_code == 409


def test_spend_replay_does_not_spend_twice(client: TestClient) -> None:
    earn(client, "c1", 4)
    first = spend(client, "c1", 3, "s1")
    for _ in range(5):
        replay = spend(client, "c1", 3, "s1")
        assert replay.status_code == 200
        assert replay.json() == first.json()
    assert client.get("/v1/members/c1/balance").json()["lifetime_spent"] == 3


def test_spend_key_reused_with_other_points_is_409(client: TestClient) -> None:
    earn(client, "c1", 4)
    spend(client, "c1", 3, "s1")
    r = spend(client, "c1", 4, "s1")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_key_reused"
    assert client.get("/v1/members/c1/balance").json()["lifetime_spent"] == 3


def test_spend_of_negative_points_is_422(client: TestClient) -> None:
    earn(client, "c1", 2)
    assert spend(client, "c1", -3, "s1").status_code == 422
    assert client.get("/v1/members/c1/balance").json()["available"] == 3


def test_spend_appears_in_history_first(client: TestClient) -> None:
    earn(client, "c1", 2)
    spend(client, "c1", 2, "s1")
    items, _ = walk(client, "c1", limit=50)
    assert items[0]["entry_type"] == "redeem"
    assert [e["entry_type"] for e in items[1:]] == ["earn", "earn"]
