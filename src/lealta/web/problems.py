"""Validation problems shown on console pages, in the reader's language.

Pydantic writes its messages in English. Each problem keeps Pydantic's error ``type`` and
``ctx`` (see :func:`lealta.programme.service.validate`), so the common ones are re-worded here
through the page's catalogue; a check of our own is looked up in the catalogue as it is (fixed
texts such as ``must be after starts_at`` are translated there; texts naming a value, such as
``unknown reward 'x'``, stay as written).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

# Pydantic's wording, per error type, with its context as named placeholders.
MESSAGES: dict[str, str] = {
    "missing": "Field required",
    "extra_forbidden": "Extra inputs are not permitted",
    "string_type": "Input should be a valid string",
    "int_type": "Input should be a valid integer",
    "int_parsing": "Input should be a valid integer",
    "int_from_float": "Input should be a whole number",
    "float_type": "Input should be a valid number",
    "float_parsing": "Input should be a valid number",
    "decimal_type": "Input should be a valid decimal",
    "decimal_parsing": "Input should be a valid decimal",
    "decimal_max_places": (
        "Decimal input should have no more than %(decimal_places)s decimal places"
    ),
    "bool_type": "Input should be a valid boolean",
    "bool_parsing": "Input should be a valid boolean",
    "dict_type": "Input should be a valid dictionary",
    "list_type": "Input should be a valid list",
    "model_type": "Input should be a valid dictionary",
    "model_attributes_type": "Input should be a valid dictionary",
    "greater_than": "Input should be greater than %(gt)s",
    "greater_than_equal": "Input should be greater than or equal to %(ge)s",
    "less_than": "Input should be less than %(lt)s",
    "less_than_equal": "Input should be less than or equal to %(le)s",
    "string_too_short": "String should have at least %(min_length)s characters",
    "string_too_long": "String should have at most %(max_length)s characters",
    "string_pattern_mismatch": "String should match pattern '%(pattern)s'",
    "too_short": "List should have at least %(min_length)s items",
    "too_long": "List should have at most %(max_length)s items",
    "literal_error": "Input should be %(expected)s",
    "datetime_type": "Input should be a valid date and time",
    "datetime_parsing": "Input should be a valid date and time",
    "datetime_from_date_parsing": "Input should be a valid date and time",
    "date_parsing": "Input should be a valid date",
    "date_from_datetime_parsing": "Input should be a valid date",
    "timezone_aware": "Input should have timezone info",
    "union_tag_invalid": (
        "Input tag '%(tag)s' does not match any of the expected tags: %(expected_tags)s"
    ),
    "union_tag_not_found": "Unable to extract tag using discriminator %(discriminator)s",
}


def message(problem: Mapping[str, Any], gettext: Callable[..., str]) -> str:
    """The problem's message in the catalogue's language when its type is a known one."""
    template = MESSAGES.get(str(problem.get("type", "")))
    if template is None:  # a check of our own: translated when the catalogue knows it
        text = str(problem.get("message") or problem.get("msg") or "")
        text = text.removeprefix("Value error, ")
        return gettext(text) if text else text
    ctx = problem.get("ctx") if isinstance(problem.get("ctx"), dict) else {}
    try:
        return gettext(template, **(ctx or {})) if "%(" in template else gettext(template)
    except (KeyError, ValueError, TypeError):  # a context Pydantic did not give
        return str(problem.get("message", ""))


def translated(
    problems: Iterable[Mapping[str, Any]], gettext: Callable[..., str]
) -> list[dict[str, Any]]:
    """Every problem with its ``message`` in the page's language."""
    return [{**p, "message": message(p, gettext)} for p in problems]


def summary(problems: list[dict[str, Any]], gettext: Callable[..., str]) -> str:
    """One line for the page's error banner: the first problem, and how many more."""
    first = problems[0]
    where = str(first.get("path") or "") or gettext("(document)")
    if len(problems) == 1:
        return gettext("%(where)s: %(problem)s", where=where, problem=message(first, gettext))
    return gettext(
        "%(where)s: %(problem)s (and %(more)s more)",
        where=where,
        problem=message(first, gettext),
        more=len(problems) - 1,
    )
