"""Templates rendered in a sandbox, with numbers, money and dates in the member's locale.

Templates are written by the programme's team, so they run in Jinja2's
:class:`~jinja2.sandbox.SandboxedEnvironment` (no attribute tricks reach Python internals) with
``StrictUndefined`` switched off for the text (an unknown placeholder renders empty) but
syntax checked when a template is saved. Filters format with Babel in the member's language
and timezone: ``{{ balance|number }}``, ``{{ amount_needed|money }}``,
``{{ coupon.expires_at|date }}``, ``{{ at|datetime }}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

from lealta.kit.errors import InvalidInput
from lealta.notify.policy import member_zone

MAX_OUTPUT = 100_000


class InvalidTemplate(InvalidInput):
    code = "invalid_template"


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def _environment(autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(autoescape=autoescape, trim_blocks=True, lstrip_blocks=True)


def check(source: str, *, field: str) -> None:
    """Refuse a template that does not compile, e.g. an unknown filter (``422
    invalid_template`` naming the field)."""
    try:
        _text_env(filters("en", "UTC", "EUR")).from_string(source)
    except TemplateSyntaxError as exc:
        raise InvalidTemplate(
            f"{field}: line {exc.lineno}: {exc.message}", details={"field": field}
        ) from None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _moment(value: Any) -> datetime | date | None:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            try:
                return date.fromisoformat(value)
            except ValueError:
                return None
    return None


def filters(language: str, timezone: str, currency: str) -> dict[str, Any]:
    """The formatting filters for one member."""
    zone = member_zone(timezone)

    def number(value: Any) -> str:
        amount = _decimal(value)
        return str(value) if amount is None else format_decimal(amount, locale=language)

    def money(value: Any, code: str | None = None) -> str:
        amount = _decimal(value)
        if amount is None:
            return str(value)
        return format_currency(amount, code or currency, locale=language)

    def percent(value: Any) -> str:
        amount = _decimal(value)
        return str(value) if amount is None else format_percent(amount / 100, locale=language)

    def day(value: Any) -> str:
        moment = _moment(value)
        if moment is None:
            return str(value or "")
        if isinstance(moment, datetime):
            moment = moment.astimezone(zone).date() if moment.tzinfo else moment.date()
        return format_date(moment, "long", locale=language)

    def moment_text(value: Any) -> str:
        moment = _moment(value)
        if not isinstance(moment, datetime):
            return day(value)
        return format_datetime(moment, "medium", tzinfo=zone, locale=language)

    return {
        "number": number,
        "money": money,
        "percent": percent,
        "date": day,
        "datetime": moment_text,
    }


def render(
    *,
    subject: str,
    text: str,
    html: str | None,
    context: dict[str, Any],
    language: str,
    timezone: str,
    currency: str,
) -> Rendered:
    """Render one template's three parts for one member."""
    found = filters(language, timezone, currency)
    text_env, html_env = _text_env(found), _html_env(found)

    def one(source: str, env: SandboxedEnvironment, field: str) -> str:
        try:
            out = env.from_string(source).render(context)
        except TemplateSyntaxError as exc:
            raise InvalidTemplate(f"{field}: line {exc.lineno}: {exc.message}") from None
        except SecurityError as exc:
            raise InvalidTemplate(f"{field}: {exc}") from None
        except Exception as exc:  # a template error (a bad filter argument, a division)
            raise InvalidTemplate(f"{field}: {type(exc).__name__}: {exc}") from None
        return out[:MAX_OUTPUT]

    body = one(html, html_env, "body_html") if html else None
    pixel = context.get(OPEN_PIXEL)
    if body is not None and isinstance(pixel, str):
        body = _with_pixel(body, pixel)
    return Rendered(
        subject=" ".join(one(subject, text_env, "subject").split()),
        text=one(text, text_env, "body_text"),
        html=body,
    )


OPEN_PIXEL = "open_pixel_url"
"""A context key: the address of a 1x1 image the HTML part ends with (a campaign e-mail's
open tracking), whatever the template."""


def _with_pixel(html: str, url: str) -> str:
    image = (
        f'<img src="{escape(url)}" width="1" height="1" alt=""'
        ' style="display:block;border:0;width:1px;height:1px">'
    )
    at = html.lower().rfind("</body>")
    return html + image if at < 0 else html[:at] + image + html[at:]


def _text_env(found: dict[str, Any]) -> SandboxedEnvironment:
    env = _environment(False)
    env.filters.update(found)
    return env


def _html_env(found: dict[str, Any]) -> SandboxedEnvironment:
    env = _environment(True)
    env.filters.update(found)
    return env
