"""The building blocks of the programme document, shared by every section.

The sections that live beside their capability (workflows, referrals, gamification,
segments) import their types from here, so :mod:`lealta.programme.schema` can import them
without a cycle.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
EventType = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$", max_length=64)
]
Cel = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Percent = Annotated[Decimal, Field(ge=0, le=100)]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, allow_inf_nan=False)]
DEFAULT_TIMEZONE = "Europe/Madrid"


def check_timezone(value: str) -> str:
    """``value`` if it names an IANA time zone (``Europe/Madrid``, ``UTC``), else ValueError."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' is not an IANA time zone") from None
    return value


class Model(BaseModel):
    """Base of every programme model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Translations(Model):
    """Text shown to people, in each language the programme speaks (``es`` and ``en``)."""

    es: Text
    en: Text | None = None

    def get(self, language: str) -> str:
        return (self.en if language == "en" else None) or self.es


# A name shown to people: one plain string (any language), or ``{es: ..., en: ...}``.
Name = Annotated[
    Text | Translations,
    Field(description='Plain text, or per language: {es: "...", en: "..."} (es required).'),
]


def name_in(name: str | Translations, language: str) -> str:
    """A :data:`Name` in ``language`` (Spanish when there is no English, a plain string as is)."""
    return name if isinstance(name, str) else name.get(language)
