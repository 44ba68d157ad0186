"""The styled error page of the console (``/admin``) and the cockpit (``/me``).

Errors on those pages (a 403 for the role, an unknown address, a method the address does not
take) render ``error.html`` inside the area's own layout: the visitor keeps the navigation
and the sign-out button when signed in, and reads the page in their language.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from lealta.kit.db import Database
from lealta.kit.logging import get_logger
from lealta.models import Member
from lealta.staff.service import NotSignedIn, Staff
from lealta.web import i18n
from lealta.web.admin import auth
from lealta.web.templating import render

log = get_logger("lealta.web.errors")

# Messages shown in the reader's language for errors whose code says enough.
MESSAGES: dict[str, str] = {
    "not_found": "This page does not exist. Check the address or use the menu.",
    "method_not_allowed": "This address does not accept this kind of request.",
    "forbidden_for_role": "Your role does not allow this.",
}


def error_page(
    request: Request, *, status_code: int, code: str, message: str, headers: Any = None
) -> HTMLResponse:
    """``error.html`` in the layout of the area the request is in, with its navigation."""
    path = request.url.path
    context: dict[str, Any] = {"code": code, "layout": "base.html", "back_url": "/"}
    language: str | None = None
    if path == "/admin" or path.startswith("/admin/"):
        context.update(layout="admin/base_admin.html", back_url="/admin", staff=_staff(request))
    elif path == "/me" or path.startswith("/me/"):
        member = _member(request)
        context.update(layout="cockpit/base_cockpit.html", back_url="/me", member=member)
        language = i18n.negotiate(request, member.language if member is not None else None)
    language = language or i18n.negotiate(request)
    source = MESSAGES.get(code)
    context["message"] = i18n.gettext_for(language)(source) if source else message
    response = render(request, "error.html", context, language=language, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def db_unavailable_page(request: Request, headers: dict[str, str]) -> HTMLResponse:
    """The styled 503 page, rendered without touching the database (no signed-in user)."""
    language = i18n.negotiate(request)
    _ = i18n.gettext_for(language)
    message = _("The database is busy or cannot be reached. Try again in a moment.")
    context = {"code": "database_unavailable", "message": message, "back_url": request.url.path}
    response = render(request, "error.html", context, language=language, status_code=503)
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(headers)
    return response


def _database(request: Request) -> Database | None:
    if "session" not in request.scope:
        return None
    db: Database | None = getattr(request.app.state, "db", None)
    return db


def _staff(request: Request) -> Staff | None:
    db = _database(request)
    if db is None or not isinstance(request.session.get(auth.SESSION_KEY), int):
        return None
    try:
        with db.unit_of_work(write=False) as session:
            return auth.current(session, request)
    except NotSignedIn:
        return None
    except Exception:  # the error page must render even when the database does not answer
        log.warning("error_page_without_user")
        return None


def _member(request: Request) -> Member | None:
    from lealta.web.cockpit.routes import GENERATION_KEY, SESSION_KEY

    db = _database(request)
    member_id = request.session.get(SESSION_KEY) if db is not None else None
    if db is None or not isinstance(member_id, int):
        return None
    try:
        with db.unit_of_work(write=False) as session:
            member = session.get(Member, member_id)
    except Exception:  # the error page must render even when the database does not answer
        log.warning("error_page_without_member")
        return None
    if member is None or request.session.get(GENERATION_KEY) != member.session_generation:
        return None  # an ended session (signed out elsewhere)
    return member
