"""Verified API keys, remembered for a few seconds so a request needs no transaction of its own
to authenticate.

Entries are keyed by the key's SHA-256 digest (the raw secret is never held), hold only keys
that were valid, and are bounded in number: a flood of made-up keys reaches the database each
time, as before, but never grows the cache. A revocation in this process empties it at once
(``service.generation``); another process's revocation takes effect within the TTL.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from lealta.apikeys import service
from lealta.apikeys.service import Principal
from lealta.kit.db import Database

DEFAULT_MAX_ENTRIES = 1024


class KeyCache:
    """Valid keys by digest for ``ttl`` seconds of ``monotonic`` time (0: no caching)."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._generation = service.generation()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            self._forget_revoked()
            entry = self._entries.get(digest)
            if entry is None:
                return None
            principal, expires = entry
            if self._monotonic() >= expires:
                del self._entries[digest]
                return None
            return principal

    def put(self, digest: str, principal: Principal, *, generation: int) -> None:
        """Remember a key verified against the database when ``generation`` was current."""
        if self.ttl <= 0:
            return
        with self._lock:
            self._forget_revoked()
            if generation != self._generation:
                return  # a key was revoked while this one was being read
            self._entries[digest] = (principal, self._monotonic() + self.ttl)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _forget_revoked(self) -> None:
        current = service.generation()
        if current != self._generation:
            self._entries.clear()
            self._generation = current


def verify_cached(cache: KeyCache, key: str | None) -> Principal | None:
    """The principal of a key verified within the TTL, without touching the database; None
    when the database must be asked (``401`` at once for a missing or malformed key)."""
    service.prefix_of(key)
    assert key is not None
    return cache.get(service.digest(key))


def verify(db: Database, cache: KeyCache, key: str | None) -> Principal:
    """The principal for a presented key, from the cache or one short read; else ``401``.

    The read is its own unit of work without a transaction on PostgreSQL (one statement),
    so it ends with no rollback and psycopg keeps its prepared statements.
    """
    principal = verify_cached(cache, key)
    if principal is not None:
        return principal
    assert key is not None
    generation = service.generation()
    with db.unit_of_work(write=False, autocommit=True) as session:
        principal = service.authenticate(session, key)
    cache.put(service.digest(key), principal, generation=generation)
    return principal
