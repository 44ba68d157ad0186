"""The payment-provider interface of paid plans, and its one adapter (``http``).

Lealta never touches a card. It asks the provider to open a subscription (the member pays on
the provider's checkout page) or to cancel one, and learns what happened from the provider's
signed webhooks. The ``http`` adapter speaks this documented format (README, "Paid plans"):

* ``POST {LEALTA_PAYMENTS_URL}/subscriptions`` with ``Authorization: Bearer <api key>`` and
  ``Idempotency-Key``, body ``{"customer", "plan", "amount", "currency", "interval",
  "trial_days"}``; answers ``{"id", "checkout_url"}``.
* ``POST {LEALTA_PAYMENTS_URL}/subscriptions/{id}/cancel`` with ``{"at_period_end": bool}``.
* Webhooks to ``POST /v1/plans/webhooks/http`` with ``Lealta-Payments-Timestamp`` (Unix
  seconds) and ``Lealta-Payments-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``,
  body ``{"id", "type", "created", "data": {"subscription", "amount", "currency",
  "period_start", "period_end"}}`` where ``type`` is ``invoice.paid``,
  ``invoice.payment_failed`` or ``subscription.canceled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import httpx
import orjson

from lealta.config import Settings
from lealta.kit.errors import Conflict, InvalidInput, LealtaError, Unauthorized
from lealta.webhooks.signing import signature, verify

TIMESTAMP_HEADER = "Lealta-Payments-Timestamp"
SIGNATURE_HEADER = "Lealta-Payments-Signature"
TOLERANCE_SECONDS = 300
EVENT_TYPES = ("invoice.paid", "invoice.payment_failed", "subscription.canceled")


class ProviderUnavailable(LealtaError):
    status_code = 502
    code = "payments_unavailable"


@dataclass(frozen=True, slots=True)
class Opened:
    """A subscription the provider opened: its reference and where the member pays."""

    ref: str
    checkout_url: str | None


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One verified webhook, in Lealta's terms."""

    id: str
    type: str
    subscription: str
    occurred_at: datetime
    amount: Decimal
    currency: str
    period_start: datetime | None
    period_end: datetime | None
    payload: dict[str, Any]


class PaymentProvider(Protocol):
    name: str

    def open(
        self, *, key: str, customer: str, plan: str, amount: Decimal, currency: str,
        interval: str, trial_days: int,
    ) -> Opened: ...  # fmt: skip

    def cancel(self, ref: str, *, at_period_end: bool) -> None: ...

    def read(self, headers: dict[str, str], body: bytes, *, now: datetime) -> ProviderEvent: ...


