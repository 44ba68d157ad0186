"""Spanish and English for the pages, from gettext catalogues read with Babel.

Source strings are English. Each area keeps its own catalogue under
``web/locale/<lang>/LC_MESSAGES/<area>.po`` (``common``, ``admin``, ``cockpit``); all of a
language's catalogues are merged at start-up. ``.po`` files are compiled in memory, so no
binary ``.mo`` files live in the repository.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from starlette.requests import Request

LANGUAGES = ("es", "en")
DEFAULT_LANGUAGE = "es"
COOKIE = "lealta_lang"


@lru_cache
def translations(language: str) -> NullTranslations:
    """All catalogues of ``language`` merged; English falls back to the source strings."""
    merged: NullTranslations = NullTranslations()
    folder = files("lealta.web") / "locale" / language / "LC_MESSAGES"
    if not folder.is_dir():
        return merged
    first = True
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".po"):
            continue
        catalog = read_po(io.BytesIO(entry.read_bytes()), locale=language)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        compiled = Translations(buffer)
        if first:
            merged = compiled
            first = False
        else:
            assert isinstance(merged, Translations)
            merged.merge(compiled)
    return merged


def negotiate(request: Request, preferred: str | None = None) -> str:
    """``?lang=`` beats the cookie, which beats the member's language, then Accept-Language."""
    for candidate in (
        request.query_params.get("lang"),
        request.cookies.get(COOKIE),
        preferred,
    ):
        if candidate in LANGUAGES:
            return candidate
    header = request.headers.get("accept-language", "")
    for part in header.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


def gettext_for(language: str) -> Callable[..., str]:
    """``_("Hello %(name)s", name=x)``: translate, then fill named placeholders."""
    t = translations(language)

    def _(message: str, **values: Any) -> str:
        text = t.gettext(message)
        return text % values if values else text

    return _
