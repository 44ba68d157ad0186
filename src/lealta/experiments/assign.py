"""Deterministic assignment of a member to an experiment arm (pure).

A member's bucket is the first 8 bytes of SHA-256 over ``"<campaign>:<member id>"``, taken
modulo 10,000: the same member always lands in the same arm of the same campaign, on any
machine, in any order of processing, and two campaigns split the population independently.
Buckets below ``holdout_percent * 100`` are the holdout; the rest are split between the
variants in proportion to their weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lealta.experiments.schema import HOLDOUT, Experiment

BUCKETS = 10_000


def bucket(campaign_id: str, member_id: int) -> int:
    """The member's bucket in ``[0, 10000)`` for this campaign."""
    digest = hashlib.sha256(f"{campaign_id}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def arm_for_bucket(value: int, *, holdout_percent: int, weights: Sequence[tuple[str, int]]) -> str:
    """The arm a bucket falls in: the holdout first, then the variants by weight."""
    holdout = holdout_percent * BUCKETS // 100
    if value < holdout:
        return HOLDOUT
    total = sum(w for _, w in weights)
    span = BUCKETS - holdout
    position = (value - holdout) * total // span  # 0 <= position < total
    for arm, weight in weights:
        if position < weight:
            return arm
        position -= weight
    return weights[-1][0]


def assign(campaign_id: str, member_id: int, experiment: Experiment | None) -> str:
    """The arm of ``member_id``: ``holdout`` or a variant id (``control`` without experiment)."""
    if experiment is None:
        return "control"
    return arm_for_bucket(
        bucket(campaign_id, member_id),
        holdout_percent=experiment.holdout_percent,
        weights=[(v.id, v.weight) for v in experiment.variants],
    )
