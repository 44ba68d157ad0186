"""The FastAPI application factory."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from sqlalchemy import text
from starlette.middleware.sessions import SessionMiddleware

from lealta import __version__
from lealta.analytics.api import router as analytics_router
from lealta.analytics.dashboard_api import router as dashboard_api_router
from lealta.apikeys.deps import (
    get_any_principal,
    get_api_reader,
    get_api_writer,
    get_principal,
)
from lealta.bulk.api import router as bulk_router
from lealta.campaigns.api import router as campaigns_router
from lealta.config import Settings, get_settings
from lealta.coupons.api import router as coupons_router
from lealta.events.api import router as events_router
from lealta.experiments.api import router as experiments_router
from lealta.gamification.api import router as gamification_router
from lealta.inbound.api import router as inbound_router
from lealta.inbound.cors import PublishableCorsMiddleware
from lealta.jobs.api import router as jobs_router
from lealta.jobs.worker import Worker
from lealta.kit import openapi
from lealta.kit.clock import Clock, SystemClock
from lealta.kit.db import Database
from lealta.kit.http import (
    RETRY_AFTER,
    BodyLimitMiddleware,
    ErrorResponse,
    ObservabilityMiddleware,
    install_error_handlers,
)
from lealta.kit.logging import configure as configure_logging
from lealta.kit.logging import get_logger
from lealta.kit.redact import install_access_log_filter
from lealta.ledger.api import router as ledger_router
from lealta.members.api import balance_lane as members_balance_lane
from lealta.members.api import router as members_router
from lealta.notify.api import router as notify_router
from lealta.plans.api import router as plans_router
from lealta.privacy.api import router as privacy_router
from lealta.programme.api import router as programme_router
from lealta.referrals.api import router as referrals_router
from lealta.rewards.api import router as rewards_router
from lealta.segments.api import member_router as member_segments_router
from lealta.segments.api import router as segments_router
from lealta.surveys.api import router as surveys_router
from lealta.tiers.api import router as tiers_router
from lealta.web import errors as web_errors
from lealta.web.admin.routes_auth import router as admin_auth_router
from lealta.web.admin.routes_bulk import router as admin_bulk_router
from lealta.web.admin.routes_campaigns import link_router as campaign_link_router
from lealta.web.admin.routes_campaigns import router as admin_campaigns_router
from lealta.web.admin.routes_core import router as admin_core_router
from lealta.web.admin.routes_dashboard import router as admin_dashboard_router
from lealta.web.admin.routes_experiments import router as admin_experiments_router
from lealta.web.admin.routes_gamification import router as admin_gamification_router
from lealta.web.admin.routes_jobs import router as admin_jobs_router
from lealta.web.admin.routes_ops import router as admin_ops_router
from lealta.web.admin.routes_privacy import router as admin_privacy_router
from lealta.web.admin.routes_referrals import router as admin_referrals_router
from lealta.web.admin.routes_segments import router as admin_segments_router
from lealta.web.admin.routes_simulator import clv_router as admin_clv_router
from lealta.web.admin.routes_simulator import router as admin_simulator_router
from lealta.web.admin.routes_surveys import router as admin_surveys_router
from lealta.web.admin.routes_webhooks import router as admin_webhooks_router
from lealta.web.admin.routes_workflows import router as admin_workflows_router
from lealta.web.cockpit.routes import router as cockpit_router
from lealta.web.cockpit.routes_gamification import router as cockpit_gamification_router
from lealta.web.cockpit.routes_plans import router as cockpit_plans_router
from lealta.web.cockpit.routes_privacy import router as cockpit_privacy_router
from lealta.web.cockpit.routes_referrals import router as cockpit_referrals_router
from lealta.web.cockpit.routes_surveys import router as cockpit_surveys_router
from lealta.web.headers import SecurityHeadersMiddleware, with_hashed_scripts
from lealta.web.lang import router as lang_router
from lealta.web.notify.admin import router as admin_notify_router
from lealta.web.notify.cockpit import router as cockpit_notify_router
from lealta.webhooks import openapi as webhook_docs
from lealta.webhooks.api import router as webhooks_router
from lealta.workflows.api import router as workflows_router

DESCRIPTION = """
Lealta is the loyalty heart of a CRM: send it orders and events, read balances and history.

**Authentication**: `Authorization: Bearer <api key>` (create one with `lealta apikey create`).
`server` keys read and write; `read` keys only read; `publishable` keys (browser-safe) may
only `POST /v1/track` for the signed-in member and read `GET /v1/catalogue`.

**Idempotency**: every write accepts an `Idempotency-Key` header (ledger writes require one;
events may use their `id`). A replay returns the first response with
`Idempotent-Replayed: true`; the same key with a different body is `409 idempotency_key_reused`.

