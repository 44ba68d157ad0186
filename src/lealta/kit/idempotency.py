"""Idempotent writes, Stripe-style: the key is claimed in the same transaction as the effect.

The claim is an INSERT on a unique ``(scope, key)``. A concurrent duplicate blocks on the
unique index until the first transaction ends; if that one committed, the duplicate's insert
(``ON CONFLICT DO NOTHING``) inserts nothing, and it returns the stored response instead of
acting again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from lealta.kit.db import insert_ignore
from lealta.kit.errors import Conflict, InvalidInput, LealtaError
from lealta.models import IdempotencyRecord

MAX_KEY_LENGTH = 200

_records = cast(Table, IdempotencyRecord.__table__)
_ANSWERED = (
    update(_records)
    .where(_records.c.id == bindparam("claimed"))
    .values(status_code=bindparam("answer_status"), response=bindparam("answer_body"))
)
"""The claim's answer, stored (a Core statement of the table, built once)."""


class MissingIdempotencyKey(LealtaError):
    """A write that must be idempotent came without a key: the request is incomplete (400)."""

    status_code = 400
    code = "missing_idempotency_key"

    def __init__(self) -> None:
        super().__init__(
            "This write needs an idempotency key: send an 'Idempotency-Key' header"
            " (or an event 'id')."
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool


def request_hash(payload: Any) -> str:
    try:
        raw = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which free-form event properties may carry.
        raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).hexdigest()


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise MissingIdempotencyKey()
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"Idempotency keys are at most {MAX_KEY_LENGTH} characters.",
            code="invalid_idempotency_key",
        )
    return key


def run_once(
    session: Session,
    *,
    scope: str,
    key: str,
    payload: Any,
    now: datetime,
    effect: Callable[[], tuple[int, dict[str, Any]]],
) -> Outcome:
    """Run ``effect`` once per ``(scope, key)``; later calls get the first call's response.

    Reusing a key with a different payload is a ``409 idempotency_key_reused``. If ``effect``
    raises, the claim is rolled back with everything else, so the key may be retried.
    """
    digest = request_hash(payload)
    claimed = insert_ignore(
        session,
        IdempotencyRecord,
        {
            "scope": scope,
            "key": key,
            "request_hash": digest,
            "status_code": 0,
            "response": {},
            "created_at": now,
        },
        conflict=["scope", "key"],
    )
    if claimed is not None:
        status_code, body = effect()
        session.execute(
            _ANSWERED, {"claimed": claimed, "answer_status": status_code, "answer_body": body}
        )
        return Outcome(status_code, body, replayed=False)
    existing = _find(session, scope, key)
    if existing is None:  # pragma: no cover - only if the row vanished between statements
        raise Conflict(
            "A concurrent request with the same idempotency key failed; retry.",
            code="idempotency_retry",
        )
    if existing.request_hash != digest:
        raise Conflict(
            "This idempotency key was already used with a different request.",
            code="idempotency_key_reused",
            details={"key": key},
        )
    return Outcome(existing.status_code, existing.response, replayed=True)


def run_maybe_once(
    session: Session,
    *,
    scope: str,
    key: str | None,
    payload: Any,
    now: datetime,
    effect: Callable[[], tuple[int, dict[str, Any]]],
) -> Outcome:
    """:func:`run_once` when the client sent a key; otherwise just run ``effect``.

    For writes that are safe to repeat or naturally keyed (member upserts), the key is optional.
    """
    if key is None:
        status_code, body = effect()
        return Outcome(status_code, body, replayed=False)
    return run_once(
        session, scope=scope, key=check_key(key), payload=payload, now=now, effect=effect
    )


def _find(session: Session, scope: str, key: str) -> IdempotencyRecord | None:
    return session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    ).one_or_none()
