"""Redemptions and coupon uses raced by real concurrent connections (threads, one session each).

On PostgreSQL the workers race for the account row lock, the stock counter's conditional
update and the coupon's conditional update; on SQLite they queue on the database write lock.
Either way: never more units than stock, never more points than the balance, never more uses
than the coupon allows, and a ledger that verifies clean.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from lealta.coupons import service as coupons
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.idempotency import run_once
from lealta.members import service as members
from lealta.models import Account, Coupon, CouponUse, LedgerEntry, Redemption, RewardCounter
from lealta.programme import service as programmes
from lealta.programme.schema import CouponSpec
from lealta.rewards import service as rewards
from tests.conftest import T0
from tests.test_rewards import assert_ledger_clean, enrol, reward, use, with_rewards


def _race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` for i in range(n) in n threads released together; return results/errors."""
    barrier = threading.Barrier(n)

    def call(i: int) -> Any:
        barrier.wait()
        try:
            return fn(i)
        except LealtaError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(call, range(n)))


def _redeem(db: Database, clock: FixedClock, customer: str, reward_id: str) -> int:
    with db.unit_of_work() as session:
        programme = programmes.current(session)
        member = members.get(session, customer)
        redemption = rewards.redeem(
            session, programme, member, reward_id, now=clock.now(), actor="test"
        ).redemption
        return redemption.id


def _lowest_balance(db: Database) -> int:
    with db.unit_of_work(write=False) as session:
        lowest = session.scalar(select(func.min(LedgerEntry.balance_after)))
        smallest = session.scalar(select(func.min(Account.points_available)))
    assert lowest is not None and smallest is not None
    return min(lowest, smallest)


def test_thirty_members_racing_for_five_units_exactly_five_win(
    db: Database, clock: FixedClock
) -> None:
    use(db, with_rewards(reward("signed-ball", cost=100, stock=5)))
    for i in range(30):
        enrol(db, f"fan{i}", points=1000)

    results = _race(30, lambda i: _redeem(db, clock, f"fan{i}", "signed-ball"))
    won = [r for r in results if not isinstance(r, LealtaError)]
    lost = [r for r in results if isinstance(r, LealtaError)]
    assert len(won) == 5
    assert {e.code for e in lost} == {"out_of_stock"}
    with db.unit_of_work(write=False) as session:
        counter = session.get(RewardCounter, "signed-ball")
        assert counter is not None and counter.issued == 5
        assert session.scalar(select(func.count()).select_from(Redemption)) == 5
        spent = session.scalar(select(func.sum(Account.lifetime_spent)))
        assert spent == 500
    assert _lowest_balance(db) >= 0
    assert_ledger_clean(db)


def test_one_member_racing_thirty_redemptions_gets_only_what_the_points_cover(
    db: Database, clock: FixedClock
) -> None:
    use(db, with_rewards(reward("cap", cost=300)))
    member_id = enrol(db, "greedy", points=1000)  # covers 3 (900), not 4

    results = _race(30, lambda _: _redeem(db, clock, "greedy", "cap"))
    won = [r for r in results if not isinstance(r, LealtaError)]
    lost = [r for r in results if isinstance(r, LealtaError)]
    assert len(won) == 3
    assert {e.code for e in lost} == {"insufficient_points"}
    with db.unit_of_work(write=False) as session:
        account = session.get(Account, member_id)
        assert account is not None and account.points_available == 100
        assert session.scalar(select(func.count()).select_from(Redemption)) == 3
        # Unlimited stock keeps no counter row (no hot row); issued units come from redemptions.
        assert session.get(RewardCounter, "cap") is None
        assert rewards.issued_counts(session) == {"cap": 3}
    assert _lowest_balance(db) >= 0
    assert_ledger_clean(db)


def test_one_member_racing_a_limited_reward_respects_the_per_member_limit(
    db: Database, clock: FixedClock
) -> None:
    use(db, with_rewards(reward("tee", cost=10, per_member_limit=2)))
    enrol(db, "collector", points=10_000)
    results = _race(20, lambda _: _redeem(db, clock, "collector", "tee"))
    assert sum(not isinstance(r, LealtaError) for r in results) == 2
    assert {r.code for r in results if isinstance(r, LealtaError)} == {"limit_reached"}
    assert_ledger_clean(db)


