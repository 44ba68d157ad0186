"""Dashboard roll-ups: the pure member facts, the incremental subscriber against a full rebuild
(randomised histories through the real API, the real worker and the real expiry job), and
redelivery of an outbox row not counting twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from lealta.analytics import rollups
from lealta.config import Settings
from lealta.imports.service import import_orders
from lealta.jobs import service as jobs_service
from lealta.jobs.dispatch import OutboxInfo
from lealta.jobs.tasks import JobContext
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Base, Database
from lealta.models import AnalyticsDaily, Job, Member, OutboxMessage
from lealta.outbox.events import decode
from lealta.programme import service as programmes
from tests.conftest import app_for, empty_tables
from tests.factories import order_paid, order_refunded
from tests.spine_histories import FAST

START = datetime(2026, 1, 28, 10, 0, tzinfo=UTC)


# --- pure ------------------------------------------------------------------------------------


def test_member_facts_bucket_orders_and_points_by_utc_day() -> None:
    enrolled = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    late = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    facts = rollups.member_facts(
        enrolled,
        [(enrolled, 10_000, 0), (late, 5_000, 2_000)],
        [
            (enrolled, "earn", 100),
            (late, "earn", 50),
            (late, "reverse", -20),
            (late, "redeem", -30),
            (datetime(2026, 4, 9, tzinfo=UTC), "expire", -40),
            (datetime(2026, 4, 9, tzinfo=UTC), "adjust", -5),
        ],
    )
    assert facts.enrolled_day == date(2026, 3, 1)
    assert facts.days[date(2026, 3, 1)] == rollups.DayFacts(
        orders=1, revenue_minor=10_000, points_earned=100, enrolled=1
    )
    assert facts.days[date(2026, 3, 2)] == rollups.DayFacts(
        orders=1,
        revenue_minor=5_000,
        refunded_minor=2_000,
        points_earned=50,
        points_reversed=20,
        points_redeemed=30,
    )
    assert facts.days[date(2026, 4, 9)] == rollups.DayFacts(points_expired=40, points_adjusted=-5)
    assert facts.active_months == {date(2026, 3, 1)}
    assert facts.first_order_day == date(2026, 3, 1)
    assert facts.cohort == date(2026, 3, 1)


def test_replacing_facts_adds_only_the_difference_to_the_totals() -> None:
    d1, d2 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC)
    old = rollups.member_facts(d1, [(d1, 100, 0)], [])
    new = rollups.member_facts(d1, [(d1, 100, 0), (d2, 50, 0)], [])
    delta = rollups.difference(old, new)
    assert delta.daily[date(2026, 4, 2)]["orders"] == 1
    assert delta.daily[date(2026, 4, 2)]["active_members"] == 1
    assert not any(delta.daily[date(2026, 3, 1)].values())
    assert delta.monthly[date(2026, 4, 1)]["active_members"] == 1
    assert delta.cohorts[(date(2026, 3, 1), date(2026, 4, 1))] == 1
    same = rollups.difference(new, new)
    assert not any(v for c in same.daily.values() for v in c.values())
    assert not any(same.cohorts.values())


# --- database --------------------------------------------------------------------------------


def _empty(db: Database) -> None:
    empty_tables(db)


@pytest.fixture
def quick(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, env="test", log_level="WARNING", worker_poll_seconds=0.01
    )


@pytest.fixture
def api(db: Database, clock: FixedClock, quick: Settings, server_key: str) -> Iterator[TestClient]:
    app = app_for(quick, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def drain(db: Database, clock: FixedClock, settings: Settings) -> None:
    """Workers until nothing is left: a second and third round pick up what the jobs of the
    round before handed to the outbox as it was ending (a challenge's points, say)."""
    for _ in range(3):
        Worker(db, clock=clock, settings=settings, name="analytics-test", schedule=False).run(
            until_idle=True
        )


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    with db.unit_of_work(write=False) as session:
        return rollups.snapshot(session)


def rebuild(db: Database, clock: FixedClock) -> None:
    with db.unit_of_work() as session:
        rollups.rebuild(session, now=clock.now(), chunk=2)


def post(client: TestClient, clock: FixedClock, key: str, payload: dict[str, Any]) -> int:
    clock.set(datetime.fromisoformat(payload["occurred_at"]))
    r = client.post("/v1/events", json=payload, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code in (201, 200, 409, 422), r.text
    return r.status_code


Op = tuple[int, int, int, int]  # customer, minutes after START, cents, kind (0 pay, 1 refund)

OPS = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 60 * 24 * 120),
        st.integers(1, 40_000),
        st.integers(0, 2),
    ),
    min_size=1,
    max_size=12,
)


