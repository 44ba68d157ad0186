"""The API contract: the external-id alphabet, the idempotency-key rule, 405s and the document.

Every external id that comes in (member creation, an event's ``customer_id``, a CSV row, a
path) obeys one alphabet (``lealta.kit.ids``), so whatever is stored can be read back by URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.imports.service import import_orders
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Event, Member
from lealta.programme import service as programmes
from tests.conftest import T0
from tests.factories import order_paid

ALLOWED = ["José-ñ", "Müller_1", "客户7", "ana+1@example.com", "shop:42.a", "x" * 128]
FORBIDDEN = ["a/b", "50%", "a b", "a?b", "a#b", "tab\tin", "bell\x07", "e\u0301", "x" * 129, ""]


def members_in(db: Database) -> int:
    with db.unit_of_work(write=False) as session:
        return session.scalar(select(func.count()).select_from(Member)) or 0


def url(external_id: str, tail: str = "") -> str:
    return f"/v1/members/{quote(external_id, safe='')}{tail}"


# --- the external-id alphabet ----------------------------------------------------------------


@pytest.mark.parametrize("external_id", FORBIDDEN)
def test_member_with_a_forbidden_id_is_422_invalid_external_id(
    client: TestClient, db: Database, external_id: str
) -> None:
    r = client.post("/v1/members", json={"external_id": external_id})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_external_id"
    assert r.json()["error"]["message"].startswith("body.external_id:")
    assert members_in(db) == 0


@pytest.mark.parametrize("external_id", ["a/b", "50%", "a b", "e\u0301"])
def test_event_with_a_forbidden_customer_id_is_422_and_enrols_nobody(
    client: TestClient, db: Database, external_id: str
) -> None:
    r = client.post("/v1/events", json=order_paid("e1", external_id, "O1", "10.00", T0))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_external_id"
    assert members_in(db) == 0
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_batch_event_with_a_forbidden_customer_id_is_rejected_alone(client: TestClient) -> None:
    r = client.post(
        "/v1/events/batch",
        json={
            "events": [
                order_paid("e1", "a/b", "O1", "10.00", T0),
                order_paid("e2", "ok-1", "O2", "10.00", T0),
            ]
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["processed"], body["rejected"]) == (1, 1)
    assert body["results"][0]["error"]["code"] == "invalid_external_id"


@pytest.mark.parametrize("external_id", ALLOWED)
def test_allowed_ids_round_trip_through_url_encoded_paths(
    client: TestClient, external_id: str
) -> None:
    created = client.post("/v1/members", json={"external_id": external_id})
    assert created.status_code == 201, created.text
    assert created.json()["external_id"] == external_id
    earned = client.post("/v1/events", json=order_paid("e1", external_id, "O1", "10.00", T0))
    assert earned.status_code == 201, earned.text
    got = client.get(url(external_id))
    assert got.status_code == 200, got.text
    assert got.json()["external_id"] == external_id
    balance = client.get(url(external_id, "/balance"))
    assert balance.status_code == 200
    assert balance.json()["available"] == 10
    spent = client.post(
        url(external_id, "/spend"), json={"points": 3}, headers={"Idempotency-Key": "k1"}
    )
    assert spent.status_code == 201, spent.text
    assert client.get(url(external_id, "/ledger")).json()["items"][0]["points"] == -3


def test_surrounding_whitespace_is_trimmed_not_part_of_the_id(client: TestClient) -> None:
    created = client.post("/v1/members", json={"external_id": "  José  "})
    assert created.status_code == 201, created.text
    assert created.json()["external_id"] == "José"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/members/a%20b", 422, "invalid_external_id"),
        ("/v1/members/50%25/balance", 422, "invalid_external_id"),
        ("/v1/members/e%CC%81/ledger", 422, "invalid_external_id"),
        ("/v1/members/" + "x" * 129, 422, "invalid_external_id"),
        # An encoded slash splits the path: no route matches, a plain 404.
        ("/v1/members/a%2Fb", 404, "not_found"),
        ("/v1/members/nobody-here", 404, "member_not_found"),
    ],
)
def test_path_ids_outside_the_alphabet_are_clear_4xx_never_5xx(
    client: TestClient, path: str, status: int, code: str
) -> None:
    r = client.get(path)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_csv_row_with_a_forbidden_customer_id_is_rejected_invalid_external_id(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "customer_id,order_id,occurred_at,amount,currency\n"
        f"a/b,O1,{T0.isoformat()},10.00,EUR\n"
        f"José,O2,{T0.isoformat()},10.00,EUR\n",
        encoding="utf-8",
    )
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session)
    report = import_orders(db, path, programme=programme, now=clock.now(), actor="test")
    assert [(r.line, r.code) for r in report.rejected] == [(2, "invalid_external_id")]
    with db.unit_of_work(write=False) as session:
        assert session.scalars(select(Member.external_id)).all() == ["José"]


# --- idempotency keys ------------------------------------------------------------------------


def _enrol(client: TestClient) -> None:
    r = client.post("/v1/events", json=order_paid("seed", "c1", "O1", "100.00", T0))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/members/c1/adjustments", {"points": 5, "reason": "Because"}),
        ("/v1/members/c1/spend", {"points": 5}),
        ("/v1/members/c1/redemptions", {"reward_id": "any"}),
        ("/v1/redemptions/1/rollback", None),
        ("/v1/coupons/ANY/redeem", {"order_id": "O9", "cart": {"total": "1", "currency": "EUR"}}),
    ],
)
def test_required_idempotency_key_is_400_and_documented_required(
    client: TestClient, path: str, body: Any
) -> None:
    _enrol(client)
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "missing_idempotency_key"
    blank = client.post(path, json=body, headers={"Idempotency-Key": "   "})
    assert blank.status_code in (400, 422), blank.text
    template = path.replace("/c1/", "/{external_id}/").replace("/1/", "/{redemption_id}/")
    template = template.replace("/ANY/", "/{code}/")
    operation = client.get("/openapi.json").json()["paths"][template]["post"]
    header = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header"
    assert header["required"] is True


def test_event_without_id_or_key_is_400(client: TestClient) -> None:
    event = order_paid("x", "c1", "O2", "10.00", T0)
    del event["id"]
    r = client.post("/v1/events", json=event)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "missing_idempotency_key"


def test_optional_idempotency_key_stays_optional_in_the_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in [("/v1/members", "post"), ("/v1/events", "post")]:
        header = next(
            p for p in paths[path][method]["parameters"] if p["name"] == "Idempotency-Key"
        )
        assert header["required"] is False


# --- the document tells the truth ------------------------------------------------------------

IDEMPOTENT_WRITES = [
    ("/v1/events", "201"),
    ("/v1/members", "201"),
    ("/v1/members/{external_id}/consents", "200"),
    ("/v1/members/{external_id}/adjustments", "201"),
    ("/v1/members/{external_id}/spend", "201"),
    ("/v1/members/{external_id}/redemptions", "201"),
    ("/v1/redemptions/{redemption_id}/rollback", "200"),
    ("/v1/coupons/{code}/redeem", "201"),
    ("/v1/coupons/{code}/rollback", "200"),
]


@pytest.mark.parametrize(("path", "success"), IDEMPOTENT_WRITES)
def test_replays_are_documented_next_to_the_success(
    client: TestClient, path: str, success: str
) -> None:
    responses = client.get("/openapi.json").json()["paths"][path]["post"]["responses"]
    assert success in responses
    replay = responses["200"]
    assert "Idempotent-Replayed" in replay["headers"]
    assert replay["content"]["application/json"]["schema"]["$ref"]
    for status in ("400", "401", "403", "404", "409", "413", "422"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema["$ref"] == "#/components/schemas/ErrorResponse"


def test_a_replay_carries_the_documented_header(client: TestClient) -> None:
    _enrol(client)
    first = client.post(
        "/v1/members/c1/spend", json={"points": 5}, headers={"Idempotency-Key": "s1"}
    )
    again = client.post(
        "/v1/members/c1/spend", json={"points": 5}, headers={"Idempotency-Key": "s1"}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert "idempotent-replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_metrics_are_documented_and_served_as_prometheus_text(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    content = operation["responses"]["200"]["content"]
    assert list(content) == ["text/plain; version=0.0.4; charset=utf-8"]
    r = client.get("/metrics")
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "lealta_http_requests_total" in r.text


def test_authenticated_operations_declare_their_security(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    paths = document["paths"]
    assert paths["/v1/members/{external_id}"]["get"]["security"] == [
        {"bearer": []},
        {"apiKey": []},
    ]
    for public in ("/health", "/ready", "/metrics", "/v1/programme/schema"):
        assert "security" not in paths[public]["get"]
    no_key = TestClient(client.app, raise_server_exceptions=False)
    assert no_key.get("/v1/members/c1").status_code == 401


def test_external_id_parameters_document_the_alphabet(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/members/{external_id}"]["get"]
    param = next(p for p in operation["parameters"] if p["name"] == "external_id")
    assert param["schema"]["pattern"] == r"^[\w\-.:@+]{1,128}$"
    assert param["schema"]["maxLength"] == 128


# --- 405 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/members/c1", {"DELETE", "GET", "PATCH"}),
        ("PUT", "/v1/members", {"GET", "POST"}),
        ("DELETE", "/v1/programme", {"GET", "PUT"}),
        ("POST", "/health", {"GET"}),
    ],
)
def test_405_names_every_allowed_method(
    client: TestClient, method: str, path: str, allow: set[str]
) -> None:
    r = client.request(method, path)
    assert r.status_code == 405, r.text
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in r.headers["Allow"].split(",")} == allow
