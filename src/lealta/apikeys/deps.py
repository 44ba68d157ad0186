"""The FastAPI dependencies that authenticate a request by its API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from lealta.apikeys.cache import KeyCache, verify, verify_cached
from lealta.apikeys.service import Principal
from lealta.kit.db import Database


async def get_principal(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The key's principal, or ``401``.

    A coroutine on purpose: a key in the cache is answered on the event loop, with no trip
    through the thread pool (FastAPI runs every plain ``def`` dependency in a worker thread,
    which costs more CPU here than the lookup itself); only a key to check against the
    database goes to a thread.
    """
    key = x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    cache = key_cache(request)
    principal = verify_cached(cache, key)
    if principal is not None:
        return principal
    db: Database = request.app.state.db
    return await run_in_threadpool(verify, db, cache, key)


def key_cache(request: Request) -> KeyCache:
    """The application's cache of verified keys (made on first use when the app has none)."""
    state = request.app.state
    cache: KeyCache | None = getattr(state, "api_key_cache", None)
    if cache is None:
        cache = state.api_key_cache = KeyCache(state.settings.api_key_cache_seconds)
    return cache


async def get_writer(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.require_write()
    return principal


Reader = Annotated[Principal, Depends(get_principal)]
Writer = Annotated[Principal, Depends(get_writer)]