def test_parallel_redemptions_with_one_idempotency_key_redeem_once(
    db: Database, clock: FixedClock
) -> None:
    use(db)
    member_id = enrol(db, "ana", points=2000)

    def redeem(_: int) -> Any:
        with db.unit_of_work() as session:
            return run_once(
                session,
                scope="redeem:ana",
                key="click-1",
                payload={"reward_id": "coupon-5"},
                now=clock.now(),
                effect=lambda: (
                    201,
                    {
                        "id": rewards.redeem(
                            session,
                            programmes.current(session),
                            members.get(session, "ana"),
                            "coupon-5",
                            now=clock.now(),
                            actor="test",
                        ).redemption.id
                    },
                ),
            )

    results = _race(15, redeem)
    assert all(not isinstance(r, LealtaError) for r in results), results
    assert sum(not r.replayed for r in results) == 1
    assert len({r.body["id"] for r in results}) == 1
    with db.unit_of_work(write=False) as session:
        account = session.get(Account, member_id)
        assert account is not None and account.points_available == 1500
        assert session.scalar(select(func.count()).select_from(Coupon)) == 1
    assert_ledger_clean(db)


def test_twenty_tills_racing_one_single_use_coupon_exactly_one_wins(
    db: Database, clock: FixedClock
) -> None:
    use(db)
    with db.unit_of_work() as session:
        code = coupons.issue(
            session,
            CouponSpec(percent_off=Decimal(20)),
            reward_id="manual",
            member_id=None,
            source="admin",
            currency="EUR",
            valid_from=T0,
            now=T0,
        ).code
    cart = coupons.Cart(total_minor=100_00, currency="EUR")

    def till(i: int) -> Any:
        with db.unit_of_work() as session:
            _, use_row, _ = coupons.redeem(
                session, code, order_id=f"O{i}", cart=cart, customer_id=None, now=clock.now()
            )
            return use_row.order_ref

    results = _race(20, till)
    won = [r for r in results if not isinstance(r, LealtaError)]
    lost = [r for r in results if isinstance(r, LealtaError)]
    assert len(won) == 1
    assert {e.code for e in lost} == {"coupon_used_up"}
    with db.unit_of_work(write=False) as session:
        coupon = session.scalars(select(Coupon)).one()
        assert (coupon.uses, coupon.status) == (1, "redeemed")
        assert session.scalar(select(func.count()).select_from(CouponUse)) == 1


def test_rollback_racing_a_checkout_use_never_both_win(db: Database, clock: FixedClock) -> None:
    """A redemption's rollback voids its coupon while a till tries to use it: either the use
    wins (rollback refused, points stay spent) or the rollback wins (use refused)."""
    use(db)
    member_id = enrol(db, "ana", points=500)
    redemption_id = _redeem(db, clock, "ana", "coupon-5")
    with db.unit_of_work(write=False) as session:
        redemption = session.get(Redemption, redemption_id)
        assert redemption is not None and redemption.coupon_id is not None
        coupon = session.get(Coupon, redemption.coupon_id)
        assert coupon is not None
        code = coupon.code
    cart = coupons.Cart(total_minor=50_00, currency="EUR")

    def act(i: int) -> Any:
        with db.unit_of_work() as session:
            if i % 2:
                return rewards.rollback(session, redemption_id, now=clock.now(), actor="t").status
            return coupons.redeem(
                session, code, order_id=f"O{i}", cart=cart, customer_id="ana", now=clock.now()
            )[1].order_ref

    results = _race(10, act)
    with db.unit_of_work(write=False) as session:
        coupon = session.scalars(select(Coupon)).one()
        redemption = session.get(Redemption, redemption_id)
        account = session.get(Account, member_id)
        uses = session.scalar(select(func.count()).select_from(CouponUse))
    assert redemption is not None and account is not None
    if redemption.status == "rolled_back":
        assert (coupon.status, uses, account.points_available) == ("void", 0, 500)
    else:
        assert (coupon.status, uses, account.points_available) == ("redeemed", 1, 0)
    errors = {r.code for r in results if isinstance(r, LealtaError)}
    assert errors <= {"already_rolled_back", "coupon_already_used", "coupon_void", "coupon_used_up"}
    assert_ledger_clean(db)


def test_stock_set_after_unlimited_redemptions_counts_what_was_already_issued(
    db: Database, clock: FixedClock
) -> None:
    use(db, with_rewards(reward("mug", cost=100)))
    enrol(db, "early", points=1000)
    _redeem(db, clock, "early", "mug")
    _redeem(db, clock, "early", "mug")
    with db.unit_of_work() as session:
        programmes.apply(session, with_rewards(reward("mug", cost=100, stock=3)), actor="t", now=T0)
    _redeem(db, clock, "early", "mug")  # the third unit
    try:
        _redeem(db, clock, "early", "mug")
    except LealtaError as exc:
        assert exc.code == "out_of_stock"
    else:
        raise AssertionError("a fourth mug was issued from a stock of 3")
    with db.unit_of_work(write=False) as session:
        counter = session.get(RewardCounter, "mug")
        assert counter is not None and counter.issued == 3
