from __future__ import annotations

from lealta.kit.errors import Conflict


class InsufficientPoints(Conflict):
    code = "insufficient_points"
