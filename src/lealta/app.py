"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.middleware.sessions import SessionMiddleware

from lealta import __version__
from lealta.config import Settings, get_settings
from lealta.coupons.api import router as coupons_router
from lealta.events.api import router as events_router
from lealta.kit.clock import Clock, SystemClock
from lealta.kit.db import Database
from lealta.kit.http import BodyLimitMiddleware, ObservabilityMiddleware, install_error_handlers
from lealta.kit.logging import configure as configure_logging
from lealta.ledger.api import router as ledger_router
from lealta.members.api import router as members_router
from lealta.programme.api import router as programme_router
from lealta.rewards.api import router as rewards_router
from lealta.tiers.api import router as tiers_router
from lealta.web.admin.routes_auth import router as admin_auth_router
from lealta.web.admin.routes_core import router as admin_core_router
from lealta.web.admin.routes_ops import router as admin_ops_router
from lealta.web.cockpit.routes import router as cockpit_router

DESCRIPTION = """
Lealta is the loyalty heart of a CRM: send it orders and events, read balances and history.

**Authentication**: `Authorization: Bearer <api key>` (create one with `lealta apikey create`).
`server` keys read and write; `read` keys only read.

**Idempotency**: every write accepts an `Idempotency-Key` header (ledger writes require one;
events may use their `id`). A replay returns the first response with
`Idempotent-Replayed: true`; the same key with a different body is `409 idempotency_key_reused`.

**Errors** always have the shape `{"error": {"code", "message", "details"}}` with a stable `code`.
"""


def create_app(
    settings: Settings | None = None, *, db: Database | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    database = db or Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if db is None:
            database.dispose()

    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        title="Lealta",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.clock = clock or SystemClock()
    install_error_handlers(app)
    app.include_router(events_router)
    app.include_router(members_router)
    app.include_router(ledger_router)
    app.include_router(tiers_router)
    app.include_router(rewards_router)
    app.include_router(coupons_router)
    app.include_router(programme_router)
    app.include_router(admin_auth_router)
    app.include_router(cockpit_router)
    app.include_router(admin_ops_router)
    app.include_router(admin_core_router)

    @app.get("/health", tags=["ops"], summary="Liveness")
    def health() -> dict[str, str]:
        """The process is up (no database call)."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], summary="Readiness")
    def ready() -> Response:
        """The database answers and the schema is migrated."""
        try:
            with database.unit_of_work(write=False) as session:
                session.execute(text("SELECT 1 FROM alembic_version"))
        except Exception as exc:  # any failure means "not ready", reported as 503
            return JSONResponse(
                {
                    "error": {
                        "code": "not_ready",
                        "message": str(exc).splitlines()[0],
                        "details": None,
                    }
                },
                status_code=503,
            )
        return JSONResponse({"status": "ready", "database": database.dialect})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # The API docs are served from files installed with the package (fastapi-offline ships
    # Swagger UI 5, which reads OpenAPI 3.1), so /docs works with no network.
    app.mount(
        "/static/docs",
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        name="docs-static",
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Lealta API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )

    app.mount("/static", StaticFiles(directory=str(files("lealta.web") / "static")), name="static")
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie="lealta_session",
        same_site="lax",
        https_only=settings.cookie_secure,
        max_age=12 * 3600,
    )
    # Order matters: the limit sits inside observability so refused bodies are still counted.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObservabilityMiddleware)
    return app
