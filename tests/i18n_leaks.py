"""Find English catalogue strings that leak into a page rendered in Spanish.

``english_leaks(html)`` takes a page (or plain text) rendered in Spanish and returns the
English source strings (``msgid``) of the Spanish catalogues that appear in its *visible*
text although their Spanish (``msgstr``) is different. ``spanish_leaks(html)`` is the mirror
check for a page rendered in English (the same rules, with the sides swapped). Used by the
page tests (``tests/test_i18n_pages.py``) and the browser walk-through.

Which ``msgid`` count:

- only those whose Spanish differs from the English (``"Email"`` → ``"Email"`` is fine);
- at least two words, or a single word of four letters or more (``"Members"``, ``"earn"``);
  shorter single words (``"To"``, ``"By"``) are too ambiguous to judge;
- not when the English also occurs inside some Spanish translation (then seeing it on a
  Spanish page proves nothing);
- placeholders (``%(name)s``) match any short text, so ``"Reward: %(name)s"`` is found in
  ``"Reward: Café gratis"``.

Visible text is the text of the document without attributes, ``<script>``, ``<style>``,
``<template>``, ``<textarea>``, ``<pre>`` and ``<code>`` (code and documents shown as code,
such as the programme YAML, are not prose). Matching is case-sensitive and on word
boundaries (letters, digits, ``_``, ``-``, ``@``, ``.``/``/`` inside a token do not
count as boundaries), so ``earn`` is not found in ``earn-per-euro`` or ``learn``.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from html.parser import HTMLParser
from importlib.resources import files

from babel.messages.pofile import read_po

__all__ = ["english_leaks", "leak_patterns", "spanish_leaks", "visible_text"]

# Elements whose content is not prose shown to people.
_SKIPPED = frozenset({"script", "style", "template", "textarea", "pre", "code", "noscript"})
# Void elements never get an end tag; they must not open a skipped region.
_PLACEHOLDER = re.compile(r"%\([a-zA-Z_][a-zA-Z0-9_]*\)[sdif]|%%")
_BOUNDARY_BEFORE = r"(?<![\w@/.-])"
_BOUNDARY_AFTER = r"(?![\w@/=-])(?!\.\w)"


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skip_depth += 1
        # Block-ish boundaries: keep words of neighbouring elements apart.
        self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED and self._skip_depth:
            self._skip_depth -= 1
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def visible_text(html_or_text: str) -> str:
    """The visible text of an HTML page (or the text itself), whitespace collapsed."""
    if "<" in html_or_text and ">" in html_or_text:
        collector = _TextCollector()
        collector.feed(html_or_text)
        collector.close()
        text = "".join(collector.parts)
    else:
        text = html_or_text
    return " ".join(text.split())


def _catalogue() -> dict[str, str]:
    folder = files("lealta.web") / "locale" / "es" / "LC_MESSAGES"
    pairs: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".po"):
            continue
        for message in read_po(io.BytesIO(entry.read_bytes()), locale="es"):
            if message.id and message.string and isinstance(message.id, str):
                pairs[message.id] = str(message.string)
    return pairs


def _counts(msgid: str) -> bool:
    literal = " ".join(_PLACEHOLDER.sub(" ", msgid).split())
    words = re.findall(r"[A-Za-z]+(?:'[a-z]+)?", literal)
    if not words:
        return False
    if len(words) >= 2:
        return True
    return len(words[0]) >= 4 and literal.strip(" .:,;!?()") == words[0]


def _pattern(msgid: str) -> re.Pattern[str]:
    pieces: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(msgid):
        pieces.append(_literal(msgid[position : match.start()]))
        pieces.append("%" if match.group() == "%%" else r".{1,80}?")
        position = match.end()
    pieces.append(_literal(msgid[position:]))
    body = "".join(pieces).strip()
    before = _BOUNDARY_BEFORE if re.match(r"\w", msgid.strip()) else ""
    after = _BOUNDARY_AFTER if re.search(r"\w$", msgid.strip()) else ""
    return re.compile(before + body + after)


def _literal(text: str) -> str:
    return r"\s+".join(re.escape(word) for word in text.split(" ")) if text else ""


@lru_cache(maxsize=2)
def leak_patterns(side: str = "en") -> tuple[tuple[str, re.Pattern[str]], ...]:
    """``(text, pattern)`` for every catalogue string of ``side`` (``en``: the msgid, ``es``:
    the msgstr) that must not show on a page in the other language."""
    pairs = _catalogue() if side == "en" else {es: en for en, es in _catalogue().items()}
    other = "\n".join(pairs.values())
    found: list[tuple[str, re.Pattern[str]]] = []
    for source, translated in sorted(pairs.items()):
        if " ".join(source.split()).casefold() == " ".join(translated.split()).casefold():
            continue
        if not _counts(source):
            continue
        pattern = _pattern(" ".join(source.split()))
        if pattern.search(other):
            continue  # it also reads as part of some text of the other language
        found.append((source, pattern))
    return tuple(found)


def english_leaks(html_or_text: str) -> list[str]:
    """English ``msgid`` of the catalogues found in the visible text of a Spanish page."""
    text = visible_text(html_or_text)
    return sorted({msgid for msgid, pattern in leak_patterns("en") if pattern.search(text)})


def spanish_leaks(html_or_text: str) -> list[str]:
    """The mirror check for an English page: Spanish ``msgstr`` found in its visible text."""
    text = visible_text(html_or_text)
    return sorted({msgstr for msgstr, pattern in leak_patterns("es") if pattern.search(text)})
