"""Rendering helpers shared by the console's pages: the signed-in user in every template and
one-shot confirmations ("flash" messages) that survive the redirect after a form is sent.

A flash message is stored in the session as its English source text plus named values and
translated when it is shown, so it appears in the language of the page that displays it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.requests import Request

from lealta.staff.service import Staff
from lealta.web import i18n
from lealta.web.templating import render

FLASH = "admin_flash"


def show(
    request: Request,
    staff: Staff,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a console page with the user, the pending confirmation (if any) and context."""
    language = i18n.negotiate(request)
    ctx: dict[str, Any] = {"staff": staff}
    pending = request.session.pop(FLASH, None)
    if isinstance(pending, dict) and isinstance(pending.get("text"), str):
        _ = i18n.gettext_for(language)
        values = pending.get("values") if isinstance(pending.get("values"), dict) else {}
        ctx["flash"] = {
            "kind": "error" if pending.get("kind") == "error" else "ok",
            "text": _(pending["text"], **(values or {})),
        }
    ctx.update(context or {})
    response = render(request, template, ctx, language=language, status_code=status_code)
    # Console pages show personal data and one-time secrets: never keep them in a cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def done(request: Request, url: str, text: str, **values: Any) -> RedirectResponse:
    """Redirect after a successful form with ``text`` (English source) shown on arrival."""
    request.session[FLASH] = {"kind": "ok", "text": text, "values": values}
    return RedirectResponse(url, status_code=303)


def member_url(external_id: str) -> str:
    return f"/admin/members/{quote(external_id, safe='')}"
