"""The FastAPI dependencies that authenticate a request by its API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from lealta.apikeys.cache import KeyCache, verify
from lealta.apikeys.service import Principal
from lealta.kit.http import DbDep


def get_principal(
    request: Request,
    db: DbDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    key = x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    return verify(db, key_cache(request), key)


def key_cache(request: Request) -> KeyCache:
    """The application's cache of verified keys (made on first use when the app has none)."""
    state = request.app.state
    cache: KeyCache | None = getattr(state, "api_key_cache", None)
    if cache is None:
        cache = state.api_key_cache = KeyCache(state.settings.api_key_cache_seconds)
    return cache


def get_writer(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.require_write()
    return principal


Reader = Annotated[Principal, Depends(get_principal)]
Writer = Annotated[Principal, Depends(get_writer)]
