"""The client's pure parts: the retry decision table, backoff with jitter, ``Retry-After``,
how calls are built (keys, bodies, paths) and how error bodies are read. No server needed:
these are the rules the end-to-end tests in test_client_e2e/faults see in action."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest
from lealta_client import (
    APIStatusError,
    ConflictError,
    InternalServerError,
    InvalidResponseError,
    MemberFilter,
    MemberUpdate,
    NotFoundError,
    RetryPolicy,
    ServiceUnavailableError,
)
from lealta_client import _base as base
from lealta_client import _calls as calls
from lealta_client.errors import error_body, status_error
from lealta_client.retry import parse_retry_after

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def policy(**fields: object) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(7), **fields)  # type: ignore[arg-type]


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap() -> None:
    p = policy(backoff_base=0.5, backoff_max=8.0)
    for n, ceiling in enumerate([0.5, 1, 2, 4, 8, 8, 8]):
        waits = [p.backoff(n) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (n, min(waits), max(waits))
        assert len(set(waits)) > 100  # jittered, not a fixed schedule


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    p = policy(backoff_base=0.1, max_retry_after=30.0)
    assert 5.0 <= p.backoff(0, retry_after=5.0) <= 5.0
    assert p.backoff(0, retry_after=600.0) == 30.0
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("Mon, 05 Jan 2026 12:00:30 GMT", now=NOW) == 30.0
    assert parse_retry_after("Mon, 05 Jan 2026 11:00:00 GMT", now=NOW) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "code", "safe", "retried"),
    [
        (429, "too_many_requests", True, True),
        (500, "internal_error", True, True),
        (502, "http_502", True, True),
        (503, "database_unavailable", True, True),
        (504, "http_504", True, True),
        (409, "idempotency_retry", True, True),
        (409, "insufficient_points", True, False),
        (409, "idempotency_key_reused", True, False),
        (400, "missing_idempotency_key", True, False),
        (401, "unauthorized", True, False),
        (403, "forbidden", True, False),
        (404, "member_not_found", True, False),
        (413, "batch_too_large", True, False),
        (422, "validation_error", True, False),
        (501, "http_501", True, False),
        # Not replay-safe: only answers that guarantee nothing was written.
        (429, "too_many_requests", False, True),
        (503, "database_unavailable", False, True),
        (500, "internal_error", False, False),
        (502, "http_502", False, False),
        (504, "http_504", False, False),
        (200, None, True, False),
        (201, None, True, False),
    ],
)
def test_which_answers_are_retried(status: int, code: str, safe: bool, retried: bool) -> None:
    wait = policy().after_response(status, code, None, 0, replay_safe=safe)
    assert (wait is not None) == retried


def test_no_retry_beyond_max_retries() -> None:
    p = policy(max_retries=2)
    assert p.after_response(503, None, None, 1, replay_safe=True) is not None
    assert p.after_response(503, None, None, 2, replay_safe=True) is None
    assert policy(max_retries=0).after_error(httpx.ConnectError("x"), 0, replay_safe=True) is None


@pytest.mark.parametrize(
    ("error", "safe", "retried"),
    [
        (httpx.ConnectError("refused"), False, True),
        (httpx.ConnectTimeout("slow"), False, True),
        (httpx.PoolTimeout("busy"), False, True),
        (httpx.ReadTimeout("slow"), True, True),
        (httpx.ReadTimeout("slow"), False, False),
        (httpx.RemoteProtocolError("closed"), True, True),
        (httpx.RemoteProtocolError("closed"), False, False),
        (httpx.ReadError("reset"), True, True),
        (httpx.WriteError("reset"), False, False),
        (httpx.UnsupportedProtocol("ftp"), True, False),
    ],
)
def test_which_transport_errors_are_retried(error: Exception, safe: bool, retried: bool) -> None:
    assert (policy().after_error(error, 0, replay_safe=safe) is not None) == retried


def _settings(keys: list[str]) -> base.Settings:
    it = iter(keys)
    return base.settings(
        "http://lealta.test/base/",
        "lea_k",
        max_retries=None,
        retry=None,
        headers=None,
        key_factory=lambda: next(it),
    )


def test_a_keyed_write_gets_one_key_for_all_its_attempts_and_a_caller_key_wins() -> None:
    config = _settings(["k-1", "k-2"])
    prepared = base.prepare(calls.adjust("ana+1@x.es", 5, "Goodwill", None, None), config)
    assert prepared.headers["Idempotency-Key"] == "k-1"
    assert prepared.headers["Authorization"] == "Bearer lea_k"
    assert prepared.url == "http://lealta.test/base/v1/members/ana%2B1%40x.es/adjustments"
    assert prepared.content == b'{"points":5,"reason":"Goodwill"}'
    own = base.prepare(calls.spend("ana", 5, None, None, "mine"), config)
    assert own.headers["Idempotency-Key"] == "mine"
    read = base.prepare(calls.balance("José-ñ"), config)
    assert "Idempotency-Key" not in read.headers and read.content is None
    assert read.url.endswith("/v1/members/Jos%C3%A9-%C3%B1/balance")


def test_only_the_programme_apply_is_not_replay_safe() -> None:
    assert not calls.put_programme({}, dry_run=False, activate_at=None).replay_safe
    dry = calls.put_programme({}, dry_run=True, activate_at=None)
    assert dry.replay_safe and dry.params == {"dry_run": "true"}
    assert calls.update_member("a", MemberUpdate(name="A")).replay_safe
    assert calls.send_batch([], lambda: "x").replay_safe


def test_member_filters_become_the_list_query() -> None:
    filters = MemberFilter(
        q="ana",
        tiers=["plata", "oro"],
        tags=["vip"],
        tag_match="all",
        attributes={"vip": True, "kids": 2},
        enrolled_from=date(2026, 1, 1),
        points_min=10,
        sort="points_available",
        order="asc",
    )
    call = calls.list_members(filters, 50, "c1")
    assert call.params == {
        "q": "ana",
        "tag_match": "all",
        "sort": "points_available",
        "order": "asc",
        "tier": ["plata", "oro"],
        "tag": ["vip"],
        "enrolled_from": "2026-01-01",
        "points_min": "10",
        "attr.vip": "true",
        "attr.kids": "2",
        "limit": 50,
        "cursor": "c1",
    }
    assert calls.list_members(MemberFilter(), None, None).params == {}


def test_an_update_sends_only_the_fields_set_and_null_clears() -> None:
    call = calls.update_member("a", MemberUpdate(phone=None, attributes={"vip": None}))
    assert call.body == {"phone": None, "attributes": {"vip": None}}


def test_a_batch_names_events_without_an_id_once() -> None:
    ids = iter(["gen-1", "gen-2"])
    event = {
        "type": "review.posted",
        "customer_id": "c",
        "occurred_at": "2026-01-01T00:00:00Z",
        "properties": {"stars": Decimal("4.5")},
    }
    call = calls.send_batch([event, {**event, "id": "own"}], lambda: next(ids))
    assert [e["id"] for e in call.body["events"]] == ["gen-1", "own"]
    assert call.body["events"][0]["properties"] == {"stars": "4.5"}
    assert "id" not in event  # the caller's dict is left alone
    # A mapping goes as it is, for the server to reject it alone within the batch.
    odd = calls.send_batch([{"type": "no customer"}], lambda: "gen-3")
    assert odd.body == {"events": [{"type": "no customer", "id": "gen-3"}]}


def _response(status: int, **kwargs: object) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "http://x/"), **kwargs)  # type: ignore[arg-type]


def test_error_bodies_become_typed_errors_with_the_api_code() -> None:
    body = {"error": {"code": "insufficient_points", "message": "No", "details": {"a": 1}}}
    error = status_error(
        _response(409, json=body, headers={"x-request-id": "r1"}), attempts=1, idempotency_key="k"
    )
    assert isinstance(error, ConflictError)
    assert (error.code, error.message, error.details, error.request_id) == (
        "insufficient_points",
        "No",
        {"a": 1},
        "r1",
    )
    assert isinstance(status_error(_response(404, json=body), attempts=1, idempotency_key=None),
                      NotFoundError)  # fmt: skip
    unavailable = status_error(
        _response(503, json=body, headers={"Retry-After": "5"}), attempts=4, idempotency_key=None
    )
    assert isinstance(unavailable, ServiceUnavailableError) and unavailable.retry_after == "5"
    assert isinstance(unavailable, InternalServerError)
    gateway = _response(502, text="<html>Bad gateway</html>")
    assert error_body(gateway) == ("http_502", "<html>Bad gateway</html>", None)
    assert type(status_error(gateway, attempts=1, idempotency_key=None)) is InternalServerError


def test_an_answer_that_is_not_the_documented_shape_is_an_invalid_response() -> None:
    config = _settings([])
    call = calls.balance("ana")
    prepared = base.prepare(call, config)
    with pytest.raises(InvalidResponseError):
        base.finish(call, prepared, _response(200, text="<html>Welcome</html>"), 1)
    with pytest.raises(InvalidResponseError):
        base.finish(call, prepared, _response(200, json={"available": "lots"}), 1)
    redirect = _response(302, headers={"Location": "/login"})
    with pytest.raises(APIStatusError) as moved:
        base.finish(call, prepared, redirect, 1)
    assert moved.value.code == "http_302"
