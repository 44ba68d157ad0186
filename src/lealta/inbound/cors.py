"""CORS for publishable keys: browsers on the origins a key allows may call ``/v1/track`` and
``/v1/catalogue``, and nothing else.

A preflight (``OPTIONS``) carries no key, so it is answered for an origin that some live
publishable key allows (``lealta apikey origin add``); the real request is then checked
against its own key's origins by the endpoint (``403 origin_not_allowed``), which marks the
request so that this middleware adds ``Access-Control-Allow-Origin`` to the answer. Requests
without an ``Origin`` header (servers, curl) are not browsers and pass untouched.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lealta.inbound import service
from lealta.inbound.tokens import TOKEN_HEADER
from lealta.kit.db import Database
from lealta.kit.errors import InvalidInput

BROWSER_PATHS = frozenset({"/v1/track", "/v1/catalogue"})
STATE_KEY = "cors_origin"
ALLOW_HEADERS = f"Authorization, Content-Type, Idempotency-Key, X-API-Key, {TOKEN_HEADER}"
MAX_AGE = "600"


def _origin(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"origin":
            return bytes(value).decode("latin-1")
    return None


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]


def allowed(db: Database, origin: str) -> bool:
    """Whether some live publishable key may be used from ``origin``."""
    try:
        value = service.check_origin(origin)
    except InvalidInput:
        return False
    with db.unit_of_work(write=False) as session:
        return service.any_key_allows(session, value)


class PublishableCorsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in BROWSER_PATHS:
            await self.app(scope, receive, send)
            return
        origin = _origin(scope)
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "OPTIONS":
            await self._preflight(scope, origin, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                marked = (scope.get("state") or {}).get(STATE_KEY)
                if marked == origin:
                    message["headers"] = [*message.get("headers", []), *_cors_headers(origin)]
            await send(message)

        await self.app(scope, receive, add_headers)

    async def _preflight(self, scope: Scope, origin: str, send: Send) -> None:
        db: Database = scope["app"].state.db
        ok = await run_in_threadpool(allowed, db, origin)
        headers: list[tuple[bytes, bytes]] = [(b"content-length", b"0"), (b"vary", b"Origin")]
        if ok:
            headers = [
                *headers[:1],
                *_cors_headers(origin),
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", MAX_AGE.encode()),
            ]
        start: dict[str, Any] = {
            "type": "http.response.start",
            "status": 204 if ok else 403,
            "headers": headers,
        }
        await send(start)
        await send({"type": "http.response.body", "body": b""})
