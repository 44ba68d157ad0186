"""Jinja2 templates shared by the console and the cockpit.

Every page renders through :func:`render`, which puts the request's language, its ``_``
translation function, the CSRF token and formatting helpers into the context.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal
from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import HTMLResponse

from lealta.web import describe, i18n
from lealta.web import lang as switch
from lealta.web.security import csrf_token

templates = Jinja2Templates(directory=str(files("lealta.web") / "templates"))
templates.env.autoescape = True
# Stored records in the page's language: ``entry_text(_, entry, programme, lang)`` etc.
templates.env.globals.update(
    entry_text=describe.entry_text,
    tier_change_text=describe.tier_change_text,
    benefit_flag=describe.benefit_flag,
    consent_label=describe.consent_label,
)


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    language: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = language or i18n.negotiate(request)
    ctx: dict[str, Any] = {
        "lang": lang,
        "_": i18n.gettext_for(lang),
        "csrf_token": csrf_token(request),
        "fmt_points": lambda n: format_decimal(n, locale=lang),
        "fmt_money": lambda amount, currency="EUR": format_currency(
            Decimal(str(amount)), currency, locale=lang
        ),
        "fmt_dt": lambda dt, tz="UTC": _fmt_dt(dt, tz, lang),
        "fmt_date": lambda d: (
            format_datetime(d, "d MMM y", locale=lang)
            if isinstance(d, datetime)
            else (d.isoformat() if d else "")
        ),
    }
    ctx.update(context or {})
    # The ES/EN links: back to this page (its GET form when answering a POST) in the other
    # language; ``page_url`` in the context names the GET page of a form.
    here = switch.current_page(request, ctx.get("page_url"))
    ctx["lang_urls"] = {code: switch.switch_url(code, here) for code in i18n.LANGUAGES}
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax")
    return response


def _fmt_dt(value: datetime | None, tz: str, lang: str) -> str:
    if value is None:
        return ""
    try:
        zone: tzinfo = ZoneInfo(tz)
    except (KeyError, ValueError):
        zone = UTC
    return format_datetime(value, "d MMM y HH:mm", tzinfo=zone, locale=lang)
