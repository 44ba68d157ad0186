"""CDP-style track/identify, publishable keys and the public catalogue."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.apikeys import service as apikeys
from lealta.config import Settings
from lealta.inbound import api as inbound_api
from lealta.inbound import service
from lealta.inbound.tokens import TOKEN_HEADER, member_token
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.kit.errors import InvalidInput
from lealta.models import AnonymousEvent, Event, Member
from lealta.web.cockpit import routes as cockpit
from tests.conftest import T0, app_for
from tests.factories import add_member

TOKEN_SECRET = "member-token-secret"

PROGRAMME: dict[str, Any] = {
    "name": "Test club",
    "currency": "EUR",
    "timezone": "Europe/Madrid",
    "attributes": {"plan": "string", "visits": "int"},
    "rules": [
        {
            "id": "review",
            "name": "Review",
            "event": "product_reviewed",
            "kind": "points",
            "points": 50,
        }
    ],
    "tiers": {
        "levels": [
            {"id": "bronze", "name": {"es": "Bronce", "en": "Bronze"}, "threshold": 0},
            {"id": "gold", "name": {"es": "Oro", "en": "Gold"}, "threshold": 500},
        ]
    },
    "rewards": [
        {
            "id": "mug",
            "type": "product",
            "name": {"es": "Taza", "en": "Mug"},
            "cost": 300,
            "eligibility": "true",
        },
        {
            "id": "old",
            "type": "product",
            "name": {"es": "Agotado"},
            "cost": 10,
            "available_until": (T0 - timedelta(days=1)).isoformat(),
        },
    ],
}


@pytest.fixture
def api(client: TestClient) -> TestClient:
    r = client.put("/v1/programme", json=PROGRAMME)
    assert r.status_code == 200, r.text
    return client


def track(client: TestClient, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return client.post("/v1/track", json=body, headers=headers or {})


def count(db: Database, model: Any) -> int:
    with db.unit_of_work(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# --- event names (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Product Reviewed", "product_reviewed"),
        ("review.posted", "review.posted"),
        ("  Signed-Up!  ", "signed_up"),
        ("Checkout Step 2", "checkout_step_2"),
    ],
)
def test_event_names_become_event_types(name: str, expected: str) -> None:
    assert service.event_type(name) == expected


@pytest.mark.parametrize("name", ["", "42 things", "!!!", "order.paid", "Order Refunded x"])
def test_unusable_event_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        service.event_type(name if name != "Order Refunded x" else "order.refunded")


def test_traits_split_into_profile_attributes_and_ignored() -> None:
    profile, attrs, ignored = service.split_traits(
        {"email": "a@b.es", "firstName": "Ana", "lastName": "Ruiz", "plan": "pro", "x": 1},
        {"plan"},
    )
    assert profile == {"email": "a@b.es", "name": "Ana Ruiz"}
    assert attrs == {"plan": "pro"}
    assert ignored == ["x"]


# --- track -------------------------------------------------------------------------------------


def test_track_records_a_custom_event_that_earns(api: TestClient, db: Database) -> None:
    body = {
        "userId": "cust-1",
        "event": "Product Reviewed",
        "properties": {"stars": 5},
        "messageId": "m-1",
        "context": {"library": {"name": "analytics.js"}},
        "type": "track",
    }
    r = track(api, body)
    assert r.status_code == 201, r.text
    assert r.json()["type"] == "product_reviewed"
    assert r.json()["points_delta"] == 50
    again = track(api, body)
    assert again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.get("/v1/members/cust-1/balance").json()["available"] == 50
    other = track(api, {**body, "properties": {"stars": 1}})
    assert other.status_code == 409
    assert count(db, Event) == 1


def test_the_idempotency_key_header_dedupes_too(api: TestClient) -> None:
    body = {"userId": "cust-1", "event": "Product Reviewed"}
    first = track(api, body, {"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    assert track(api, body, {"Idempotency-Key": "k-1"}).status_code == 200
    assert api.get("/v1/members/cust-1/balance").json()["available"] == 50


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"userId": "c1", "event": "x"}, 400, "missing_idempotency_key"),
        ({"event": "x", "messageId": "m"}, 422, "missing_user_id"),
        ({"userId": "c1", "event": "42", "messageId": "m"}, 422, "invalid_event_name"),
        ({"userId": "c1", "event": "order.paid", "messageId": "m"}, 422, "reserved_event_name"),
        ({"userId": "a/b", "event": "x", "messageId": "m"}, 422, "invalid_external_id"),
        ({"userId": "c1", "event": "x", "messageId": "m", "bogus": 1}, 422, "validation_error"),
        (
            {"userId": "c1", "event": "x", "messageId": "m", "timestamp": "2030-01-01T00:00:00Z"},
            422,
            "occurred_in_future",
        ),
    ],
)
def test_bad_track_calls_are_4xx_and_write_nothing(
    api: TestClient, db: Database, body: dict[str, Any], status: int, code: str
) -> None:
    r = track(api, body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert count(db, Event) == 0
    assert count(db, Member) == 0


def test_a_read_key_cannot_track(api: TestClient, read_key: str) -> None:
    r = track(
        api,
        {"userId": "c1", "event": "x", "messageId": "m"},
        {"Authorization": f"Bearer {read_key}"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")


# --- anonymous + identify ---------------------------------------------------------------------


def test_anonymous_events_wait_for_identify_then_earn(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    r = track(api, {"anonymousId": "anon-1", "event": "Product Reviewed", "messageId": "m-a"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "kept"
    assert (
        track(
            api, {"anonymousId": "anon-1", "event": "Product Reviewed", "messageId": "m-a"}
        ).headers.get("Idempotent-Replayed")
        == "true"
    )
    assert count(db, AnonymousEvent) == 1
    assert count(db, Event) == 0
    clock.set(T0 + timedelta(minutes=5))
    ident = {
        "userId": "cust-9",
        "anonymousId": "anon-1",
        "traits": {
            "email": "eva@example.com",
            "firstName": "Eva",
            "lastName": "Sol",
            "language": "en",
            "plan": "pro",
            "favouriteColour": "blue",
        },
        "messageId": "id-1",
    }
    r = api.post("/v1/identify", json=ident)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["created"] is True
    assert out["attached_events"] == 1
    assert out["ignored_traits"] == ["favouriteColour"]
    assert set(out["updated"]) == {"email", "language", "name", "plan"}
    member = api.get("/v1/members/cust-9").json()
    assert (member["email"], member["name"], member["language"]) == (
        "eva@example.com",
        "Eva Sol",
        "en",
    )
    assert member["attributes"] == {"plan": "pro"}
    assert api.get("/v1/members/cust-9/balance").json()["available"] == 50
    replay = api.post("/v1/identify", json=ident)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert api.get("/v1/members/cust-9/balance").json()["available"] == 50
    # A second identify with a new message id has nothing left to attach.
    r = api.post("/v1/identify", json={**ident, "messageId": "id-2", "traits": {"visits": 3}})
    assert r.json()["attached_events"] == 0
    assert r.json()["created"] is False
    assert api.get("/v1/members/cust-9").json()["attributes"] == {"plan": "pro", "visits": 3}
    assert api.get("/v1/members/cust-9/balance").json()["available"] == 50


def test_identify_refuses_bad_traits_without_writing(api: TestClient, db: Database) -> None:
    r = api.post(
        "/v1/identify",
        json={"userId": "c1", "traits": {"visits": "many"}, "messageId": "i-1"},
    )
    assert r.status_code == 422, r.text
    r = api.post(
        "/v1/identify", json={"userId": "c1", "traits": {"email": "nope"}, "messageId": "i-2"}
    )
    assert r.status_code == 422
    r = api.post("/v1/identify", json={"userId": "c1", "traits": {}})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "missing_idempotency_key")
    assert count(db, Member) == 0


def test_anonymous_ids_hold_a_bounded_number_of_events(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "MAX_ANONYMOUS_EVENTS", 2)
    for n in range(2):
        assert (
            track(api, {"anonymousId": "a", "event": "x", "messageId": f"m{n}"}).status_code == 202
        )
    r = track(api, {"anonymousId": "a", "event": "x", "messageId": "m9"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "anonymous_event_limit")


# --- publishable keys -------------------------------------------------------------------------


@pytest.fixture
def publishable_key(db: Database, clock: FixedClock) -> str:
    with db.unit_of_work() as session:
        _, key = apikeys.create(session, name="web", scope="publishable", now=clock.now())
    return key


@pytest.fixture
def browser(
    api: TestClient,
    db: Database,
    clock: FixedClock,
    settings: Settings,
    publishable_key: str,
) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"member_token_secret": TOKEN_SECRET})
    with TestClient(app_for(configured, db=db, clock=clock)) as c:
        c.headers["Authorization"] = f"Bearer {publishable_key}"
        yield c


def test_the_cockpit_session_keys_agree() -> None:
    assert inbound_api.MEMBER_SESSION_KEY == cockpit.SESSION_KEY
    assert inbound_api.MEMBER_GENERATION_KEY == cockpit.GENERATION_KEY


def test_a_publishable_key_tracks_with_a_member_token(browser: TestClient, db: Database) -> None:
    add_member(db, "cust-5", "c5@example.com")
    body = {"userId": "cust-5", "event": "Product Reviewed", "messageId": "p-1"}
    good = {TOKEN_HEADER: member_token(TOKEN_SECRET, "cust-5")}
    r = track(browser, body, good)
    assert r.status_code == 201, r.text
    assert r.json()["points_delta"] == 50
    r = track(browser, {**body, "messageId": "p-2"}, {TOKEN_HEADER: member_token("x", "cust-5")})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "invalid_member_token")
    other = {**body, "userId": "cust-6", "messageId": "p-3"}
    r = track(browser, other, good)  # a token for cust-5 does not prove cust-6
    assert (r.status_code, r.json()["error"]["code"]) == (403, "invalid_member_token")
    r = track(browser, {**body, "messageId": "p-4"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "member_not_proven")
    r = track(browser, {"anonymousId": "a", "event": "x", "messageId": "p-5"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "member_not_proven")
    assert count(db, Event) == 1
    assert count(db, AnonymousEvent) == 0


def test_member_tokens_need_a_configured_secret(
    api: TestClient, db: Database, clock: FixedClock, settings: Settings, publishable_key: str
) -> None:
    with TestClient(app_for(settings, db=db, clock=clock)) as c:
        c.headers["Authorization"] = f"Bearer {publishable_key}"
        r = track(
            c,
            {"userId": "cust-5", "event": "x", "messageId": "m"},
            {TOKEN_HEADER: member_token("", "cust-5")},
        )
    assert (r.status_code, r.json()["error"]["code"]) == (403, "invalid_member_token")


def test_a_publishable_key_tracks_for_the_signed_in_cockpit_member(
    browser: TestClient, db: Database, clock: FixedClock
) -> None:
    from lealta.members import login_links

    add_member(db, "cust-7", "c7@example.com")
    with db.unit_of_work() as session:
        token = login_links.request_link(
            session, "c7@example.com", client_ip="127.0.0.1", now=clock.now(), minutes=15
        ).token
    assert token is not None
    r = browser.post(
        f"/me/login/{token}",
        data={"csrf_token": _csrf(browser, f"/me/login/{token}")},
        follow_redirects=False,
    )
    assert r.status_code in (302, 303), r.text
    ok = track(browser, {"event": "Product Reviewed", "messageId": "s-1"})
    assert ok.status_code == 201, ok.text
    assert ok.json()["customer_id"] == "cust-7"
    other = track(browser, {"userId": "cust-8", "event": "x", "messageId": "s-2"})
    assert (other.status_code, other.json()["error"]["code"]) == (403, "member_mismatch")
    browser.post("/me/logout", data={"csrf_token": _csrf(browser, "/me/profile")})
    after = track(browser, {"event": "Product Reviewed", "messageId": "s-3"})
    assert after.status_code == 403


def _csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    parts = page.text.split('name="csrf_token" value="')
    assert len(parts) > 1, page.text[:300]
    return parts[1].split('"')[0]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/members/cust-5"),
        ("get", "/v1/members"),
        ("get", "/v1/members/cust-5/balance"),
        ("get", "/v1/members/cust-5/rewards"),
        ("get", "/v1/members/cust-5/tier"),
        ("get", "/v1/members/cust-5/ledger"),
        ("get", "/v1/programme"),
        ("post", "/v1/events"),
        ("post", "/v1/identify"),
        ("put", "/v1/programme"),
        ("get", "/v1/jobs"),
    ],
)
def test_a_publishable_key_can_do_nothing_else(
    browser: TestClient, db: Database, method: str, path: str
) -> None:
    add_member(db, "cust-5", "c5@example.com")
    kwargs: dict[str, Any] = {} if method == "get" else {"json": {"userId": "cust-5"}}
    r = getattr(browser, method)(path, **kwargs)
    assert r.status_code == 403, (path, r.status_code, r.text)
    assert r.json()["error"]["code"] == "publishable_key_not_allowed"


def test_every_other_api_route_refuses_a_publishable_key(browser: TestClient) -> None:
    """Walk the OpenAPI document: every secured operation but track and the catalogue."""
    document = browser.get("/openapi.json").json()
    open_to_it = {("/v1/track", "post"), ("/v1/catalogue", "get")}
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not operation.get("security") or (path, method) in open_to_it:
                continue
            url = re.sub(r"\{[^}]+\}", "1", path.replace("{external_id}", "cust-5"))
            r = browser.request(method.upper(), url, json={})
            assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
            checked += 1
    assert checked > 10


def test_the_catalogue_is_public_to_every_key(
    browser: TestClient, api: TestClient, read_key: str
) -> None:
    r = browser.get("/v1/catalogue", params={"language": "en"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["programme"] == "Test club"
    assert [x["id"] for x in body["rewards"]] == ["mug"]  # "old" has ended
    assert body["rewards"][0]["name"] == "Mug"
    assert "eligibility" not in body["rewards"][0]
    assert [t["name"] for t in body["tiers"]] == ["Bronze", "Gold"]
    assert browser.get("/v1/catalogue").json()["tiers"][1]["name"] == "Oro"
    assert api.get("/v1/catalogue").status_code == 200
    assert (
        api.get("/v1/catalogue", headers={"Authorization": f"Bearer {read_key}"}).status_code == 200
    )
    assert api.get("/v1/catalogue", headers={"Authorization": ""}).status_code == 401
    assert browser.get("/v1/catalogue", params={"language": "fr"}).status_code == 422
