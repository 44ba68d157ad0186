"""Security headers on every response.

The pages load scripts only from ``/static`` (no inline ``<script>``, no ``on*=`` handlers, no
``javascript:`` links), so the Content-Security-Policy allows ``script-src 'self'`` and nothing
else. Inline ``style=`` attributes are allowed (``style-src 'self' 'unsafe-inline'``): they
cannot run code, and the templates use them for one-off layout. ``/docs`` boots Swagger UI with
one inline script; its page gets its own policy naming that script's hash
(:func:`with_hashed_scripts`). A response that already carries a policy keeps it.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BASE_POLICY = (
    "default-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
CONTENT_SECURITY_POLICY = "; ".join(("script-src 'self'", *_BASE_POLICY))

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def with_hashed_scripts(response: Response) -> Response:
    """Give an HTML page with inline scripts a policy that allows exactly those scripts."""
    html = bytes(response.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html)
    )
    response.headers["Content-Security-Policy"] = "; ".join(
        (f"script-src 'self' {hashes}".strip(), *_BASE_POLICY)
    )
    return response


class SecurityHeadersMiddleware:
    """Add the policy and the anti-framing, anti-sniffing and referrer headers to responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                headers.extend(h for h in HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)
