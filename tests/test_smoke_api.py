from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import T0
from tests.factories import order_paid, order_refunded


def test_order_earns_and_refund_reverses(client: TestClient) -> None:
    r = client.post("/v1/events", json=order_paid("e1", "c1", "O1", "120.50", T0))
    assert r.status_code == 201, r.text
    assert r.json()["points_delta"] == 120
    r = client.post("/v1/events", json=order_refunded("e2", "c1", "O1", T0, amount="60.25"))
    assert r.status_code == 201, r.text
    assert r.json()["points_delta"] == -60
    bal = client.get("/v1/members/c1/balance").json()
    assert bal["available"] == 60
    assert bal["qualifying_spend"] == "60.25"
