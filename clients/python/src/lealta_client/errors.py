"""The exceptions the client raises.

Every error answer of the API has the body ``{"error": {"code", "message", "details"}}``;
it is raised as an :class:`APIStatusError` subclass chosen by the HTTP status, carrying the
stable machine-readable ``code`` (``insufficient_points``, ``idempotency_key_reused`` …), the
message and the details. A server that could not be reached (after the retries) is an
:class:`APIConnectionError`.
"""

from __future__ import annotations

from typing import Any

import httpx


class LealtaClientError(Exception):
    """Base of every exception this package raises."""


class APIConnectionError(LealtaClientError):
    """No answer: the connection failed, broke or timed out on every attempt."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts


class APITimeoutError(APIConnectionError):
    """The last attempt timed out."""


class InvalidResponseError(LealtaClientError):
    """A success status whose body is not what the API documents (not JSON, or not the
    expected shape): a proxy in the way, or a server of another version."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class APIStatusError(LealtaClientError):
    """The API answered with an error status (after any retries)."""

    def __init__(
        self,
        *,
        status_code: int,
        code: str,
        message: str,
        details: Any,
        response: httpx.Response,
        attempts: int,
        idempotency_key: str | None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.response = response
        self.attempts = attempts
        self.idempotency_key = idempotency_key

    @property
    def request_id(self) -> str | None:
        return _header(self.response, "x-request-id")

    @property
    def retry_after(self) -> str | None:
        return _header(self.response, "retry-after")


def _header(response: httpx.Response, name: str) -> str | None:
    value = response.headers.get(name)
    return None if value is None else str(value)


class BadRequestError(APIStatusError):
    """400: malformed JSON, missing idempotency key."""


class AuthenticationError(APIStatusError):
    """401: missing or invalid API key."""


class PermissionDeniedError(APIStatusError):
    """403: the API key lacks the scope (a ``read`` key writing)."""


class NotFoundError(APIStatusError):
    """404: unknown member, order, coupon, redemption or route."""


class MethodNotAllowedError(APIStatusError):
    """405: the path does not take this method."""


class ConflictError(APIStatusError):
    """409: the current state forbids the request (``insufficient_points``,
    ``idempotency_key_reused``, ``member_exists`` …)."""


class PayloadTooLargeError(APIStatusError):
    """413: body or batch too large."""


class UnprocessableEntityError(APIStatusError):
    """422: values not acceptable (``validation_error``, ``invalid_external_id`` …)."""


class RateLimitError(APIStatusError):
    """429: too many requests."""


class InternalServerError(APIStatusError):
    """5xx."""


class ServiceUnavailableError(InternalServerError):
    """503: the database is busy or unreachable (``database_unavailable``)."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_body(response: httpx.Response) -> tuple[str, str, Any]:
    """``(code, message, details)`` of an error answer; a body that is not the API's error
    shape (a proxy's HTML page) gives ``http_<status>`` and the start of its text."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"], str(error.get("message", "")), error.get("details")
    return f"http_{response.status_code}", response.text[:500], None


def status_error(
    response: httpx.Response, *, attempts: int, idempotency_key: str | None
) -> APIStatusError:
    code, message, details = error_body(response)
    status = response.status_code
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    return cls(
        status_code=status,
        code=code,
        message=message,
        details=details,
        response=response,
        attempts=attempts,
        idempotency_key=idempotency_key,
    )