def play(db: Database, client: TestClient, clock: FixedClock, key: str, ops: list[Op]) -> None:
    orders: list[tuple[str, str]] = []
    for n, (customer, minutes, cents, kind) in enumerate(sorted(ops, key=lambda o: o[1])):
        at = START + timedelta(minutes=minutes)
        who = f"c{customer}"
        if kind == 1 and orders:
            cust, order = orders[n % len(orders)]
            amount = f"{cents / 100:.2f}" if cents % 2 else None
            post(client, clock, key, order_refunded(f"r{n}", cust, order, at, amount))
        else:
            order = f"O{n}"
            post(client, clock, key, order_paid(f"e{n}", who, order, f"{cents / 100:.2f}", at))
            orders.append((who, order))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_incremental_roll_ups_equal_a_full_rebuild(
    db: Database, api: TestClient, clock: FixedClock, quick: Settings, ops: list[Op]
) -> None:
    _empty(db)
    with db.unit_of_work() as session:
        programmes.apply(session, FAST, actor="test", now=START - timedelta(days=30))
        from lealta.apikeys import service as apikeys

        _, key = apikeys.create(session, name="k", scope="server", now=START)
    play(db, api, clock, key, ops)
    # Points expire three months after they are earned: the catch-up job emits the events.
    clock.set(START + timedelta(days=200))
    jobs_service.run_due(db, now=clock.now())
    drain(db, clock, quick)
    incremental = snapshot(db)
    assert incremental["analytics_daily"], "the subscriber wrote nothing"
    rebuild(db, clock)
    assert snapshot(db) == incremental


def test_a_redelivered_event_is_not_counted_twice(
    db: Database, api: TestClient, clock: FixedClock, quick: Settings, server_key: str
) -> None:
    with db.unit_of_work() as session:
        programmes.apply(session, FAST, actor="test", now=START - timedelta(days=30))
    post(api, clock, server_key, order_paid("e1", "ana", "O1", "120.00", START))
    drain(db, clock, quick)
    before = snapshot(db)
    with db.unit_of_work(write=False) as session:
        daily = session.scalars(select(AnalyticsDaily)).one()
    assert (daily.orders, daily.revenue_minor, daily.new_members) == (1, 12_000, 1)
    with db.unit_of_work() as session:
        row = session.scalars(
            select(OutboxMessage).where(OutboxMessage.topic == "order.paid")
        ).one()
        ctx = JobContext(
            db=db,
            clock=clock,
            settings=quick,
            job_id=999_999,
            task="outbox.deliver",
            attempt=2,
            now=clock.now(),
            session=session,
        )
        info = OutboxInfo(
            row.id, row.topic, row.version, row.member_id, row.backfill, row.created_at
        )
        rollups.on_event(ctx, decode(row.topic, row.payload), info)
        # Even a forced re-sync of the member changes nothing: the facts are replaced.
        assert row.member_id is not None
        assert rollups.sync_member(session, row.member_id, now=clock.now()) is False
    assert snapshot(db) == before


def test_a_refund_moves_the_totals_of_the_order_day(
    db: Database, api: TestClient, clock: FixedClock, quick: Settings, server_key: str
) -> None:
    with db.unit_of_work() as session:
        programmes.apply(session, FAST, actor="test", now=START - timedelta(days=30))
    post(api, clock, server_key, order_paid("e1", "ana", "O1", "120.00", START))
    post(
        api,
        clock,
        server_key,
        order_refunded("r1", "ana", "O1", START + timedelta(days=3), "20.00"),
    )
    drain(db, clock, quick)
    with db.unit_of_work(write=False) as session:
        rows = {d.day: d for d in session.scalars(select(AnalyticsDaily))}
    day = rows[START.date()]
    assert (day.orders, day.revenue_minor, day.refunded_minor) == (1, 12_000, 2_000)
    assert day.points_earned > 0
    later = rows[(START + timedelta(days=3)).date()]
    assert later.points_reversed > 0 and later.orders == 0
    incremental = snapshot(db)
    rebuild(db, clock)
    assert snapshot(db) == incremental


def test_the_roll_up_tables_match_their_migration(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if "analytics_" in repr(d) and "analytics_clv" not in repr(d)] == []


def test_totals_that_come_back_to_zero_leave_no_row(db: Database) -> None:
    from lealta.models import AnalyticsCohort

    feb, mar = date(2026, 2, 1), date(2026, 3, 1)
    with db.unit_of_work() as session:
        rollups._upsert_add(
            session,
            AnalyticsCohort,
            ("cohort", "month"),
            [{"cohort": feb, "month": mar, "active_members": 2}],
        )
        rollups._upsert_add(
            session,
            AnalyticsCohort,
            ("cohort", "month"),
            [{"cohort": feb, "month": mar, "active_members": -1}],
        )
        assert session.scalars(select(AnalyticsCohort.active_members)).all() == [1]
        rollups._upsert_add(
            session,
            AnalyticsCohort,
            ("cohort", "month"),
            [{"cohort": feb, "month": mar, "active_members": -1}],
        )
        assert session.scalars(select(AnalyticsCohort)).all() == []
        rollups._upsert_add(
            session,
            AnalyticsDaily,
            ("day",),
            [
                {
                    "day": mar,
                    **dict.fromkeys(rollups.FLOWS, 0),
                    "orders": 1,
                    "new_members": 0,
                    "active_members": 0,
                }
            ],
        )
        rollups._upsert_add(
            session,
            AnalyticsDaily,
            ("day",),
            [
                {
                    "day": mar,
                    **dict.fromkeys(rollups.FLOWS, 0),
                    "orders": -1,
                    "new_members": 0,
                    "active_members": 0,
                }
            ],
        )
        assert session.scalars(select(AnalyticsDaily)).all() == []


