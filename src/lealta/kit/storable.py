"""Refuse JSON values no database column can hold the same way on SQLite and PostgreSQL.

Python's JSON parser accepts ``NaN``/``Infinity`` and ``\\u0000`` escapes; PostgreSQL rejects
NUL characters in text and non-finite numbers in JSONB, while SQLite stores both. Checking the
payload up front gives one answer (422) on every database instead of a storage error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import chain
from typing import Any


def check_storable(value: Any, *, max_depth: int = 64) -> Any:
    """Return ``value`` unchanged, or raise ``ValueError`` if it holds a NUL or a NaN.

    The problem named is the first one met walking the value depth first, a container's
    children last to first (a dict's as value then key): nesting deeper than ``max_depth``, a
    NUL in a string (key or value) or a float that is not finite. Every value is checked first
    in whatever order is cheapest; only a value with a problem is walked again in that order
    (it may hold several)."""
    try:
        _walk((value,), 0, max_depth, ordered=False)
    except ValueError:
        _walk((value,), 0, max_depth, ordered=True)
    return value


def _walk(items: Iterable[Any], depth: int, max_depth: int, *, ordered: bool) -> None:
    """Check ``items``, all at ``depth``, and their children (the depth bound keeps the
    recursion shallow, cycles included)."""
    if depth > max_depth:
        for _ in items:
            raise ValueError("the JSON is nested too deeply")
        return
    for item in items:
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text must not contain NUL (\\u0000) characters")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("numbers must be finite (no NaN or Infinity)")
        elif isinstance(item, dict):
            if not item:
                continue
            if ordered:
                pairs = reversed([*chain.from_iterable(item.items())])
                _walk(pairs, depth + 1, max_depth, ordered=True)
            else:
                _walk(item, depth + 1, max_depth, ordered=False)  # the keys
                _walk(item.values(), depth + 1, max_depth, ordered=False)
        elif isinstance(item, list | tuple) and item:
            _walk(reversed(item) if ordered else item, depth + 1, max_depth, ordered=ordered)
