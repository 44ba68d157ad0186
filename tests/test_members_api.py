"""Members over HTTP: enrolment, partial updates, attributes, tags and consents."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.routing import Match

from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import api as members_api
from lealta.models import Account, Member
from tests.conftest import T0


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    r = client.post("/v1/members", json=fields)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def patch(client: TestClient, external_id: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.patch(f"/v1/members/{external_id}", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def member_count(db: Database) -> int:
    with db.unit_of_work(write=False) as session:
        return session.scalar(select(func.count()).select_from(Member)) or 0


def test_create_member_returns_201_with_defaults(client: TestClient) -> None:
    body = create(client, external_id="c1", email="ana@example.com", name="Ana")
    assert body["external_id"] == "c1"
    assert body["email"] == "ana@example.com"
    assert body["language"] == "es"
    assert body["timezone"] == "Europe/Madrid"
    assert body["attributes"] == {}
    assert body["tags"] == []
    assert body["consents"] == []
    assert body["enrolment_channel"] == "api"


def test_created_member_can_be_read_back_with_an_empty_balance(client: TestClient) -> None:
    created = create(client, external_id="c1", phone="+34 600 000 000", birthday="1990-04-01")
    assert client.get("/v1/members/c1").json() == created
    bal = client.get("/v1/members/c1/balance").json()
    assert bal["available"] == 0
    assert bal["currency"] == "EUR"


def test_create_creates_one_points_account(client: TestClient, db: Database) -> None:
    create(client, external_id="c1")
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 1


def test_external_id_is_trimmed(client: TestClient) -> None:
    assert create(client, external_id="  c1  ")["external_id"] == "c1"
    assert client.get("/v1/members/c1").status_code == 200


def test_duplicate_member_is_409_member_exists(client: TestClient, db: Database) -> None:
    create(client, external_id="c1", name="First")
    r = client.post("/v1/members", json={"external_id": "c1", "name": "Second"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "member_exists"
    assert member_count(db) == 1
    assert client.get("/v1/members/c1").json()["name"] == "First"


def test_patch_changes_only_the_fields_sent(client: TestClient, clock: FixedClock) -> None:
    before = create(client, external_id="c1", email="a@example.com", name="Ana", language="en")
    clock.set(T0 + timedelta(hours=1))
    after = patch(client, "c1", {"name": "Ana María"})
    assert after["name"] == "Ana María"
    assert after["email"] == before["email"]
    assert after["language"] == "en"
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]


def test_patch_with_null_clears_a_nullable_field(client: TestClient) -> None:
    create(client, external_id="c1", email="a@example.com")
    assert patch(client, "c1", {"email": None})["email"] is None


def test_patch_with_null_language_keeps_the_language(client: TestClient) -> None:
    create(client, external_id="c1", language="en")
    assert patch(client, "c1", {"language": None})["language"] == "en"


def test_patch_unknown_member_is_404(client: TestClient, db: Database) -> None:
    r = client.patch("/v1/members/ghost", json={"name": "X"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "member_not_found"
    assert member_count(db) == 0


def test_attributes_merge_and_null_removes_one(client: TestClient) -> None:
    create(client, external_id="c1", attributes={"size": "M", "pets": 2, "vip": False})
    after = patch(client, "c1", {"attributes": {"pets": None, "vip": True, "city": "Sevilla"}})
    assert after["attributes"] == {"size": "M", "vip": True, "city": "Sevilla"}


def test_patch_without_attributes_keeps_them(client: TestClient) -> None:
    create(client, external_id="c1", attributes={"size": "M"})
    assert patch(client, "c1", {"name": "X"})["attributes"] == {"size": "M"}


def test_attribute_values_must_be_scalars(client: TestClient) -> None:
    create(client, external_id="c1")
    r = client.patch("/v1/members/c1", json={"attributes": {"nested": {"a": 1}}})
    assert r.status_code == 422
    assert client.get("/v1/members/c1").json()["attributes"] == {}


def test_tags_are_replaced_deduplicated_and_sorted(client: TestClient) -> None:
    create(client, external_id="c1", tags=["b", "a"])
    after = patch(client, "c1", {"tags": ["zeta", "alpha", "zeta", " alpha "]})
    assert after["tags"] == ["alpha", "zeta"]


def test_consents_keep_the_latest_decision_per_purpose(
    client: TestClient, clock: FixedClock
) -> None:
    create(
        client,
        external_id="c1",
        consents=[{"purpose": "marketing_email", "granted": True, "source": "signup"}],
    )
    clock.set(T0 + timedelta(days=1))
    r = client.post(
        "/v1/members/c1/consents",
        json={"purpose": "marketing_email", "granted": False, "source": "unsubscribe"},
    )
    assert r.status_code == 200, r.text
    r = client.post("/v1/members/c1/consents", json={"purpose": "marketing_sms", "granted": True})
    consents = {c["purpose"]: c for c in r.json()["consents"]}
    assert set(consents) == {"marketing_email", "marketing_sms"}
    assert consents["marketing_email"]["granted"] is False
    assert consents["marketing_email"]["source"] == "unsubscribe"
    assert consents["marketing_email"]["recorded_at"].startswith(
        (T0 + timedelta(days=1)).date().isoformat()
    )
    assert consents["marketing_sms"]["source"] == "api"


def test_consent_for_unknown_purpose_is_422(client: TestClient) -> None:
    create(client, external_id="c1")
    r = client.post("/v1/members/c1/consents", json={"purpose": "telepathy", "granted": True})
    assert r.status_code == 422
    assert client.get("/v1/members/c1").json()["consents"] == []


def test_consent_for_unknown_member_is_404(client: TestClient) -> None:
    r = client.post(
        "/v1/members/ghost/consents", json={"purpose": "marketing_email", "granted": True}
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "member_not_found"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@"),
        ("timezone", "Mars/Olympus"),
        ("timezone", "europe/madrid "),
        ("language", "fr"),
        ("phone", "call me"),
        ("birthday", "1990-13-01"),
        ("external_id", ""),
        ("external_id", "x" * 129),
    ],
)
def test_invalid_profile_field_is_422_on_create(
    client: TestClient, db: Database, field: str, value: str
) -> None:
    body = {"external_id": "c1", field: value}
    r = client.post("/v1/members", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    expected = "invalid_external_id" if field == "external_id" else "validation_error"
    assert error["code"] == expected
    assert error["details"][0]["loc"][:2] == ["body", field]
    assert member_count(db) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "nope"), ("timezone", "Nowhere/City"), ("language", "de")],
)
def test_invalid_profile_field_is_422_on_update_and_changes_nothing(
    client: TestClient, field: str, value: str
) -> None:
    before = create(client, external_id="c1", email="a@example.com")
    r = client.patch("/v1/members/c1", json={field: value})
    assert r.status_code == 422
    assert client.get("/v1/members/c1").json() == before


def test_valid_timezone_is_kept(client: TestClient) -> None:
    assert create(client, external_id="c1", timezone="America/Mexico_City")["timezone"] == (
        "America/Mexico_City"
    )


def test_patch_cannot_change_the_external_id(client: TestClient) -> None:
    create(client, external_id="c1")
    r = client.patch("/v1/members/c1", json={"external_id": "c2"})
    assert r.status_code == 422
    assert client.get("/v1/members/c2").status_code == 404


def test_attributes_declared_by_the_programme_are_typed(client: TestClient) -> None:
    document = {
        "name": "Typed",
        "attributes": {"city": "string", "vip_since": "date", "kids": "int"},
    }
    assert client.put("/v1/programme", json=document).status_code == 200
    ok = client.post(
        "/v1/members",
        json={
            "external_id": "t1",
            "attributes": {"city": "Madrid", "vip_since": "2024-05-01", "kids": 2},
        },
    )
    assert ok.status_code == 201, ok.text
    wrong_type = client.patch("/v1/members/t1", json={"attributes": {"kids": "two"}})
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["code"] == "invalid_attribute"
    assert wrong_type.json()["error"]["details"]["path"] == "attributes.kids"
    bad_date = client.patch("/v1/members/t1", json={"attributes": {"vip_since": "yesterday"}})
    assert bad_date.json()["error"]["code"] == "invalid_attribute"
    unknown = client.post("/v1/members", json={"external_id": "t2", "attributes": {"shoe": "42"}})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_attribute"
    assert client.get("/v1/members/t2").status_code == 404
    assert client.get("/v1/members/t1").json()["attributes"]["kids"] == 2
    removed = client.patch("/v1/members/t1", json={"attributes": {"kids": None}})
    assert removed.status_code == 200 and "kids" not in removed.json()["attributes"]


def test_the_balance_lane_answers_as_the_documented_route(client: TestClient) -> None:
    """``GET /v1/members/{id}/balance`` is served by ``balance_lane`` ahead of FastAPI's
    routing; every answer (found, unknown, invalid id, another method, no key) is the one
    the documented route gives without the lane, byte for byte."""
    create(client, external_id="c1")
    requests = [
        ("GET", "/v1/members/c1/balance", True),
        ("GET", "/v1/members/%20c1%20/balance", True),  # trimmed, as ExternalId does
        ("GET", "/v1/members/nobody/balance", True),
        ("GET", "/v1/members/a%25b/balance", False),  # invalid: FastAPI's 422
        ("HEAD", "/v1/members/c1/balance", False),
        ("PATCH", "/v1/members/c1/balance", False),
    ]
    routes = client.app.router.routes  # type: ignore[attr-defined]
    lane = members_api.balance_lane
    assert lane in routes
    answers = []
    for with_lane in (True, False):
        if not with_lane:
            routes.remove(lane)
        seen = []
        for method, path, served in requests:
            scope = {"type": "http", "method": method, "path": unquote(path), "root_path": ""}
            assert (lane.matches(scope)[0] == Match.FULL) is served
            seen.append(_answer(client.request(method, path)))
        seen.append(_answer(client.get("/v1/members/c1/balance", headers={"Authorization": ""})))
        answers.append(seen)
    assert answers[0] == answers[1]
    assert [a[0] for a in answers[0]] == [200, 200, 404, 422, 405, 405, 401]


def _answer(response: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(k, v) for k, v in response.headers.items() if k != "x-request-id"]
    return response.status_code, response.content, headers
