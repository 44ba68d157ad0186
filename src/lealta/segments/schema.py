"""The ``segments`` section of the programme document."""

from __future__ import annotations

from typing import Any

from lealta.programme.types import Model, Slug


class Segment(Model):
    """One segment shipped in the programme (conditions compiled to SQL)."""

    id: Slug


def check(programme: Any) -> None:
    """Cross-references of the section, as ValueError."""
