"""Hammer the ledger with real concurrent connections (threads, one session each).

On PostgreSQL these race for row locks and unique indexes; on SQLite they queue on the
database write lock. Either way: no overspend, no double effect, ledger consistent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from lealta.events import service as events
from lealta.events.schemas import EventIn
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.idempotency import run_once
from lealta.ledger import operations
from lealta.ledger import service as ledger
from lealta.ledger.schemas import SpendIn
from lealta.models import Account, LedgerEntry, LotAllocation, Member
from lealta.programme import service as programmes
from lealta.programme.schema import DEFAULT_PROGRAMME
from lealta.rewards import service as rewards
from tests.conftest import T0
from tests.factories import order_paid, order_refunded
from tests.test_rules_engine import DEMO

WORKERS = 50


def _ctx(clock: FixedClock) -> events.IngestContext:
    return events.IngestContext(programme=DEFAULT_PROGRAMME, now=clock.now(), actor="test")


def _ingest(db: Database, clock: FixedClock, payload: dict[str, Any]) -> events.Outcome:
    with db.unit_of_work() as session:
        return events.ingest(session, EventIn.model_validate(payload), _ctx(clock), key=None)


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


def _account(db: Database, external_id: str) -> Account:
    with db.unit_of_work(write=False) as session:
        member = session.scalars(select(Member).where(Member.external_id == external_id)).one()
        account = session.get(Account, member.id)
        assert account is not None
        return account


def _assert_consistent(db: Database) -> None:
    with db.unit_of_work(write=False) as session:
        checked, problems = ledger.verify(session)
    assert checked > 0
    assert problems == []


def test_fifty_parallel_spends_against_ten_covered_exactly_ten_succeed(
    db: Database, clock: FixedClock
) -> None:
    _ingest(db, clock, order_paid("e-fund", "ana", "O-fund", "1000.00", T0 - timedelta(days=1)))
    assert _account(db, "ana").points_available == 1000

    def spend(i: int) -> Any:
        with db.unit_of_work() as session:
            return operations.spend(
                session,
                "ana",
                SpendIn(points=100, reason=f"spend {i}"),
                actor="test",
                now=clock.now(),
                programme=DEFAULT_PROGRAMME,
            )

    results = _race(WORKERS, spend)
    ok = [r for r in results if not isinstance(r, LealtaError)]
    refused = [r for r in results if isinstance(r, LealtaError)]
    assert len(ok) == 10
    assert len(refused) == WORKERS - 10
    assert {r.code for r in refused} == {"insufficient_points"}
    assert _account(db, "ana").points_available == 0
    assert sorted(r.balance["available"] for r in ok) == list(range(0, 1000, 100))
    with db.unit_of_work(write=False) as session:
        lowest = session.scalar(select(func.min(LedgerEntry.balance_after)))
    assert lowest is not None and lowest >= 0
    _assert_consistent(db)


def test_parallel_spends_with_one_idempotency_key_debit_once(
    db: Database, clock: FixedClock
) -> None:
    _ingest(db, clock, order_paid("e-fund", "bea", "O-fund", "500.00", T0 - timedelta(days=1)))

    def spend(_: int) -> Any:
        with db.unit_of_work() as session:
            return run_once(
                session,
                scope="spend:bea",
                key="checkout-77",
                payload={"points": 120},
                now=clock.now(),
                effect=lambda: (
                    201,
                    operations.spend(
                        session,
                        "bea",
                        SpendIn(points=120),
                        actor="t",
                        now=clock.now(),
                        programme=DEFAULT_PROGRAMME,
                    ).model_dump(mode="json"),
                ),
            )

    results = _race(20, spend)
    assert all(not isinstance(r, LealtaError) for r in results), results
    assert sum(not r.replayed for r in results) == 1
    assert len({r.body["entry"]["id"] for r in results}) == 1
    assert _account(db, "bea").points_available == 380
    _assert_consistent(db)


def test_one_event_delivered_by_many_connections_at_once_earns_once(
    db: Database, clock: FixedClock
) -> None:
    payload = order_paid("evt-dup", "carla", "O-dup", "250.00", T0 - timedelta(hours=1))
    results = _race(30, lambda _: _ingest(db, clock, payload))
    assert all(not isinstance(r, LealtaError) for r in results), results
    assert sum(not r.replayed for r in results) == 1
    assert _account(db, "carla").points_available == 250
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 1
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 1


def test_first_events_of_a_new_customer_racing_enrol_one_member(
    db: Database, clock: FixedClock
) -> None:
    def earn(i: int) -> Any:
        return _ingest(db, clock, order_paid(f"e{i}", "dani", f"O{i}", "10.00", T0))

    results = _race(25, earn)
    assert all(not isinstance(r, LealtaError) for r in results), results
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 1
    assert _account(db, "dani").points_available == 250
    _assert_consistent(db)


def test_same_order_under_different_event_ids_is_recorded_once(
    db: Database, clock: FixedClock
) -> None:
    results = _race(
        20, lambda i: _ingest(db, clock, order_paid(f"w{i}", "eva", "O-same", "80.00", T0))
    )
    accepted = [r for r in results if not isinstance(r, LealtaError)]
    assert len(accepted) == 1
    assert {r.code for r in results if isinstance(r, LealtaError)} == {"order_already_recorded"}
    assert _account(db, "eva").points_available == 80


@pytest.mark.parametrize("rounds", [3])
def test_mixed_earns_and_spends_keep_the_ledger_consistent(
    db: Database, clock: FixedClock, rounds: int
) -> None:
    customers = [f"m{i}" for i in range(5)]
    for c in customers:
        _ingest(db, clock, order_paid(f"seed-{c}", c, f"S-{c}", "100.00", T0 - timedelta(days=2)))

    def work(i: int) -> Any:
        c = customers[i % len(customers)]
        if i % 2:
            return _ingest(db, clock, order_paid(f"x{i}", c, f"X{i}", "7.00", T0))
        with db.unit_of_work() as session:
            return operations.spend(
                session,
                c,
                SpendIn(points=30),
                actor="t",
                now=clock.now(),
                programme=DEFAULT_PROGRAMME,
            )

    for r in range(rounds):
        _race(40, lambda i, r=r: work(i + 40 * r))
    _assert_consistent(db)
    for c in customers:
        assert _account(db, c).points_available >= 0


def test_a_credit_then_a_debit_in_one_unit_of_work_sees_the_new_lot(
    db: Database, clock: FixedClock
) -> None:
    from lealta.members import service as members
    from lealta.members.schemas import MemberCreate

    with db.unit_of_work() as session:
        member = members.create(session, MemberCreate(external_id="flo"), now=clock.now())
        account = ledger.lock_account(session, member.id)
        source = ledger.Source("test", None, "test")
        ledger.credit(
            session,
            account,
            entry_type="adjust",
            points=300,
            reason="grant",
            source=source,
            occurred_at=clock.now(),
            now=clock.now(),
        )
        entry = ledger.debit(
            session,
            account,
            entry_type="redeem",
            points=200,
            reason="spend",
            source=source,
            occurred_at=clock.now(),
            now=clock.now(),
        )
        assert entry.points == -200 and entry.shortfall == 0
    assert _account(db, "flo").points_available == 100
    _assert_consistent(db)


def test_racing_events_catch_up_a_members_due_lots_once(db: Database) -> None:
    """Events of one member that queue for its lock each catch it up first (pending points
    released, points expired). On PostgreSQL the statement that waited for the lock reads
    the account as the last holder left it but the member's other rows as of when it
    began: the lots the holder had just released or expired read as still due, and were
    released or expired again (a check constraint stopped some of those writes, with a 500;
    with points enough, the ledger was silently wrong). The racing member must end where the
    same events sent one after another leave a twin."""
    now = T0

    def ingest(at: Any, payload: dict[str, Any]) -> events.Outcome:
        with db.unit_of_work() as session:
            ctx = events.IngestContext(programme=DEMO, now=at, actor="test")
            return events.ingest(session, EventIn.model_validate(payload), ctx, key=None)

    with db.unit_of_work() as session:  # as shipped: 14 days pending, 12 months to expiry
        programmes.apply(session, DEMO, actor="test", now=now - timedelta(days=800))
    history = [(500, "100.00"), (300, "2000.00"), (20, "50.00")]  # expired; released; both
    for who in ("ana", "twin"):
        for n, (days, total) in enumerate(history):
            at = now - timedelta(days=days)
            ingest(at, order_paid(f"{who}-h{n}", who, f"{who}-H{n}", total, at))

    def event(who: str, i: int) -> dict[str, Any]:
        return order_paid(f"{who}-e{i}", who, f"{who}-E{i}", "10.00", now)

    results = _race(30, lambda i: ingest(now, event("ana", i)))
    assert all(isinstance(r, events.Outcome) for r in results), results
    for i in range(30):
        ingest(now, event("twin", i))
    _assert_consistent(db)
    with db.unit_of_work(write=False) as session:
        expired = dict(
            session.execute(
                select(Member.external_id, func.count())
                .join(LedgerEntry, LedgerEntry.member_id == Member.id)
                .where(LedgerEntry.entry_type == "expire")
                .group_by(Member.external_id)
            ).all()
        )
    assert expired == {"ana": 1, "twin": 1}
    ana, twin = _account(db, "ana"), _account(db, "twin")
    figures = ("points_available", "points_pending", "points_expired", "lifetime_earned")
    assert [getattr(ana, f) for f in figures] == [getattr(twin, f) for f in figures]


def test_a_mix_racing_on_members_with_due_lots_keeps_every_lot_and_balance_exact(
    db: Database,
) -> None:
    """Orders, partial refunds, spends and redemptions race on two members whose history
    leaves lots to release and to expire when the first of them runs: the only refusals are
    the ledger's (``insufficient_points``), every balance re-derives from the ledger, and no
    lot is expired twice."""
    now = T0

    def ingest(at: Any, payload: dict[str, Any]) -> events.Outcome:
        with db.unit_of_work() as session:
            ctx = events.IngestContext(programme=DEMO, now=at, actor="test")
            return events.ingest(session, EventIn.model_validate(payload), ctx, key=None)

    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=now - timedelta(days=800))
    history = [(500, "100.00"), (400, "300.00"), (300, "2000.00"), (100, "900.00"), (20, "50.00")]
    for who in ("a", "b"):
        for n, (days, total) in enumerate(history):
            at = now - timedelta(days=days)
            ingest(at, order_paid(f"{who}-h{n}", who, f"{who}-H{n}", total, at))

    def work(i: int) -> Any:
        who, kind = "ab"[i % 2], i % 5
        later = now + timedelta(seconds=i)
        if kind == 0:
            return ingest(later, order_paid(f"{who}-e{i}", who, f"{who}-E{i}", "25.00", later))
        if kind == 1:
            order = f"{who}-H{(i // 5) % len(history)}"
            return ingest(later, order_refunded(f"{who}-r{i}", who, order, later, "5.00"))
        with db.unit_of_work() as session:
            if kind == 2:
                return operations.spend(
                    session, who, SpendIn(points=40), actor="t", now=later, programme=DEMO
                )
            return rewards.redeem_for(session, who, "coupon-5", now=later, actor="t")

    outcomes = [r for n in range(3) for r in _race(40, lambda i, n=n: work(i + 40 * n))]
    refused = {r.code for r in outcomes if isinstance(r, LealtaError)}
    assert refused <= {"insufficient_points"}
    _assert_consistent(db)
    with db.unit_of_work(write=False) as session:
        twice = session.execute(
            select(LotAllocation.lot_id)
            .join(LedgerEntry, LedgerEntry.id == LotAllocation.entry_id)
            .where(LedgerEntry.entry_type == "expire")
            .group_by(LotAllocation.lot_id)
            .having(func.count() > 1)
        ).all()
        expired = session.scalar(select(func.count()).where(LedgerEntry.entry_type == "expire"))
    assert twice == []
    assert expired == 2 * 2  # each member's two oldest orders, once
