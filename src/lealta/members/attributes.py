"""Custom member attributes, typed by the programme's ``attributes`` declaration (pure).

A programme that declares no attributes accepts any scalar values; once it declares some,
only those names are accepted and each value must have its declared type (``null`` removes an
attribute). Dates are ISO ``YYYY-MM-DD`` strings.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from lealta.kit.errors import InvalidInput
from lealta.programme.schema import Programme


def check(programme: Programme, attributes: dict[str, Any] | None) -> None:
    """Raise ``422 invalid_attribute`` / ``unknown_attribute`` naming the offending key."""
    declared = programme.attributes
    if not attributes or not declared:
        return
    for name, value in attributes.items():
        kind = declared.get(name)
        if kind is None:
            raise InvalidInput(
                f"attributes.{name}: not declared by the programme"
                f" (declared: {', '.join(sorted(declared))}).",
                code="unknown_attribute",
                details={"path": f"attributes.{name}"},
            )
        if value is not None and not _fits(kind, value):
            raise InvalidInput(
                f"attributes.{name}: expected {kind}, got {type(value).__name__}.",
                code="invalid_attribute",
                details={"path": f"attributes.{name}", "expected": kind},
            )


def _fits(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "date":
        if not isinstance(value, str):
            return False
        try:
            date.fromisoformat(value)
        except ValueError:
            return False
        return True
    return isinstance(value, str)
