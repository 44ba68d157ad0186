"""Sessions and CSRF for the pages.

Sessions are Starlette's signed cookie (itsdangerous). Every state-changing form carries the
session's CSRF token in a hidden ``csrf_token`` field, checked by :func:`require_csrf`.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request

from lealta.kit.errors import Forbidden

SESSION_CSRF = "csrf"


def csrf_token(request: Request) -> str:
    if "session" not in request.scope:
        return ""
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    """Raise ``403 csrf_failed`` unless ``submitted`` matches the session's token."""
    expected = request.session.get(SESSION_CSRF) if "session" in request.scope else None
    if not expected or not submitted or not hmac.compare_digest(str(expected), submitted):
        raise Forbidden(
            "The form expired or did not come from this site; reload the page and try again.",
            code="csrf_failed",
        )
