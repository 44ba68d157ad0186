"""What the sync and async clients share: settings, the request of a call (built once, sent
as many times as the retries need) and the reading of its answer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from lealta_client import errors
from lealta_client._calls import Call, Query
from lealta_client._version import __version__
from lealta_client.models import ApiModel, ResponseInfo
from lealta_client.retry import RetryPolicy

T = TypeVar("T")

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DEFAULT_TIMEOUT = 10.0


def new_key() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Settings:
    base_url: str
    headers: Mapping[str, str]
    retry: RetryPolicy
    new_key: Callable[[], str]


def settings(
    base_url: str,
    api_key: str | None,
    *,
    max_retries: int | None,
    retry: RetryPolicy | None,
    headers: Mapping[str, str] | None,
    key_factory: Callable[[], str] | None,
) -> Settings:
    if retry is not None and max_retries is not None:
        raise ValueError("Give either max_retries or retry, not both.")
    policy = retry or RetryPolicy(max_retries=3 if max_retries is None else max_retries)
    merged = {"User-Agent": f"lealta-client/{__version__}", "Accept": "application/json"}
    if api_key:
        merged["Authorization"] = f"Bearer {api_key}"
    merged.update(headers or {})
    return Settings(
        base_url=base_url.rstrip("/"),
        headers=merged,
        retry=policy,
        new_key=key_factory or new_key,
    )


def timeout_of(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(DEFAULT_TIMEOUT if timeout is None else timeout)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One logical request: the same URL, headers (idempotency key included) and body bytes
    on every attempt."""

    method: str
    url: str
    params: Query | None
    headers: dict[str, str]
    content: bytes | None
    idempotency_key: str | None
    replay_safe: bool


def prepare(call: Call[Any], config: Settings) -> Prepared:
    headers = dict(config.headers)
    key = None
    if call.keyed:
        key = call.idempotency_key or config.new_key()
        headers[IDEMPOTENCY_HEADER] = key
    content = None
    if call.body is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(call.body, separators=(",", ":"), ensure_ascii=False).encode()
    return Prepared(
        method=call.method,
        url=config.base_url + call.path,
        params=call.params or None,
        headers=headers,
        content=content,
        idempotency_key=key,
        replay_safe=call.replay_safe,
    )


def wait_after_response(
    response: httpx.Response, prepared: Prepared, policy: RetryPolicy, retry_number: int
) -> float | None:
    """Seconds before the next attempt, or ``None`` when this answer is the final one."""
    status = response.status_code
    if status < 400:
        return None
    code = errors.error_body(response)[0] if status == 409 else None
    return policy.after_response(
        status,
        code,
        response.headers.get("retry-after"),
        retry_number,
        replay_safe=prepared.replay_safe,
    )


def connection_error(
    error: Exception, prepared: Prepared, attempts: int
) -> errors.APIConnectionError:
    cls = (
        errors.APITimeoutError
        if isinstance(error, httpx.TimeoutException)
        else errors.APIConnectionError
    )
    what = type(error).__name__
    return cls(
        f"{prepared.method} {prepared.url} failed after {attempts} attempt(s): {what}: {error}",
        attempts=attempts,
    )


def finish(call: Call[T], prepared: Prepared, response: httpx.Response, attempts: int) -> T:
    """The parsed answer, or the typed error for an error status (redirects included: the
    API answers none, so one comes from something in the way)."""
    if response.status_code >= 300:
        raise errors.status_error(
            response, attempts=attempts, idempotency_key=prepared.idempotency_key
        )
    try:
        result = call.parse(response.json())
    except (ValueError, ValidationError) as exc:
        raise errors.InvalidResponseError(
            f"{prepared.method} {prepared.url}: unexpected answer body: {exc}"[:1000],
            response=response,
        ) from exc
    if isinstance(result, ApiModel):
        result._response_info = ResponseInfo(
            status_code=response.status_code,
            replayed=response.headers.get(REPLAYED_HEADER, "").lower() == "true",
            request_id=response.headers.get("x-request-id"),
            idempotency_key=prepared.idempotency_key,
            attempts=attempts,
        )
    return result
