"""The wire format of a webhook, as pure functions (no I/O, no clock).

A request is ``POST <url>`` with the JSON body ``{"id", "type", "version", "created_at",
"data"}`` and three headers:

- ``Lealta-Webhook-Id``: the event's id (``evt_<n>``), the same on every retry and replay of
  one event, so a receiver can drop duplicates;
- ``Lealta-Webhook-Timestamp``: Unix seconds when this attempt was signed;
- ``Lealta-Webhook-Signature``: ``v1=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<body>"``
  keyed with the endpoint's secret (its UTF-8 bytes, ``whsec_`` prefix included).

The README shows a receiver's verification snippet; a test runs it verbatim.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson

ID_HEADER = "Lealta-Webhook-Id"
TIMESTAMP_HEADER = "Lealta-Webhook-Timestamp"
SIGNATURE_HEADER = "Lealta-Webhook-Signature"
SCHEME = "v1"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
ALL_EVENTS = "*"
EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
MAX_EVENT_TYPE = 64


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 43 URL-safe characters (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def event_id(outbox_id: int) -> str:
    """The public id of an event: ``evt_<outbox row id>``."""
    return f"evt_{outbox_id}"


def payload(
    *, outbox_id: int, event_type: str, version: int, created_at: datetime, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body of a webhook for one event."""
    return {
        "id": event_id(outbox_id),
        "type": event_type,
        "version": version,
        "created_at": created_at.isoformat(),
        "data": dict(data),
    }


def body_bytes(body: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON."""
    return orjson.dumps(body)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`` keyed with ``secret``."""
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def headers(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The request headers of one attempt."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "Lealta-Webhooks/1",
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(
    secret: str, *, timestamp: str, body: bytes, signature_header: str, now: int, tolerance: int
) -> bool:
    """Whether a request is authentic and fresh (what a receiver does; used by tests and
    ``lealta webhooks`` users who receive in Python). Several ``v1=`` values separated by
    spaces are accepted (any one matching)."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    expected = signature(secret, int(timestamp), body)
    return any(hmac.compare_digest(expected, part) for part in signature_header.split())


def normalise_filters(event_types: Iterable[str]) -> list[str]:
    """Validated, de-duplicated, sorted event filters; ``*`` alone if present. Raises
    ``ValueError`` naming the first bad entry."""
    found: set[str] = set()
    for raw in event_types:
        name = raw.strip()
        if name != ALL_EVENTS and (
            len(name) > MAX_EVENT_TYPE or not EVENT_TYPE_PATTERN.fullmatch(name)
        ):
            raise ValueError(
                f"'{raw[:80]}' is not an event type (like order.paid, lowercase) or '*'."
            )
        found.add(name)
    if not found:
        raise ValueError("List at least one event type, or '*' for all.")
    return [ALL_EVENTS] if ALL_EVENTS in found else sorted(found)


def matches(event_types: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``event_types`` receives ``event_type``."""
    return any(t in (ALL_EVENTS, event_type) for t in event_types)


def excerpt(text: str, limit: int = 500) -> str:
    """The start of a response body kept in the delivery log."""
    return text if len(text) <= limit else text[:limit] + "…"