class HttpProvider:
    """The ``http`` adapter (see the module docstring for the format)."""

    name = "http"

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.base = settings.payments_url.rstrip("/")
        self.api_key = settings.payments_api_key
        self.secret = settings.payments_webhook_secret
        self.timeout = timeout

    def _post(self, path: str, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if key is not None:
            headers["Idempotency-Key"] = key
        try:
            answer = httpx.post(
                f"{self.base}{path}", content=orjson.dumps(body), headers=headers,
                timeout=self.timeout,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                "The payment provider could not be reached; try again.",
                details={"error": type(exc).__name__},
            ) from None
        if answer.status_code >= 400:
            raise ProviderUnavailable(
                "The payment provider refused the request.",
                details={"status": answer.status_code, "body": answer.text[:300]},
            )
        try:
            found = orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            found = None
        if not isinstance(found, dict):
            raise ProviderUnavailable("The payment provider answered something unreadable.")
        return found

    def open(
        self, *, key: str, customer: str, plan: str, amount: Decimal, currency: str,
        interval: str, trial_days: int,
    ) -> Opened:  # fmt: skip
        found = self._post(
            "/subscriptions",
            {
                "customer": customer,
                "plan": plan,
                "amount": str(amount),
                "currency": currency,
                "interval": interval,
                "trial_days": trial_days,
            },
            key=key,
        )
        ref, url = found.get("id"), found.get("checkout_url")
        if not isinstance(ref, str) or not ref or len(ref) > 128:
            raise ProviderUnavailable("The payment provider gave no subscription id.")
        return Opened(ref, url if isinstance(url, str) and len(url) <= 500 else None)

    def cancel(self, ref: str, *, at_period_end: bool) -> None:
        self._post(f"/subscriptions/{ref}/cancel", {"at_period_end": at_period_end})

    def read(self, headers: dict[str, str], body: bytes, *, now: datetime) -> ProviderEvent:
        lower = {k.lower(): v for k, v in headers.items()}
        timestamp = lower.get(TIMESTAMP_HEADER.lower(), "")
        sig = lower.get(SIGNATURE_HEADER.lower(), "")
        if not verify(
            self.secret, timestamp=timestamp, body=body, signature_header=sig,
            now=int(now.timestamp()), tolerance=TOLERANCE_SECONDS,
        ):  # fmt: skip
            raise Unauthorized(
                "The webhook signature is missing, wrong or too old.", code="invalid_signature"
            )
        return parse(body)


def sign(secret: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    """The headers a provider sends with ``body`` (used by the test provider and docs)."""
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def _moment(data: dict[str, Any], name: str, *, required: bool = False) -> datetime | None:
    raw = data.get(name)
    if raw is None and not required:
        return None
    try:
        value = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise InvalidInput(
            f"'{name}' must be an ISO 8601 time with an offset.", code="invalid_webhook"
        )
    return value


def parse(body: bytes) -> ProviderEvent:
    """A verified body as a :class:`ProviderEvent`, or ``invalid_webhook``."""
    try:
        found = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("The webhook body is not JSON.", code="invalid_webhook") from None
    data = found.get("data") if isinstance(found, dict) else None
    if not isinstance(found, dict) or not isinstance(data, dict):
        raise InvalidInput("The webhook needs 'id', 'type' and 'data'.", code="invalid_webhook")
    event_id, kind, sub = found.get("id"), found.get("type"), data.get("subscription")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 128:
        raise InvalidInput("'id' must be a string of 1-128 characters.", code="invalid_webhook")
    if kind not in EVENT_TYPES:
        raise InvalidInput(
            f"'type' must be one of {', '.join(EVENT_TYPES)}.",
            code="invalid_webhook",
            details={"type": kind},
        )
    if not isinstance(sub, str) or not 0 < len(sub) <= 128:
        raise InvalidInput("'data.subscription' must be a string.", code="invalid_webhook")
    try:
        amount = Decimal(str(data.get("amount", "0")))
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0 or amount > Decimal("1e12"):
        raise InvalidInput("'data.amount' must be a non-negative number.", code="invalid_webhook")
    currency = data.get("currency", "")
    if not isinstance(currency, str) or len(currency) > 3:
        raise InvalidInput("'data.currency' must be an ISO 4217 code.", code="invalid_webhook")
    occurred = _moment(found, "created", required=True)
    assert occurred is not None
    start, end = _moment(data, "period_start"), _moment(data, "period_end")
    if kind == "invoice.paid" and (start is None or end is None or end <= start):
        raise InvalidInput(
            "A paid invoice needs 'period_start' before 'period_end'.", code="invalid_webhook"
        )
    return ProviderEvent(
        id=event_id,
        type=kind,
        subscription=sub,
        occurred_at=occurred,
        amount=amount,
        currency=currency.upper(),
        period_start=start,
        period_end=end,
        payload=found,
    )


def provider_for(settings: Settings, name: str = "http") -> PaymentProvider:
    """The configured provider named ``name``, or ``payments_not_configured``."""
    if name != "http" or not settings.payments_url or not settings.payments_webhook_secret:
        raise Conflict(
            "Paid plans need a payment provider: set LEALTA_PAYMENTS_URL and"
            " LEALTA_PAYMENTS_WEBHOOK_SECRET.",
            code="payments_not_configured",
        )
    return HttpProvider(settings)
