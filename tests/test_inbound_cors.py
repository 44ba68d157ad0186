"""Publishable keys from browsers: allowed origins per key (CORS), and their CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from lealta.apikeys import service as apikeys
from lealta.cli import app as cli
from lealta.config import Settings
from lealta.inbound import service
from lealta.inbound.tokens import TOKEN_HEADER, member_token
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.kit.errors import Conflict, InvalidInput, NotFound
from lealta.models import AuditLog
from tests.conftest import app_for
from tests.factories import add_member

SECRET = "tok"
SHOP = "https://shop.example"


@pytest.fixture
def keys(db: Database, clock: FixedClock) -> dict[str, str]:
    with db.unit_of_work() as session:
        row, key = apikeys.create(session, name="web", scope="publishable", now=clock.now())
        _, other_key = apikeys.create(session, name="web2", scope="publishable", now=clock.now())
        server, _ = apikeys.create(session, name="srv", scope="server", now=clock.now())
        service.allow_origin(session, row.prefix, SHOP + "/", now=clock.now(), actor="test")
    return {"key": key, "prefix": row.prefix, "other": other_key, "server": server.prefix}


@pytest.fixture
def browser(
    db: Database, clock: FixedClock, settings: Settings, keys: dict[str, str]
) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"member_token_secret": SECRET})
    with TestClient(app_for(configured, db=db, clock=clock)) as c:
        yield c


def test_origins_are_normalised_and_checked() -> None:
    assert service.check_origin("HTTPS://Shop.Example:8443/") == "https://shop.example:8443"
    for bad in ("shop.example", "https://shop.example/path", "javascript:alert(1)", "ftp://x"):
        with pytest.raises(InvalidInput):
            service.check_origin(bad)


def test_a_preflight_from_an_allowed_origin_is_answered(browser: TestClient) -> None:
    r = browser.options(
        "/v1/track",
        headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == SHOP
    assert TOKEN_HEADER in r.headers["access-control-allow-headers"]
    bad = browser.options(
        "/v1/track",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert bad.status_code == 403
    assert "access-control-allow-origin" not in bad.headers
    # Only the browser paths answer preflights.
    other = browser.options(
        "/v1/members", headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_requests_from_the_keys_origin_get_cors_headers(
    browser: TestClient, db: Database, keys: dict[str, str]
) -> None:
    add_member(db, "c1", "c1@example.com")
    auth = {"Authorization": f"Bearer {keys['key']}", "Origin": SHOP}
    r = browser.get("/v1/catalogue", headers=auth)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == SHOP
    r = browser.post(
        "/v1/track",
        json={"userId": "c1", "event": "Page Viewed", "messageId": "m1"},
        headers={**auth, TOKEN_HEADER: member_token(SECRET, "c1")},
    )
    assert r.status_code == 201, r.text
    assert r.headers["access-control-allow-origin"] == SHOP


def test_a_key_is_refused_from_an_origin_it_does_not_allow(
    browser: TestClient, keys: dict[str, str]
) -> None:
    # The other key allows no origin: from a browser it is refused even on the catalogue.
    r = browser.get(
        "/v1/catalogue", headers={"Authorization": f"Bearer {keys['other']}", "Origin": SHOP}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (403, "origin_not_allowed")
    assert "access-control-allow-origin" not in r.headers
    r = browser.get(
        "/v1/catalogue",
        headers={"Authorization": f"Bearer {keys['key']}", "Origin": "https://evil.example"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (403, "origin_not_allowed")


def test_origins_only_for_publishable_keys(
    db: Database, clock: FixedClock, keys: dict[str, str]
) -> None:
    with db.unit_of_work() as session, pytest.raises(Conflict):
        service.allow_origin(session, keys["server"], SHOP, now=clock.now(), actor="t")
    with db.unit_of_work() as session, pytest.raises(NotFound):
        service.allow_origin(session, "nope", SHOP, now=clock.now(), actor="t")


def test_the_cli_manages_origins_and_prints_member_tokens(
    db: Database, database_url: str, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lealta.config import get_settings

    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    monkeypatch.setenv("LEALTA_MEMBER_TOKEN_SECRET", SECRET)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        prefix = keys["prefix"]
        r = runner.invoke(cli, ["apikey", "origin", "add", prefix, "https://b.example"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(cli, ["apikey", "origin", "list", prefix])
        assert r.output.split() == ["https://b.example", SHOP]
        r = runner.invoke(cli, ["apikey", "origin", "remove", prefix, "https://b.example"])
        assert r.exit_code == 0 and "removed" in r.output
        r = runner.invoke(cli, ["apikey", "origin", "add", prefix, "not an origin"])
        assert r.exit_code == 2
        r = runner.invoke(cli, ["apikey", "origin", "add", keys["server"], SHOP])
        assert r.exit_code == 5
        r = runner.invoke(cli, ["inbound", "member-token", "c1"])
        assert r.output.strip() == member_token(SECRET, "c1")
        r = runner.invoke(cli, ["apikey", "create", "--scope", "publishable", "--quiet"])
        assert r.exit_code == 0 and r.output.startswith("lea_")
    finally:
        get_settings.cache_clear()
    with db.unit_of_work(write=False) as session:
        actions = list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))
    assert actions.count("api_key.origin_add") == 2
    assert actions.count("api_key.origin_remove") == 1


def test_the_readme_documents_inbound_and_its_token_snippet_works() -> None:
    import hashlib
    import hmac
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Inbound: Shopify, track/identify, publishable keys", 1)[1]
    section = section.split("\n## ", 1)[0]
    for needle in (
        "/v1/inbound/shopify/orders-paid",
        "/v1/inbound/shopify/refunds-create",
        "X-Shopify-Hmac-Sha256",
        "/v1/track",
        "/v1/identify",
        "/v1/catalogue",
        "publishable_key_not_allowed",
        "lealta apikey origin add",
        "timezone",
    ):
        assert needle in section, needle
    snippet = re.search(r"```python\n(.+?)\n```", section, re.S)
    assert snippet is not None
    scope = {"hmac": hmac, "hashlib": hashlib, "LEALTA_MEMBER_TOKEN_SECRET": SECRET}
    scope["external_id"] = "cust-42"
    assert eval(snippet.group(1), scope) == member_token(SECRET, "cust-42")
