"""Settings, read once from ``LEALTA_*`` environment variables (and an optional ``.env``)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "development-only-secret-change-me"  # noqa: S105 - refused in production


class Settings(BaseSettings):
    """Every tunable of a Lealta process. See README "Configuration"."""

    model_config = SettingsConfigDict(env_prefix="LEALTA_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty means the embedded SQLite file under data_dir.",
    )
    db_pool_size: int = 10
    db_max_overflow: int = 20
    db_pool_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a pooled connection."
    )
    db_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to open a connection."
    )
    db_statement_timeout: float = Field(
        default=30.0, ge=0, description="Seconds one statement may run in the server; 0: no limit."
    )
    worker_healthcheck_timeout: int = Field(
        default=60, gt=0, description="Seconds a worker process may take to answer the supervisor."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int | None = Field(
        default=None,
        ge=1,
        description="Worker processes of `lealta run`; unset: one per CPU up to 4 on PostgreSQL,"
        " one on SQLite (a single writer gains nothing from more).",
    )
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    auto_enrol: bool = Field(
        default=True, description="Create a member on the first event naming an unknown customer."
    )
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Seconds a verified API key is remembered per process; 0: check every time.",
    )
    max_batch_events: int = 1000
    point_cost: Decimal = Field(
        default=Decimal("0.01"),
        ge=0,
        le=Decimal("1000000"),
        description="What one point costs the programme, in major units of the programme"
        " currency: values the points liability and the programme cost on the dashboard.",
    )
    max_order_amount: Decimal = Field(
        default=Decimal("10000000"),
        gt=0,
        le=Decimal("1000000000000"),
        description="Largest order total, item price or refund, in major units of the currency.",
    )
    max_body_bytes: int = 4 * 1024 * 1024
    secret_key: str = Field(
        default=DEV_SECRET,
        description="Signs session cookies and magic links. Must be set in production.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL used in emailed links."
    )
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "Lealta <no-reply@lealta.local>"
    email_open_tracking: bool = Field(
        default=True,
        description="Campaign e-mails carry a 1x1 image that records when they are opened"
        " (opens are also counted when a link is clicked). Off: no image, opens of e-mails"
        " are counted from clicks only.",
    )
    magic_link_minutes: int = 15
    cookie_secure: bool = False
    admin_lockout_attempts: int = 5
    admin_lockout_minutes: int = 15
    upload_max_bytes: int = 2 * 1024 * 1024
    in_process_worker: bool | None = Field(
        default=None,
        description="Run a jobs worker thread inside `lealta run`. Unset: on for SQLite (except"
        " with env=test), off for PostgreSQL, where `lealta worker` runs on its own.",
    )
    worker_concurrency: int = Field(
        default=2, ge=1, le=64, description="Threads of a jobs worker (--concurrency wins)."
    )
    worker_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Seconds an idle jobs worker waits between looks."
    )
    job_lease_seconds: float = Field(
        default=60.0,
        ge=1,
        description="Seconds a claimed job stays a worker's without renewal; after that a dead"
        " worker's job runs elsewhere.",
    )
    job_retention_days: int = Field(
        default=7, ge=1, description="Days succeeded and discarded jobs are kept."
    )
    retention_inactive_months: int = Field(
        default=0,
        ge=0,
        description="GDPR retention: members with no activity for this many months are erased or"
        " pseudonymised by a daily job; 0: off.",
    )
    retention_action: Literal["erase", "pseudonymise"] = Field(
        default="pseudonymise", description="What the retention job does to an inactive member."
    )
    retention_batch: int = Field(
        default=500, ge=1, le=10_000, description="Inactive members handled per retention run."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="Seconds one webhook request may take."
    )
    webhook_disable_after_failures: int = Field(
        default=20,
        ge=1,
        description="Consecutive failed webhook attempts that, spanning at least"
        " `webhook_disable_after_hours`, disable an endpoint.",
    )
    webhook_disable_after_hours: float = Field(
        default=24.0, ge=0, description="Hours an endpoint must keep failing before it is disabled."
    )
    webhook_retention_days: int = Field(
        default=30, ge=1, description="Days finished webhook deliveries stay in the log."
    )
    shopify_webhook_secret: str = Field(
        default="",
        description="Shared secret of the shop's Shopify webhooks (X-Shopify-Hmac-Sha256);"
        " empty: the /v1/inbound/shopify endpoints answer 404 inbound_not_configured.",
    )
    payments_url: str = Field(
        default="",
        description="Base URL of the payment provider's API that bills paid plans (the `http`"
        " adapter: POST /subscriptions, POST /subscriptions/{id}/cancel); empty: plans cannot"
        " be subscribed to (409 payments_not_configured).",
    )
    payments_api_key: str = Field(
        default="", description="Bearer token Lealta sends to the payment provider's API."
    )
    payments_webhook_secret: str = Field(
        default="",
        description="Secret of the provider's signed payment webhooks"
        ' (`Lealta-Payments-Signature: v1=HMAC-SHA256("<timestamp>.<body>")`).',
    )
    member_token_secret: str = Field(
        default="",
        description="Signs member tokens (HMAC-SHA256 of the external id) that prove the member"
        " to a publishable key; empty: only the cockpit session proves the member.",
    )
    notify_http_url: str = Field(
        default="",
        description="The SMS and push provider: messages are POSTed there as JSON. Empty: off.",
    )
    notify_http_token: str = Field(
        default="", description="Bearer token sent to the SMS and push provider."
    )
    notify_cap_messages: int = Field(
        default=5, ge=0, description="Messages a member may get per channel per period; 0: none."
    )
    notify_cap_hours: int = Field(
        default=24, ge=1, le=24 * 31, description="Hours of the frequency cap's period."
    )
    notify_quiet_start: int = Field(
        default=22, ge=0, le=23, description="Hour (member's time) quiet hours begin."
    )
    notify_quiet_end: int = Field(
        default=8, ge=0, le=23, description="Hour quiet hours end; equal to the start: none."
    )
    notify_events: str = Field(
        default="",
        description="Domain events that send their template by e-mail, comma-separated, of"
        " order.paid, tier.changed, threshold.reached. Empty: none.",
    )

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'lealta.db').as_posix()}"
        if self.env == "production" and self.secret_key == DEV_SECRET:
            raise ValueError(
                "set LEALTA_SECRET_KEY: the development secret is refused in production"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def runs_in_process_worker(self) -> bool:
        """Whether ``lealta run`` starts a jobs worker thread. By default only on SQLite, whose
        single writer makes a separate worker process pointless; tests (``env=test``) build
        many apps and turn it on where they want it."""
        if self.in_process_worker is not None:
            return self.in_process_worker
        return self.is_sqlite and self.env != "test"


@lru_cache
def get_settings() -> Settings:
    return Settings()
