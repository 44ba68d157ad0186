"""HTTP plumbing: error mapping, request limits, metrics, access logs, common dependencies."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import Counter, Histogram
from pydantic import BaseModel
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from starlette._utils import get_route_path
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lealta.config import Settings
from lealta.kit.clock import Clock
from lealta.kit.db import Database, json_bytes
from lealta.kit.errors import LealtaError, validation_body
from lealta.kit.idempotency import MissingIdempotencyKey, Outcome, check_key, run_once
from lealta.kit.logging import get_logger
from lealta.kit.redact import redact_target

log = get_logger("lealta.http")

REQUESTS = Counter("lealta_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "lealta_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


RETRY_AFTER: dict[str, Any] = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "string"},
}
_ERROR_STATUSES: dict[int | str, dict[str, Any]] = {
    code: {"description": desc, "model": ErrorResponse}
    for code, desc in {
        400: "Malformed request (malformed_json, missing_idempotency_key)",
        401: "Missing or invalid API key",
        403: "API key lacks the scope",
        404: "Unknown member, order or route",
        409: "Business conflict (insufficient points, already recorded, key reused)",
        413: "Body or batch too large",
        422: "Payload failed validation (validation_error, invalid_external_id, …)",
    }.items()
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ERROR_STATUSES,
    503: {
        "description": "The database is busy or unreachable; retry (database_unavailable)",
        "model": ErrorResponse,
        "headers": {"Retry-After": RETRY_AFTER},
    },
}


PAGE_PREFIXES = ("/admin", "/me", "/till")


def is_page(request: Request) -> bool:
    """Requests for the HTML console and cockpit get HTML errors; the API gets JSON."""
    path = request.url.path
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PAGE_PREFIXES)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


DB_RETRY_AFTER = 5  # seconds, the Retry-After of a 503 database_unavailable


class ErrorPage(Protocol):
    """Renders the styled HTML error page of the console and cockpit (given by ``web/``)."""

    def __call__(
        self, request: Request, *, status_code: int, code: str, message: str, headers: Any = None
    ) -> Response: ...


UnavailablePage = Callable[[Request, dict[str, str]], Response]
"""Renders the styled 503 page without touching the database."""


def install_error_handlers(
    app: FastAPI,
    *,
    error_page: ErrorPage | None = None,
    unavailable_page: UnavailablePage | None = None,
) -> None:
    """One JSON error shape for the API; pages (``is_page``) get the HTML renderers given by
    the web edge (kit does not import ``web/``), or JSON when none is given."""

    @app.exception_handler(LealtaError)
    async def _lealta(request: Request, exc: LealtaError) -> Response:
        if is_page(request) and error_page is not None:
            if exc.status_code == 401:
                login = "/me/login" if request.url.path.startswith("/me") else "/admin/login"
                return RedirectResponse(f"{login}?next={request.url.path}", status_code=303)

            return await run_in_threadpool(
                error_page,
                request,
                status_code=exc.status_code,
                code=exc.code,
                message=exc.message,
            )
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                error_body("malformed_json", "The request body is not valid JSON."),
                status_code=400,
            )
        if any(_is_missing_idempotency_key(e) for e in errors):
            missing = MissingIdempotencyKey()
            return JSONResponse(missing.to_dict(), status_code=missing.status_code)
        details = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in errors
        ]
        return JSONResponse(validation_body(details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; a path served by
            # several routes (GET and PATCH /v1/members/{id}) allows all of their methods.
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
        if is_page(request) and error_page is not None and exc.status_code in (404, 405):
            return await run_in_threadpool(
                error_page,
                request,
                status_code=exc.status_code,
                code=codes[exc.status_code],
                message=str(exc.detail),
                headers=getattr(exc, "headers", None),
            )
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DataError)
    async def _unstorable(_: Request, exc: DataError) -> JSONResponse:
        # The database refused a value (out of range, too long, NUL byte): the client's input,
        # and the unit of work has rolled back, so nothing changed.
        log.warning("unstorable_value", error=str(exc.orig).splitlines()[0])
        return JSONResponse(
            error_body("invalid_value", "A value in the request cannot be stored."),
            status_code=422,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    async def _db_busy(request: Request, exc: Exception) -> Response:
        # Unreachable, timed out (connect or statement timeout, lock wait) or no free pooled
        # connection: the unit of work rolled back, so the client may simply retry.
        cause = getattr(exc, "orig", None) or exc
        log.warning("database_unavailable", error=(str(cause).splitlines() or [""])[0])
        headers = {"Retry-After": str(DB_RETRY_AFTER)}
        if is_page(request) and unavailable_page is not None:
            return unavailable_page(request, headers)
        return JSONResponse(
            error_body("database_unavailable", "The database is busy or unreachable; retry."),
            status_code=503,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error")
        return JSONResponse(
            error_body("internal_error", "Something went wrong on our side."), status_code=500
        )


def _is_missing_idempotency_key(error: Any) -> bool:
    loc = tuple(error.get("loc", ()))
    return error.get("type") == "missing" and loc == ("header", IDEMPOTENCY_HEADER)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path, for a 405's ``Allow`` header."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and route.methods:
            methods.update(route.methods)
    return sorted(methods)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 before the app reads them whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_json(
                send,
                413,
                error_body(
                    "payload_too_large", f"Request bodies are limited to {self.max_bytes} bytes."
                ),
            )
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI turns any other exception raised while reading the body into a
                    # 400; an HTTPException passes through to the 413 handler.
                    raise StarletteHTTPException(
                        413, f"Request bodies are limited to {self.max_bytes} bytes."
                    )
            return message

        await self.app(scope, limited, send)


_request_ids = itertools.count()
_request_id_prefix = ("", -1)


def new_request_id() -> str:
    """32 hex characters, unique across processes: a random prefix drawn once per process
    and a counter. ``uuid4()`` reads the kernel's random source on every request, a system
    call that also gives up the GIL mid-request under load."""
    global _request_id_prefix
    prefix, pid = _request_id_prefix
    if pid != os.getpid():  # first use in this process (or a forked child)
        prefix, pid = os.urandom(8).hex(), os.getpid()
        _request_id_prefix = (prefix, pid)
    return f"{prefix}{next(_request_ids) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


class ObservabilityMiddleware:
    """Request id, JSON access log line and Prometheus metrics for every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or new_request_id()
        status = 500

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(elapsed)
            if route not in ("/health", "/metrics"):
                log.info(
                    "request",
                    method=method,
                    path=redact_target(str(scope.get("path", ""))),
                    route=route,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                    request_id=request_id,
                )


