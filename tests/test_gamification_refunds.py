"""Refunds take back what their order counted toward challenges (and revoke a completion)."""

# ruff: noqa: F811
from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.config import Settings
from lealta.gamification import service
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import LedgerEntry, Member, OutboxMessage
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from tests.factories import add_member, order_refunded
from tests.test_gamification import api, drain, order, post, quick  # noqa: F401
from tests.test_rewards import DEMO, use

NOV = datetime(2026, 11, 10, 10, tzinfo=UTC)


def _with_spend_challenge() -> Programme:
    document = DEMO.model_dump(mode="json", exclude_none=True)
    document["challenges"].append(
        {"id": "spend-month", "name": "Spend 100 this month", "event_type": "order.paid",
         "goal": {"measure": "spend", "target": "100"}, "period": "month", "points": 300}
    )  # fmt: skip
    return Programme.model_validate(document)


def _entries(db: Database, member_id: int) -> list[tuple[str, int]]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(LedgerEntry.source_type, LedgerEntry.points, LedgerEntry.reason)
            .where(LedgerEntry.member_id == member_id)
            .order_by(LedgerEntry.id)
        ).all()
    return [(t, p) for t, p, r in rows if t == "challenge" or "Challenge revoked" in r]


def _progress(db: Database, member_id: int, key: tuple[str, str]) -> tuple[int, bool, int]:
    with db.unit_of_work(write=False) as session:
        row = service.progress_of(session, member_id)[key]
        return row.value, row.completed_at is not None, row.points


def _refund(
    client: TestClient, clock: FixedClock, n: str, at: datetime, amount: str | None
) -> None:
    post(client, clock, order_refunded(f"rf-{n}-{at.day}", "ria", f"o-{n}", at, amount))


def test_a_partial_refund_under_the_goal_revokes_a_spend_challenge_once(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    use(db, _with_spend_challenge())
    ria = add_member(db, "ria", None)
    order(api, clock, "s1", "ria", NOV, "120")
    drain(db, clock, quick)
    assert _progress(db, ria, ("spend-month", "2026-11")) == (12000, True, 300)
    assert _entries(db, ria) == [("challenge", 300)]

    _refund(api, clock, "s1", NOV.replace(day=12), "10")  # still 110 €: stays completed
    drain(db, clock, quick)
    assert _progress(db, ria, ("spend-month", "2026-11")) == (11000, True, 300)

    _refund(api, clock, "s1", NOV.replace(day=13), "30")  # 80 €: under the goal
    drain(db, clock, quick)
    assert _progress(db, ria, ("spend-month", "2026-11")) == (8000, False, 0)
    assert _entries(db, ria) == [("challenge", 300), ("adjustment", -300)]
    with db.unit_of_work(write=False) as session:
        revoked = session.scalars(
            select(OutboxMessage.payload).where(OutboxMessage.topic == "challenge.revoked")
        ).all()
    assert [(p["challenge_id"], p["period"], p["points"]) for p in revoked] == [
        ("spend-month", "2026-11", 300)
    ]

    # A re-delivery of the refund takes nothing back twice.
    with db.unit_of_work() as session:
        programme = programmes.current(session, now=clock.now())
        member = session.get(Member, ria)
        assert member is not None
        refund = service.happened(
            session, "order.refunded", "rf-s1-13", clock.now(), backfill=False
        )
        assert service.revoke_challenges(session, programme, member, refund, now=clock.now()) == []
    assert _entries(db, ria) == [("challenge", 300), ("adjustment", -300)]

    order(api, clock, "s2", "ria", NOV.replace(day=20), "25")  # 105 €: completed again
    drain(db, clock, quick)
    assert _progress(db, ria, ("spend-month", "2026-11")) == (10500, True, 300)
    assert _entries(db, ria) == [("challenge", 300), ("adjustment", -300), ("challenge", 300)]


def test_a_full_refund_uncounts_the_order_in_a_count_challenge(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    ria = add_member(db, "ria", None)
    for n, day in (("c1", 3), ("c2", 4), ("c3", 5)):
        order(api, clock, n, "ria", NOV.replace(day=day), "20")
    drain(db, clock, quick)
    assert _progress(db, ria, ("three-orders-month", "2026-11")) == (3, True, 150)
    _refund(api, clock, "c2", NOV.replace(day=8), "5")  # partial: the order still counts
    drain(db, clock, quick)
    assert _progress(db, ria, ("three-orders-month", "2026-11")) == (3, True, 150)
    _refund(api, clock, "c1", NOV.replace(day=9), None)  # in full
    drain(db, clock, quick)
    assert _progress(db, ria, ("three-orders-month", "2026-11")) == (2, False, 0)
    assert _entries(db, ria) == [("challenge", 150), ("adjustment", -150)]
