"""Keys look like ``lea_<prefix>_<secret>``. The prefix finds the row; only the SHA-256 digest
of the whole key is stored, compared in constant time. Keys carry 256 bits of randomness, so
a fast digest is the right tool here (a slow password hash would tax every request)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from lealta.kit.errors import Forbidden, NotFound, Unauthorized
from lealta.models import ApiKey

Scope = Literal["server", "read", "publishable"]
SCOPES: tuple[Scope, ...] = ("server", "read", "publishable")
PUBLISHABLE: Scope = "publishable"
"""Browser-safe: may only ``track`` for the member the browser proves (cockpit session or
member token) and read the public catalogue; every other endpoint answers ``403
publishable_key_not_allowed`` (see :mod:`lealta.inbound`)."""


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    name: str
    scope: str

    @property
    def actor(self) -> str:
        return f"apikey:{self.name}"

    @property
    def publishable(self) -> bool:
        return self.scope == PUBLISHABLE

    def refuse_publishable(self) -> None:
        """``403 publishable_key_not_allowed`` for a publishable key: it lives in browsers, so
        it reaches only the endpoints that accept it by name."""
        if self.scope == PUBLISHABLE:
            raise Forbidden(
                "A publishable key may only track events for the signed-in member and read the"
                " public catalogue; use a server key for this endpoint.",
                code="publishable_key_not_allowed",
            )

    def require_write(self) -> None:
        if self.scope != "server":
            raise Forbidden(
                "This API key may only read; writes need a 'server' key.",
                code="insufficient_scope",
            )


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(session: Session, *, name: str, scope: Scope, now: datetime) -> tuple[ApiKey, str]:
    """Create a key; the plain secret is returned once and never stored."""
    prefix = secrets.token_hex(4)
    key = f"lea_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(name=name, prefix=prefix, secret_hash=_digest(key), scope=scope, created_at=now)
    session.add(row)
    session.flush()
    return row, key


# Bumped by every revocation in this process: verified keys cached before it are verified
# again (see ``apikeys.cache``). Other processes notice a revocation when their cache expires.
_revocations = itertools.count(1)
_generation = 0


def generation() -> int:
    """Changes whenever a key is revoked in this process."""
    return _generation


def _bump(*_: object) -> None:
    global _generation
    _generation = next(_revocations)


def revoke(session: Session, prefix: str, *, now: datetime) -> ApiKey:
    """Revoke a key (idempotent). Keys cached in this process stop working at the commit."""
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if row is None:
        raise NotFound(f"No API key with prefix '{prefix}'.", code="api_key_not_found")
    row.revoked_at = row.revoked_at or now
    # Now, and again at the commit: a request that read the key in between must not keep it.
    _bump()
    event.listen(session, "after_commit", _bump, once=True)
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def digest(key: str) -> str:
    """The stored form of a key (SHA-256, hex); also what caches are keyed by."""
    return _digest(key)


def prefix_of(key: str | None) -> str:
    """The prefix of a well-formed key, or ``401 missing_api_key``/``invalid_api_key``."""
    if not key:
        raise Unauthorized(
            "Send an API key as 'Authorization: Bearer <key>' (create one with"
            " 'lealta apikey create').",
            code="missing_api_key",
        )
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "lea":
        raise Unauthorized("The API key is malformed.", code="invalid_api_key")
    return parts[1]


def authenticate(session: Session, key: str | None) -> Principal:
    """The principal for a presented key, or ``401``."""
    prefix = prefix_of(key)
    assert key is not None
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if row is None or not hmac.compare_digest(row.secret_hash, _digest(key)):
        raise Unauthorized("The API key is not valid.", code="invalid_api_key")
    if row.revoked_at is not None:
        raise Unauthorized("The API key was revoked.", code="revoked_api_key")
    return Principal(row.id, row.name, row.scope)
