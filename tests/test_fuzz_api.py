"""Arbitrary JSON at the write endpoints: never a 5xx, and every 4xx in the error shape.

Bodies are encoded by hand so they may carry what Python's JSON parser accepts but a strict
client would never send (NaN, Infinity, huge integers, NUL characters).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from lealta.kit.db import Database
from lealta.models import LedgerEntry, Member
from tests.conftest import T0
from tests.factories import order_paid, order_refunded

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "",
            "EUR",
            "usd",
            "2026-01-05T12:00:00Z",
            "2026-01-05",
            "1e400",
            "-0.00",
            "order.paid",
            "order.refunded",
            "\x00",
            "c1",
            "O1",
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


def valid_events() -> list[dict[str, Any]]:
    paid = order_paid(
        "f1", "c1", "O1", "12.34", T0, items=[{"sku": "A", "quantity": 1, "unit_price": "12.34"}]
    )
    paid["customer"] = {"email": "a@example.com", "attributes": {"k": 1}, "tags": ["t"]}
    paid["properties"] = {"source": "web"}
    return [
        paid,
        order_refunded("f2", "c1", "O1", T0, amount="1.00"),
        {
            "id": "f3",
            "type": "review.posted",
            "customer_id": "c1",
            "occurred_at": T0.isoformat(),
            "properties": {"stars": 5},
        },
    ]


@st.composite
def mutated_event(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one field (top level or nested) replaced, removed or added."""
    event = json.loads(json.dumps(draw(st.sampled_from(valid_events()))))
    target = event
    nested = [k for k, v in event.items() if isinstance(v, dict)]
    if nested and draw(st.booleans()):
        target = event[draw(st.sampled_from(nested))]
    keys = sorted(target)
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "add" or not keys:
        target[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    elif action == "delete":
        del target[draw(st.sampled_from(keys))]
    else:
        target[draw(st.sampled_from(keys))] = draw(json_values)
    event["id"] = draw(st.text(min_size=1, max_size=20))
    return event


def send(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    raw = json.dumps(body, allow_nan=True).encode()
    return client.post(path, content=raw, headers={"Content-Type": "application/json", **headers})


def assert_well_behaved(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "details"}, body
        assert isinstance(body["error"]["code"], str)
        assert isinstance(body["error"]["message"], str)


def ledger_and_members(db: Database) -> tuple[int, int]:
    with db.unit_of_work(write=False) as session:
        return (
            session.scalar(select(func.count()).select_from(LedgerEntry)) or 0,
            session.scalar(select(func.count()).select_from(Member)) or 0,
        )


@FUZZ
@given(body=json_values)
def test_arbitrary_json_to_events(client: TestClient, body: Any) -> None:
    assert_well_behaved(send(client, "/v1/events", body))


@FUZZ
@given(event=mutated_event())
def test_mutated_event_to_events_changes_nothing_when_refused(
    client: TestClient, db: Database, event: dict[str, Any]
) -> None:
    before = ledger_and_members(db)
    response = send(client, "/v1/events", event)
    assert_well_behaved(response)
    if response.status_code >= 400:
        assert ledger_and_members(db) == before


@FUZZ
@given(events=st.lists(mutated_event() | json_values, min_size=1, max_size=5))
def test_batches_of_mutated_and_arbitrary_events(client: TestClient, events: list[Any]) -> None:
    response = send(client, "/v1/events/batch", {"events": events})
    assert_well_behaved(response)
    if response.status_code == 200:
        results = response.json()["results"]
        assert [r["index"] for r in results] == list(range(len(events)))
        for item in results:
            if item["status"] == "rejected":
                assert set(item["error"]) == {"code", "message", "details"}


@FUZZ
@given(body=json_values)
def test_arbitrary_json_to_batch(client: TestClient, body: Any) -> None:
    assert_well_behaved(send(client, "/v1/events/batch", body))


@FUZZ
@given(
    body=json_values
    | st.fixed_dictionaries(
        {"external_id": json_values},
        optional={
            "email": json_values,
            "phone": json_values,
            "name": json_values,
            "birthday": json_values,
            "language": json_values,
            "timezone": json_values,
            "attributes": json_values,
            "tags": json_values,
            "consents": json_values,
        },
    )
)
def test_arbitrary_json_to_members(client: TestClient, body: Any) -> None:
    assert_well_behaved(send(client, "/v1/members", body))


@FUZZ
@given(
    body=json_values
    | st.fixed_dictionaries(
        {"points": json_values}, optional={"reason": json_values, "occurred_at": json_values}
    ),
    key=st.text(min_size=1, max_size=40).filter(lambda k: k.isprintable() and k.isascii()),
    spend=st.booleans(),
)
def test_arbitrary_json_to_points_writes(
    client: TestClient, body: Any, key: str, spend: bool
) -> None:
    client.post("/v1/members", json={"external_id": "c1"})
    path = "/v1/members/c1/spend" if spend else "/v1/members/c1/adjustments"
    assert_well_behaved(send(client, path, body, **{"Idempotency-Key": key}))
