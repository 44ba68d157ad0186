"""The ``referrals`` section of the programme document."""

from __future__ import annotations

from typing import Any

from lealta.programme.types import Model


class Referrals(Model):
    """The referral programme: who earns what, when, and the fraud checks."""

    enabled: bool = False


def check(programme: Any) -> None:
    """Cross-references of the section (tiers, rewards), as ValueError."""
