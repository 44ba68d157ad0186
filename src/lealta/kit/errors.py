"""One error family for the whole service.

Every failure a client can cause is a :class:`LealtaError` with a stable ``code``. The API maps
it once to ``{"error": {"code", "message", "details"}}`` and the CLI maps it once to an exit
code, so domains never build HTTP responses themselves.
"""

from __future__ import annotations

from typing import Any

from lealta.kit import ids


class LealtaError(Exception):
    """Base of every expected error. ``code`` is stable and machine-readable."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class NotFound(LealtaError):
    status_code = 404
    code = "not_found"


class Conflict(LealtaError):
    """The request is well-formed but the current state forbids it."""

    status_code = 409
    code = "conflict"


class InvalidInput(LealtaError):
    """The payload is well-formed JSON but its values are not acceptable."""

    status_code = 422
    code = "validation_error"


class Unauthorized(LealtaError):
    status_code = 401
    code = "unauthorized"


class Forbidden(LealtaError):
    status_code = 403
    code = "forbidden"


class PayloadTooLarge(LealtaError):
    status_code = 413
    code = "payload_too_large"


def validation_body(details: list[dict[str, Any]]) -> dict[str, Any]:
    """The 422 body for payload validation problems (``loc``, ``message``, ``type`` each): the
    first one names the field in the message; an external id outside its alphabet keeps its
    own code."""
    first = details[0] if details else {"loc": [], "message": "invalid", "type": ""}
    where = ".".join(str(p) for p in first["loc"]) or "body"
    code = ids.ERROR_CODE if first["type"] == ids.ERROR_CODE else "validation_error"
    return {"error": {"code": code, "message": f"{where}: {first['message']}", "details": details}}
