"""The ES/EN switch of the console and the cockpit.

Every page links to ``GET /lang/<code>?next=<path and query>``, which stores the choice in
the ``lealta_lang`` cookie and redirects back. A page rendered as the answer to a POST (a
form with an error) links back to its GET page instead of the POST-only URL, so the switch
never lands on a 405.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response
from starlette.requests import Request
from starlette.routing import Match

from lealta.web import i18n

router = APIRouter(include_in_schema=False)

AREAS = ("/admin", "/me")
ONE_YEAR = 365 * 24 * 3600


def safe_local(target: str | None, fallback: str = "/admin") -> str:
    """``target`` if it is a path inside the console or the cockpit, else ``fallback``."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return fallback
    if parts.path.startswith("//"):
        return fallback
    if not any(parts.path == area or parts.path.startswith(area + "/") for area in AREAS):
        return fallback
    return target


def home_of(path: str) -> str:
    return "/me" if path == "/me" or path.startswith("/me/") else "/admin"


def without_lang(path: str, query: str) -> str:
    """``path?query`` with any ``lang`` parameter dropped, the rest kept in order."""
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "lang"]
    return path + ("?" + urlencode(kept) if kept else "")


def current_page(request: Request, canonical: str | None = None) -> str:
    """Where the switch should come back to: this GET page with its query, or for a page
    answering a POST its canonical GET page (given by the route, else the Referer when it is
    one of ours, else the same path when it is also a page, else the area's home)."""
    path = request.url.path
    home = home_of(path)
    if request.method in ("GET", "HEAD"):
        return safe_local(without_lang(path, request.url.query), home)
    if canonical:
        return safe_local(canonical, home)
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if not parts.netloc or parts.netloc == request.url.netloc:
            back = safe_local(without_lang(parts.path, parts.query), "")
            if back:
                return back
    if _answers_get(request):
        return safe_local(path, home)
    return home


def _answers_get(request: Request) -> bool:
    """Whether the POSTed path is also a page (``/admin/login``), not only a form action."""
    app = request.scope.get("app")
    if app is None:
        return False
    scope = {**request.scope, "method": "GET"}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def switch_url(language: str, next_page: str) -> str:
    return f"/lang/{language}?" + urlencode({"next": next_page})


@router.get("/lang/{code}")
def switch(code: str, next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    """Remember the language in a cookie and go back to ``next`` (a console or cockpit page)."""
    target = safe_local(next, "/admin")
    parts = urlsplit(target)
    target = without_lang(parts.path, parts.query)
    response = RedirectResponse(target, status_code=303)
    if code in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, code, max_age=ONE_YEAR, samesite="lax")
    return response
