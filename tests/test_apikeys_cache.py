"""API keys verified once per few seconds, and hot reads in one or two statements.

Statements are counted on the real engine (``before_cursor_execute``); transaction control
(``BEGIN`` on SQLite) is not counted, as PostgreSQL's driver sends it without a cursor.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from lealta.apikeys import service as apikeys
from lealta.apikeys.cache import KeyCache, verify
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.kit.errors import Unauthorized
from lealta.models import ApiKey
from tests.conftest import T0
from tests.factories import order_paid

DEMO_FILE = Path(__file__).parents[1] / "examples" / "demo-programme.yaml"


class Ticker:
    """A monotonic time source the test moves by hand."""

    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.strip().upper() not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
            statements.append(statement)

    for engine in db.engines:
        event.listen(engine, "before_cursor_execute", record)
    if db.hot_reads is not None:  # the balance read on the event loop (PostgreSQL)
        db.hot_reads.observers.append(statements.append)
    try:
        yield statements
    finally:
        for engine in db.engines:
            event.remove(engine, "before_cursor_execute", record)
        if db.hot_reads is not None:
            db.hot_reads.observers.remove(statements.append)


def revoke_elsewhere(db: Database, key: str, clock: FixedClock) -> None:
    """Revoke as another process would: in the database only, unseen by this one's caches."""
    with db.unit_of_work() as session:
        session.execute(
            update(ApiKey).where(ApiKey.prefix == key.split("_")[1]).values(revoked_at=clock.now())
        )


def new_key(db: Database, clock: FixedClock, name: str = "k") -> str:
    with db.unit_of_work() as session:
        _, key = apikeys.create(session, name=name, scope="read", now=clock.now())
    return key


def random_key(prefix: str | None = None) -> str:
    return f"lea_{prefix or secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


# --- the cache ------------------------------------------------------------------------------


def test_a_cached_key_answers_without_a_database_round_trip(
    db: Database, clock: FixedClock
) -> None:
    key = new_key(db, clock)
    cache = KeyCache(5)
    with counting(db) as first:
        principal = verify(db, cache, key)
    assert principal.name == "k" and principal.scope == "read"
    assert len(first) == 1
    with counting(db) as again:
        assert verify(db, cache, key) == principal
    assert again == []
    assert key not in str(cache._entries), "the raw secret is never kept"


def test_a_key_revoked_elsewhere_stops_working_after_the_ttl(
    db: Database, clock: FixedClock
) -> None:
    key = new_key(db, clock)
    ticker = Ticker()
    cache = KeyCache(5, monotonic=ticker)
    verify(db, cache, key)
    revoke_elsewhere(db, key, clock)
    ticker.at += 4.9
    assert verify(db, cache, key).name == "k"  # still remembered, as documented
    ticker.at += 0.2
    with pytest.raises(Unauthorized) as refused:
        verify(db, cache, key)
    assert refused.value.code == "revoked_api_key"
    assert len(cache) == 0


def test_a_revocation_in_this_process_takes_effect_at_once(db: Database, clock: FixedClock) -> None:
    key, other = new_key(db, clock), new_key(db, clock, "other")
    cache = KeyCache(60)
    verify(db, cache, key)
    verify(db, cache, other)
    with db.unit_of_work() as session:
        apikeys.revoke(session, key.split("_")[1], now=clock.now())
    with pytest.raises(Unauthorized) as refused:
        verify(db, cache, key)
    assert refused.value.code == "revoked_api_key"
    assert verify(db, cache, other).name == "other"


def test_zero_seconds_means_every_request_checks_the_database(
    db: Database, clock: FixedClock
) -> None:
    key = new_key(db, clock)
    cache = KeyCache(0)
    verify(db, cache, key)
    with counting(db) as statements:
        verify(db, cache, key)
    assert len(statements) == 1 and len(cache) == 0


def test_random_keys_never_pass_nor_grow_the_cache(db: Database, clock: FixedClock) -> None:
    key = new_key(db, clock)
    real_prefix = key.split("_")[1]
    cache = KeyCache(5, max_entries=4)
    verify(db, cache, key)
    for i in range(300):
        forged = random_key(real_prefix if i % 3 == 0 else None)
        with pytest.raises(Unauthorized) as refused:
            verify(db, cache, forged)
        assert refused.value.code == "invalid_api_key"
    for malformed in ("", "nope", "lea_only", "Bearer lea_x_y"):
        with pytest.raises(Unauthorized):
            verify(db, cache, malformed)
    assert len(cache) == 1


