"""When to try a request again, and how long to wait first. Pure: no I/O, no sleeping.

A request is retried on a connection error, a timeout, ``429``, any ``5xx`` and ``409
idempotency_retry`` (a concurrent request with the same key failed), never on another
``4xx``. Every write the API makes idempotent goes out with one ``Idempotency-Key`` that the
client keeps for all attempts of that write, so a retry after a lost answer gets the first
answer back instead of acting twice.

A request that is *not* safe to repeat (``PUT /v1/programme``, which stores a new version each
time) is retried only when it cannot have been acted on: the connection was never made, or
the server answered ``429`` / ``503`` (which write nothing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NOTHING_WRITTEN_STATUSES = frozenset({429, 503})
RETRY_CODES = frozenset({"idempotency_retry"})

# Failures before the request left this machine: repeating it is always safe.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after it may have reached the server: safe only for replay-safe requests.
MAYBE_SENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_retries`` attempts after the first; waits grow as ``backoff_base * 2**n`` up to
    ``backoff_max`` with "equal jitter" (half fixed, half random), and a server's
    ``Retry-After`` is honoured up to ``max_retry_after`` seconds."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry_number`` (0 for the first retry)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2.0**retry_number))
        wait = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait

    def after_error(
        self, error: Exception, retry_number: int, *, replay_safe: bool
    ) -> float | None:
        """Seconds to wait before retrying after a transport ``error``, or ``None`` to give up."""
        if retry_number >= self.max_retries:
            return None
        if isinstance(error, NOT_SENT) or (replay_safe and isinstance(error, MAYBE_SENT)):
            return self.backoff(retry_number)
        return None

    def after_response(
        self,
        status_code: int,
        error_code: str | None,
        retry_after: str | None,
        retry_number: int,
        *,
        replay_safe: bool,
        now: datetime | None = None,
    ) -> float | None:
        """Seconds to wait before retrying after an answer, or ``None`` to keep it."""
        if retry_number >= self.max_retries or status_code < 400:
            return None
        retryable = (
            status_code in RETRY_STATUSES
            if replay_safe
            else status_code in NOTHING_WRITTEN_STATUSES
        ) or (status_code == 409 and error_code in RETRY_CODES)
        if not retryable:
            return None
        return self.backoff(retry_number, parse_retry_after(retry_after, now=now))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
