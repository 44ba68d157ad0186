"""The ``workflows`` section of the programme document."""

from __future__ import annotations

from typing import Any

from lealta.programme.types import Model, Slug


class Workflow(Model):
    """One workflow: a trigger, optional conditions and steps."""

    id: Slug


def check(programme: Any) -> None:
    """Cross-references of the section (rewards, templates, segments), as ValueError."""