def test_the_cache_is_bounded_and_keeps_the_newest_keys(db: Database, clock: FixedClock) -> None:
    keys = [new_key(db, clock, f"k{i}") for i in range(6)]
    cache = KeyCache(5, max_entries=3)
    for key in keys:
        verify(db, cache, key)
    assert len(cache) == 3
    with counting(db) as statements:
        assert [verify(db, cache, k).name for k in keys[3:]] == ["k3", "k4", "k5"]
    assert statements == []
    assert verify(db, cache, keys[0]).name == "k0"  # evicted, verified again
    assert len(cache) == 3


def test_the_ttl_is_a_setting(database_url: str) -> None:
    assert Settings(database_url=database_url).api_key_cache_seconds == 5
    assert Settings(database_url=database_url, api_key_cache_seconds=0.5).api_key_cache_seconds


# --- through HTTP ---------------------------------------------------------------------------


def test_the_api_revokes_elsewhere_within_the_ttl(
    client: TestClient, db: Database, clock: FixedClock
) -> None:
    ticker = Ticker()
    client.app.state.api_key_cache = KeyCache(5, monotonic=ticker)  # type: ignore[attr-defined]
    client.post("/v1/members", json={"external_id": "c1"})
    key = new_key(db, clock)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/members/c1/balance", headers=headers).status_code == 200
    revoke_elsewhere(db, key, clock)
    assert client.get("/v1/members/c1/balance", headers=headers).status_code == 200
    ticker.at += 5
    r = client.get("/v1/members/c1/balance", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"


def test_random_keys_over_http_are_refused_and_not_remembered(client: TestClient) -> None:
    client.get("/v1/members/c1/balance")
    for _ in range(50):
        headers = {"Authorization": f"Bearer {random_key()}"}
        r = client.get("/v1/members/c1/balance", headers=headers)
        assert r.status_code == 401
    assert len(client.app.state.api_key_cache) == 1  # type: ignore[attr-defined]


# --- hot reads ------------------------------------------------------------------------------


def _seed(client: TestClient) -> None:
    assert client.put("/v1/programme", json=yaml.safe_load(DEMO_FILE.read_text())).status_code
    r = client.post("/v1/events", json=order_paid("e1", "c1", "O1", "59.90", T0))
    assert r.status_code in (200, 201), r.text


def test_balance_takes_two_statements_auth_included(client: TestClient, db: Database) -> None:
    _seed(client)
    warm = client.get("/v1/members/c1/balance")
    assert warm.status_code == 200
    with counting(db) as statements:
        again = client.get("/v1/members/c1/balance")
    assert again.content == warm.content
    assert len(statements) <= 2, statements


@pytest.mark.parametrize(("path", "most"), [("tier", 4), ("benefits", 1), ("rewards", 3)])
def test_other_hot_reads_need_no_auth_nor_programme_statement(
    client: TestClient, db: Database, path: str, most: int
) -> None:
    _seed(client)
    warm = client.get(f"/v1/members/c1/{path}")
    assert warm.status_code == 200, warm.text
    with counting(db) as statements:
        again = client.get(f"/v1/members/c1/{path}")
    assert again.content == warm.content
    assert len(statements) <= most, statements
    assert not any("api_keys" in s for s in statements)


def test_a_new_programme_version_is_read_at_once(client: TestClient) -> None:
    _seed(client)
    before = client.get("/v1/members/c1/benefits").json()
    assert before["benefits"]["birthday_discount_percent"] == "5"
    document = yaml.safe_load(DEMO_FILE.read_text())
    document["tiers"]["levels"][0]["benefits"]["birthday_discount_percent"] = 7
    assert client.put("/v1/programme", json=document).status_code == 200
    after = client.get("/v1/members/c1/benefits").json()
    assert after["benefits"]["birthday_discount_percent"] == "7"


def test_an_unknown_member_is_still_404(client: TestClient) -> None:
    for path in ("balance", "tier", "benefits", "rewards"):
        r = client.get(f"/v1/members/nobody/{path}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "member_not_found"
