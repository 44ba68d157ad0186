"""Property tests for the pure ledger arithmetic (no database)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lealta.ledger.maths import (
    OpenLot,
    allocate,
    fifo_order,
    points_for_amount,
    reversal_points,
    round_points,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)
FAR = datetime.max.replace(tzinfo=UTC)


@st.composite
def lots(draw: st.DrawFn, max_size: int = 12) -> list[OpenLot]:
    n = draw(st.integers(0, max_size))
    out = []
    for lot_id in draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True)):
        earned = BASE + timedelta(days=draw(st.integers(0, 400)))
        lifetime = draw(st.none() | st.integers(1, 800))
        expires = None if lifetime is None else earned + timedelta(days=lifetime)
        out.append(OpenLot(lot_id, draw(st.integers(0, 1_000)), earned, expires))
    return out


def _expiry(lot: OpenLot) -> datetime:
    return lot.expires_at or FAR


@st.composite
def allocation_case(draw: st.DrawFn) -> tuple[list[OpenLot], int, list[int]]:
    open_lots = draw(lots())
    points = draw(st.integers(0, 6_000))
    ids = [lot.id for lot in open_lots]
    prefer = draw(st.lists(st.sampled_from(ids), unique=True)) if ids else []
    return open_lots, points, prefer


@given(allocation_case())
def test_allocations_plus_shortfall_equal_the_request(
    case: tuple[list[OpenLot], int, list[int]],
) -> None:
    open_lots, points, prefer = case
    allocations, shortfall = allocate(open_lots, points, prefer=prefer)
    assert sum(p for _, p in allocations) + shortfall == points
    assert shortfall == max(0, points - sum(lot.remaining for lot in open_lots))


@given(allocation_case())
def test_allocation_never_takes_more_than_a_lot_has(
    case: tuple[list[OpenLot], int, list[int]],
) -> None:
    open_lots, points, prefer = case
    allocations, _ = allocate(open_lots, points, prefer=prefer)
    remaining = {lot.id: lot.remaining for lot in open_lots}
    taken_ids = [lot_id for lot_id, _ in allocations]
    assert len(taken_ids) == len(set(taken_ids))
    for lot_id, taken in allocations:
        assert 0 < taken <= remaining[lot_id]


@given(allocation_case())
def test_allocation_drains_soonest_expiring_lots_first(
    case: tuple[list[OpenLot], int, list[int]],
) -> None:
    open_lots, points, prefer = case
    allocations, _ = allocate(open_lots, points, prefer=prefer)
    taken = dict(allocations)
    by_id = {lot.id: lot for lot in open_lots}
    for group in ([i for i in by_id if i in prefer], [i for i in by_id if i not in prefer]):
        for a in group:
            for b in group:
                # b got points while a, expiring strictly sooner, still has some left: not FIFO
                if taken.get(b) and _expiry(by_id[a]) < _expiry(by_id[b]):
                    assert taken.get(a, 0) == by_id[a].remaining


@given(allocation_case())
def test_preferred_lots_are_emptied_before_any_other(
    case: tuple[list[OpenLot], int, list[int]],
) -> None:
    open_lots, points, prefer = case
    allocations, _ = allocate(open_lots, points, prefer=prefer)
    taken = dict(allocations)
    if any(lot_id not in prefer for lot_id in taken):
        for lot in open_lots:
            if lot.id in prefer:
                assert taken.get(lot.id, 0) == lot.remaining


@given(lots())
def test_fifo_order_puts_never_expiring_lots_last(open_lots: list[OpenLot]) -> None:
    ordered = fifo_order(open_lots)
    assert sorted(lot.id for lot in ordered) == sorted(lot.id for lot in open_lots)
    expiries = [_expiry(lot) for lot in ordered]
    assert expiries == sorted(expiries)


def test_allocating_a_negative_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        allocate([OpenLot(1, 5, BASE)], -1)


# --- refunds ---------------------------------------------------------------------------------


@st.composite
def refund_series(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """(earned, total_minor, partial refunds in minor units summing to the total)."""
    total = draw(st.integers(1, 10**9))
    earned = draw(st.integers(0, 10**7))
    cuts = sorted(draw(st.lists(st.integers(1, total), max_size=8, unique=True)))
    bounds = [0, *[c for c in cuts if c < total], total]
    parts = [b - a for a, b in itertools.pairwise(bounds)]
    return earned, total, parts


@given(refund_series())
def test_partial_refunds_summing_to_the_total_reverse_exactly_earned(
    case: tuple[int, int, list[int]],
) -> None:
    earned, total, parts = case
    reversed_so_far = refunded = 0
    for part in parts:
        refunded += part
        step = reversal_points(
            earned=earned,
            reversed_before=reversed_so_far,
            total_minor=total,
            refunded_after_minor=refunded,
        )
        assert step >= 0
        reversed_so_far += step
        assert reversed_so_far <= earned
        # pro rata: never ahead of the refunded share, never a whole point behind it
        share = Fraction(earned * refunded, total)
        assert share - 1 < reversed_so_far <= share
    assert reversed_so_far == earned


@given(
    earned=st.integers(0, 10**7),
    total=st.integers(1, 10**9),
    data=st.data(),
)
def test_reversal_never_exceeds_what_is_left_to_reverse(
    earned: int, total: int, data: st.DataObject
) -> None:
    reversed_before = data.draw(st.integers(0, earned))
    refunded_after = data.draw(st.integers(0, total))
    step = reversal_points(
        earned=earned,
        reversed_before=reversed_before,
        total_minor=total,
        refunded_after_minor=refunded_after,
    )
    assert 0 <= step <= earned - reversed_before


@given(earned=st.integers(0, 10**7), total=st.integers(1, 10**9), data=st.data())
def test_reversal_target_is_monotone_in_the_refunded_amount(
    earned: int, total: int, data: st.DataObject
) -> None:
    a, b = sorted(data.draw(st.lists(st.integers(0, total), min_size=2, max_size=2)))
    at_a = reversal_points(
        earned=earned, reversed_before=0, total_minor=total, refunded_after_minor=a
    )
    at_b = reversal_points(
        earned=earned, reversed_before=0, total_minor=total, refunded_after_minor=b
    )
    assert at_a <= at_b


@given(earned=st.integers(0, 10**6))
def test_order_with_zero_total_reverses_everything_on_refund(earned: int) -> None:
    assert (
        reversal_points(earned=earned, reversed_before=0, total_minor=0, refunded_after_minor=0)
        == earned
    )


# --- earning ---------------------------------------------------------------------------------

rates = st.decimals(min_value=0, max_value=10_000, places=4, allow_nan=False, allow_infinity=False)


@given(amount=st.integers(0, 10**14), exponent=st.sampled_from([0, 2, 3]), rate=rates)
def test_rounding_down_never_exceeds_the_exact_value(
    amount: int, exponent: int, rate: Decimal
) -> None:
    exact = Fraction(amount, 10**exponent) * Fraction(rate)
    points = points_for_amount(amount, exponent, rate, "down")
    assert points <= exact < points + 1


@given(amount=st.integers(0, 10**14), exponent=st.sampled_from([0, 2, 3]), rate=rates)
def test_rounding_up_never_falls_short_of_the_exact_value(
    amount: int, exponent: int, rate: Decimal
) -> None:
    exact = Fraction(amount, 10**exponent) * Fraction(rate)
    points = points_for_amount(amount, exponent, rate, "up")
    assert points - 1 < exact <= points


@given(amount=st.integers(0, 10**14), exponent=st.sampled_from([0, 2, 3]), rate=rates)
def test_rounding_half_up_is_within_half_a_point(amount: int, exponent: int, rate: Decimal) -> None:
    exact = Fraction(amount, 10**exponent) * Fraction(rate)
    points = points_for_amount(amount, exponent, rate, "half_up")
    assert abs(points - exact) <= Fraction(1, 2)


@given(st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False))
def test_round_points_orders_the_policies(value: Decimal) -> None:
    down, half, up = (round_points(value, r) for r in ("down", "half_up", "up"))
    assert down <= half <= up
    assert up - down <= 1