class FastJSONResponse(JSONResponse):
    """A ``JSONResponse`` rendered by orjson (a few times faster than the standard library's
    ``json.dumps``, which Starlette uses) for bodies that are already JSON values."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def respond(outcome: Outcome) -> JSONResponse:
    """The HTTP response for an idempotent write: a replay is 200 with a marker header."""
    if outcome.replayed:
        return FastJSONResponse(
            outcome.body, status_code=200, headers={"Idempotent-Replayed": "true"}
        )
    return FastJSONResponse(outcome.body, status_code=outcome.status_code)


class FastLane(BaseRoute):
    """The GET requests of a hot read endpoint, answered by ``answer(request)`` without
    FastAPI's per-request machinery.

    FastAPI matches a request against the routes of each included router in turn (twice: to
    find the router, then the route), resolves the endpoint's dependencies and parameters
    generically, and validates the endpoint's answer against its ``response_model``: for a
    one-row read, more CPU than the read. A lane is put ahead of the routers (in
    ``app.router.routes``, after the ops routes) and takes only the GET requests of
    ``route``'s path whose path parameters ``accept`` turns into the endpoint's arguments;
    anything else (another method, a parameter ``accept`` refuses with ``None``) goes on to
    ``route`` itself, which answers it as before (``405``, ``422``) and documents the
    endpoint. ``answer`` must give what the endpoint gives (share the code); errors it raises
    reach the application's exception handlers as an endpoint's do. ``route`` must be
    included without a further prefix (its own path is the one matched).
    """

    def __init__(
        self,
        route: APIRoute,
        answer: Callable[[Request], Awaitable[Response]],
        accept: Callable[[dict[str, str]], dict[str, Any] | None],
    ) -> None:
        self.route = route
        self.answer = answer
        self.accept = accept

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        found = self.route.path_regex.match(get_route_path(scope))
        params = None if found is None else self.accept(found.groupdict())
        if params is None:
            return Match.NONE, {}
        # The route (metrics and access-log label) and parameters the endpoint would see.
        return Match.FULL, {"route": self.route, "endpoint": self.route.endpoint,
                            "path_params": params}  # fmt: skip

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.answer(Request(scope, receive))
        await response(scope, receive, send)


T = TypeVar("T")

_blocking = ThreadPoolExecutor(max_workers=40, thread_name_prefix="lealta-blocking")
"""The threads of :func:`run_blocking` (as many as Starlette's default thread pool)."""


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking ``fn(*args)`` (database work) in a thread and await its result.

    What FastAPI does for a plain ``def`` endpoint, for the hottest endpoints at about half
    the CPU: an executor future straight on the event loop instead of anyio's thread
    machinery (capacity limiter, cancel scopes, run-vars), which costs more CPU per request
    than a one-row read. Context variables travel with the call, as with anyio. As with a
    ``def`` endpoint, a request cancelled meanwhile does not stop the thread: its unit of
    work commits or rolls back on its own.
    """
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_blocking, context.run, fn, *args)


WriteEffect = Callable[[Session, datetime], tuple[int, dict[str, Any]]]
"""``(session, now) -> (status, body)``: the write an idempotent endpoint performs once."""


def idempotent_write(
    db: Database, clock: Clock, *, scope: str, key: str, payload: Any, effect: WriteEffect
) -> JSONResponse:
    """The shape of a write that requires an ``Idempotency-Key``: check the key, run
    ``effect`` once per ``(scope, key)`` in one transaction, and answer (a replay is a 200
    with ``Idempotent-Replayed: true``)."""
    checked = check_key(key)
    with db.unit_of_work() as session:
        now = clock.now()
        outcome = run_once(
            session,
            scope=scope,
            key=checked,
            payload=payload,
            now=now,
            effect=lambda: effect(session, now),
        )
    return respond(outcome)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    import orjson

    raw = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


# --- dependencies -----------------------------------------------------------------------


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DbDep = Annotated[Database, Depends(get_db)]
ClockDep = Annotated[Clock, Depends(get_clock)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
IDEMPOTENCY_HEADER = "Idempotency-Key"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        description="Unique per logical write; a replay returns the first response.",
        max_length=200,
        pattern=r"\S",
    ),
]
RequiredIdempotencyKey = Annotated[
    str,
    Header(
        alias=IDEMPOTENCY_HEADER,
        description="Required. Unique per logical write; a replay returns the first response."
        " Without it: 400 missing_idempotency_key.",
        max_length=200,
        pattern=r"\S",
    ),
]


def replayable(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for an idempotent write: the replay is a 200 with a marker."""
    return {
        200: {
            "model": model,
            "description": "A replay of the first response for this `Idempotency-Key` (with"
            " `Idempotent-Replayed: true`), or the result itself for writes whose success is"
            " 200.",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when this is the stored first response, replayed.",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        }
    }


def csv_download(lines: Iterable[bytes], filename: str) -> StreamingResponse:
    """A CSV streamed as an attachment named ``filename``, never cached."""
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
