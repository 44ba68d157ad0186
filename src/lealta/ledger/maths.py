"""Pure ledger arithmetic: no database, no clock. Points are integers, money is minor units."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Literal

Rounding = Literal["down", "half_up", "up"]

_ROUNDING = {"down": ROUND_DOWN, "half_up": ROUND_HALF_UP, "up": ROUND_UP}


@dataclass(frozen=True, slots=True)
class OpenLot:
    """What allocation needs to know of a lot with points left."""

    id: int
    remaining: int
    earned_at: datetime
    expires_at: datetime | None = None


def round_points(value: Decimal, rounding: Rounding = "down") -> int:
    """Round a fractional point amount to an integer by the programme's policy."""
    return int(value.quantize(Decimal(1), rounding=_ROUNDING[rounding]))


def points_for_amount(
    amount_minor: int, exponent: int, rate: Decimal, rounding: Rounding = "down"
) -> int:
    """Points for a spend of ``amount_minor`` at ``rate`` points per currency unit."""
    return round_points(Decimal(amount_minor).scaleb(-exponent) * rate, rounding)


def fifo_order(lots: Sequence[OpenLot]) -> list[OpenLot]:
    """Soonest-expiring first, never-expiring last, then oldest, then by id."""
    return sorted(
        lots,
        key=lambda lot: (
            lot.expires_at is None,
            lot.expires_at or lot.earned_at,
            lot.earned_at,
            lot.id,
        ),
    )


def allocate(
    lots: Sequence[OpenLot], points: int, *, prefer: Sequence[int] = ()
) -> tuple[list[tuple[int, int]], int]:
    """Take ``points`` from ``lots``: the ``prefer`` lots first, then FIFO.

    Returns ``(allocations, shortfall)`` where allocations are ``(lot_id, points)`` pairs and
    ``shortfall`` is what the lots could not cover (the caller decides whether that is allowed).
    """
    if points < 0:
        raise ValueError("cannot allocate a negative amount")
    preferred = [lot for lot in lots if lot.id in set(prefer)]
    rest = [lot for lot in lots if lot.id not in set(prefer)]
    ordered = fifo_order(preferred) + fifo_order(rest)
    need = points
    out: list[tuple[int, int]] = []
    for lot in ordered:
        if need == 0:
            break
        take = min(lot.remaining, need)
        if take > 0:
            out.append((lot.id, take))
            need -= take
    return out, need


def reversal_points(
    *, earned: int, reversed_before: int, total_minor: int, refunded_after_minor: int
) -> int:
    """Points to reverse now so that cumulative reversals stay pro rata to cumulative refunds.

    Working on cumulative figures means a series of partial refunds that adds up to the whole
    order reverses exactly what the order earned: never a point more, never one less.
    """
    if total_minor <= 0 or refunded_after_minor >= total_minor:
        target = earned
    else:
        target = earned * refunded_after_minor // total_minor
    return max(0, target - reversed_before)
