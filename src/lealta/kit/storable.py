"""Refuse JSON values no database column can hold the same way on SQLite and PostgreSQL.

Python's JSON parser accepts ``NaN``/``Infinity`` and ``\\u0000`` escapes; PostgreSQL rejects
NUL characters in text and non-finite numbers in JSONB, while SQLite stores both. Checking the
payload up front gives one answer (422) on every database instead of a storage error.
"""

from __future__ import annotations

import math
from typing import Any


def check_storable(value: Any, *, max_depth: int = 64) -> Any:
    """Return ``value`` unchanged, or raise ``ValueError`` if it holds a NUL or a NaN."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise ValueError("the JSON is nested too deeply")
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text must not contain NUL (\\u0000) characters")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("numbers must be finite (no NaN or Infinity)")
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, depth + 1))
                stack.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
    return value
