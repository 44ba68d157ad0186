"""The ``badges``, ``challenges``, ``streaks`` and ``leaderboards`` sections."""

from __future__ import annotations

from typing import Any

from lealta.programme.types import Model, Slug


class Badge(Model):
    id: Slug


class Challenge(Model):
    id: Slug


class Streak(Model):
    id: Slug


class Leaderboard(Model):
    id: Slug


def check(programme: Any) -> None:
    """Cross-references of the sections, as ValueError."""