def import_history(
    db: Database, clock: FixedClock, tmp_path: Path, *, customers: int, orders: int, hours: int
) -> int:
    """Import ``orders`` orders of ``customers`` customers, one every ``hours`` hours from
    ``START``, under the FAST programme, and set the clock 90 days on; how many landed."""
    with db.unit_of_work() as session:
        programmes.apply(session, FAST, actor="test", now=START - timedelta(days=30))
    lines = ["customer_id,order_id,occurred_at,amount,currency"]
    for i in range(orders):
        at = (START + timedelta(hours=i * hours)).isoformat()
        lines.append(f"imp{i % customers},IO{i},{at},{20 + i}.50,EUR")
    path = tmp_path / "history.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    clock.set(START + timedelta(days=90))
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session)
    return import_orders(db, path, programme=programme, now=clock.now(), actor="test").imported


def test_an_imported_history_reaches_the_roll_ups_in_batches_each_member_once(
    db: Database,
    clock: FixedClock,
    quick: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Backfilled rows go to the roll-ups as one job per dispatched batch (not a job per row),
    which re-syncs each member of the batch once; the totals equal a full rebuild."""
    # 6 customers, 10 orders each, over two months
    assert import_history(db, clock, tmp_path, customers=6, orders=60, hours=23) == 60

    synced: list[int] = []
    calls: list[list[int]] = []
    real_sync = rollups.sync_members

    def counting_sync(session: Any, member_ids: Iterable[int], *, now: datetime) -> int:
        ids = sorted(set(member_ids))  # a member named by several rows is synced once
        synced.extend(ids)
        calls.append(ids)
        return real_sync(session, ids, now=now)

    monkeypatch.setattr(rollups, "sync_members", counting_sync)
    drain(db, clock, quick)
    with db.unit_of_work(write=False) as session:
        deliveries = session.execute(
            select(Job.task, Job.args).where(Job.task.like("outbox.deliver%"))
        ).all()
        backfilled = session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.backfill)
        )
    assert backfilled is not None and backfilled >= 60  # an order.paid per order at least
    mine = [args for task, args in deliveries if args["subscriber"] == rollups.SUBSCRIBER]
    assert [task for task, args in deliveries if args["subscriber"] == rollups.SUBSCRIBER] == [
        "outbox.deliver_backfill"
    ] * len(mine)
    rows = [i for args in mine for i in args["outbox_ids"]]
    assert len(rows) >= 60 and len(set(rows)) == len(rows)  # every row once
    assert len(mine) <= 3  # a job per dispatched batch (the import's rows and what followed)
    # Each member re-synced once per batch, not once per row: 6 members, 60+ rows.
    assert set(synced) == set(range(min(synced), min(synced) + 6))
    assert max(Counter(synced).values()) <= len(mine) and len(synced) <= 6 * len(mine)
    # ... and all of a batch's members in one call (one round of set-wise statements).
    assert len(calls) <= len(mine)
    incremental = snapshot(db)
    assert incremental["analytics_daily"]
    rebuild(db, clock)
    assert snapshot(db) == incremental


def test_syncing_many_members_is_a_few_statements_whatever_their_number(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """``sync_members`` brings 40 members in from nothing with the same handful of statements
    as 4 would take, lands on what a rebuild computes, and a second sync changes nothing."""
    # 40 customers, 3 orders each
    assert import_history(db, clock, tmp_path, customers=40, orders=120, hours=17) == 120
    rebuild(db, clock)
    expected = snapshot(db)
    with db.unit_of_work() as session:
        for model in reversed(Base.metadata.sorted_tables):
            if model.name.startswith("analytics_") and model.name != "analytics_applied":
                session.execute(model.delete())
        ids = sorted(session.scalars(select(Member.id)))
    assert len(ids) == 40

    def statements(member_ids: list[int]) -> tuple[int, int]:
        sent: list[str] = []

        def count(*args: Any) -> None:
            sent.append(args[2])

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            with db.unit_of_work() as session:
                changed = rollups.sync_members(session, member_ids, now=clock.now())
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        return changed, len(sent)

    few = statements(ids[:4])
    many = statements(ids[4:])
    assert few[0] == 4 and many[0] == 36
    # Lock (insert, select), held days, members, orders, ledger, three totals upserts and
    # their zero-row clean-ups, stale days out, new days in, members' rows: 15.
    assert many[1] == few[1] <= 15, (few, many)
    assert snapshot(db) == expected
    assert statements(ids) == (0, statements(ids)[1])
    assert snapshot(db) == expected