**Errors** always have the shape `{"error": {"code", "message", "details"}}` with a stable `code`.
"""

log = get_logger("lealta.app")


def serving_app() -> FastAPI:
    """The application as ``lealta run`` serves it (uvicorn's factory in each worker):
    :func:`create_app` in a long-lived process (see :func:`settle_long_lived`)."""
    app = create_app()
    app.state.long_lived = True
    return app


def settle_long_lived() -> None:
    """Once a serving process has started: what exists now (modules, the application, its
    routes and schemas: several hundred thousand objects) lives as long as the process, so
    the cyclic collector stops walking it (:func:`gc.freeze`, as CPython documents for
    long-lived start-up state). Each full collection had walked all of it: 100-190 ms during
    which the process answered nothing, several times a minute under load."""
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings | None = None, *, db: Database | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    database = db or Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout or None,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("worker_started", pid=os.getpid())
        # The embedded default runs its jobs (pending points, expiries, outbox deliveries)
        # in this process: nothing else to start, no cron. See README "Jobs and workers".
        jobs_worker: Worker | None = None
        if settings.runs_in_process_worker:
            jobs_worker = Worker(
                database, clock=app.state.clock, settings=settings, shutdown_timeout=10.0
            )
            jobs_worker.start()
        app.state.jobs_worker = jobs_worker
        if database.hot_reads is not None:
            await database.hot_reads.open()
        if getattr(app.state, "long_lived", False):
            settle_long_lived()
        yield
        if database.hot_reads is not None:
            await database.hot_reads.close()
        if jobs_worker is not None:
            jobs_worker.stop()
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
    install_error_handlers(
        app, error_page=web_errors.error_page, unavailable_page=web_errors.db_unavailable_page
    )
    openapi.install(app, get_principal, get_any_principal, get_api_reader, get_api_writer)
    # The ops routes come first (after the balance lane below, one regular expression):
    # FastAPI tries routes in order, a few µs each, and /health behind the ~250 routes of
    # the API and the pages cost ~0.7 ms of CPU per probe.
    ops = APIRouter()

    @ops.get("/health", tags=["ops"], summary="Liveness")
    async def health() -> dict[str, str]:
        """The process is up. No I/O and no thread: answers while every worker thread waits
        on the database."""
        return {"status": "ok"}

    @ops.get(
        "/ready",
        tags=["ops"],
        summary="Readiness",
        responses={
            200: {
                "description": "Ready",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string", "enum": ["ready"]},
                                "database": {"type": "string"},
                            },
                            "required": ["status", "database"],
                        }
                    }
                },
            },
            503: {
                "description": "Not ready (not_ready)",
                "model": ErrorResponse,
                "headers": {"Retry-After": RETRY_AFTER},
            },
        },
    )
    def ready() -> Response:
        """The database answers and the schema is migrated."""
        try:
            with database.unit_of_work(write=False) as session:
                session.execute(text("SELECT 1 FROM alembic_version"))
        except Exception as exc:  # any failure means "not ready", reported as 503
            # The cause (host, driver text) goes to the log only: the endpoint is anonymous.
            log.warning("not_ready", error=(str(exc).splitlines() or [""])[0])
            return JSONResponse(
                {
                    "error": {
                        "code": "not_ready",
                        "message": "The database is unreachable or not migrated.",
                        "details": None,
                    }
                },
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return JSONResponse({"status": "ready", "database": database.dialect})

    @ops.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4.",
                "content": {CONTENT_TYPE_PLAIN_0_0_4: {"schema": {"type": "string"}}},
            }
        },
    )
    def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    # The hottest read goes first, on a lane past FastAPI's routing (see ``FastLane``): it
    # declines anything but its own GET path with one regular expression.
    app.router.routes.append(members_balance_lane)
    app.include_router(ops)
    app.include_router(events_router)
    app.include_router(inbound_router)
    app.include_router(members_router)
    app.include_router(notify_router)
    app.include_router(privacy_router)
    app.include_router(ledger_router)
    app.include_router(tiers_router)
    app.include_router(rewards_router)
    app.include_router(coupons_router)
    app.include_router(programme_router)
    app.include_router(referrals_router)
    app.include_router(jobs_router)
    app.include_router(webhooks_router)
    webhook_docs.install(app)
    app.include_router(analytics_router)
    app.include_router(dashboard_api_router)
    app.include_router(bulk_router)
    app.include_router(plans_router)
    app.include_router(cockpit_plans_router)
    app.include_router(admin_auth_router)
    app.include_router(cockpit_router)
    app.include_router(cockpit_notify_router)
    app.include_router(admin_notify_router)
    app.include_router(cockpit_privacy_router)
    app.include_router(cockpit_referrals_router)
    app.include_router(admin_ops_router)
    app.include_router(admin_core_router)
    app.include_router(admin_dashboard_router)
    app.include_router(admin_privacy_router)
    app.include_router(admin_simulator_router)
    app.include_router(admin_clv_router)
    app.include_router(admin_jobs_router)
    app.include_router(admin_bulk_router)
    app.include_router(admin_webhooks_router)
    app.include_router(surveys_router)
    app.include_router(gamification_router)
    app.include_router(segments_router)
    app.include_router(member_segments_router)
    app.include_router(workflows_router)
    app.include_router(campaigns_router)
    app.include_router(cockpit_surveys_router)
    app.include_router(cockpit_gamification_router)
    app.include_router(admin_surveys_router)
    app.include_router(admin_segments_router)
    app.include_router(admin_campaigns_router)
    app.include_router(campaign_link_router)
    app.include_router(experiments_router)
    app.include_router(admin_experiments_router)
    app.include_router(admin_workflows_router)
    app.include_router(admin_referrals_router)
    app.include_router(admin_gamification_router)
    app.include_router(lang_router)

    # The API docs are served from files installed with the package (fastapi-offline ships
    # Swagger UI 5, which reads OpenAPI 3.1), so /docs works with no network.
    app.mount(
        "/static/docs",
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        name="docs-static",
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return with_hashed_scripts(
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title="Lealta API",
                swagger_js_url="/static/docs/swagger-ui-bundle.js",
                swagger_css_url="/static/docs/swagger-ui.css",
                swagger_favicon_url="/static/docs/favicon.png",
            )
        )

    # htmx comes installed from PyPI (django-js-lib-htmx ships its files; Django is not needed).
    app.mount(
        "/static/htmx",
        StaticFiles(directory=str(files("js_lib_htmx") / "static" / "htmx")),
        name="htmx",
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
    app.add_middleware(PublishableCorsMiddleware)
    # Order matters: the limit sits inside observability so refused bodies are still counted.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(ObservabilityMiddleware)
    install_access_log_filter()
    return app
