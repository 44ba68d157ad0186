"""Coupon codes: random, unambiguous, and unique by construction plus a database check.

A pattern such as ``LEA-####-####-####`` keeps its literal characters; each ``#`` becomes one
character of :data:`ALPHABET`, which leaves out the look-alikes ``0 O 1 I L`` so a code read
aloud or typed from a receipt is not mistaken. Randomness comes from :mod:`secrets`; the
database's unique indexes on ``coupons.code`` and on its dash-less ``code_key`` (see
:func:`lealta.models.coupon.normalise`) settle the rare collision (see
``coupons.service.issue``, whose insert skips a clash and draws again).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
SLOT = "#"


def slots(pattern: str) -> int:
    """How many random characters ``pattern`` has."""
    return pattern.count(SLOT)


def space(pattern: str) -> int:
    """How many distinct codes ``pattern`` can produce."""
    return int(len(ALPHABET) ** slots(pattern))


def generate(pattern: str, *, randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """A fresh code for ``pattern``: one draw over the whole code space, written in base 31.

    One ``randbelow`` call per code (instead of one per character) keeps bulk generation fast
    while staying uniform over the space.
    """
    n = slots(pattern)
    if n == 0:
        raise ValueError("a code pattern needs at least one '#'")
    value = randbelow(len(ALPHABET) ** n)
    base = len(ALPHABET)
    chars: list[str] = []
    for _ in range(n):
        value, digit = divmod(value, base)
        chars.append(ALPHABET[digit])
    out: list[str] = []
    for ch in pattern:
        out.append(chars.pop() if ch == SLOT else ch)
    return "".join(out)


def collision_probability(count: int, pattern: str) -> float:
    """Birthday bound: the chance that ``count`` codes drawn for ``pattern`` repeat at least once.

    ``1 - exp(-n(n-1) / 2N)``, computed with ``expm1`` so tiny probabilities stay exact.
    """
    n = float(count)
    return -math.expm1(-n * (n - 1) / (2.0 * space(pattern)))
