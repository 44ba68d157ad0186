"""The balance read on the event loop (PostgreSQL): ``kit.db.HotReads``.

On PostgreSQL the balance is read on an asyncio pool of its own instead of through a worker
thread. These tests check that it answers what the thread path answers, that it is the path
taken once the process knows the programme, that it fails the way the rest does (a
``503 database_unavailable`` family error, bounded in time) and survives a server that
dropped its connections. The black-hole test needs no database server; the others run on
the real PostgreSQL of the suite.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from lealta.kit.clock import FixedClock
from lealta.kit.db import HOT_READS_APPLICATION, CoalescedReads, Database, HotReads
from lealta.members import service
from tests.factories import order_paid
from tests.test_client_support import in_thread, run_async
from tests.test_programme_engine import START, no_pending, post, use
from tests.test_rules_engine import DEMO


def test_a_database_that_never_answers_is_an_operational_error_in_bounded_time(
    black_hole: int,
) -> None:
    reads = HotReads(
        f"postgresql://lealta@127.0.0.1:{black_hole}/lealta",
        size=2,
        timeout=1.0,
        connect_timeout=1.0,
        statement_timeout=None,
    )

    async def scenario() -> float:
        await reads.open()
        try:
            start = time.perf_counter()
            with pytest.raises(OperationalError):
                await reads.rows(text("SELECT 1"), {})
            return time.perf_counter() - start
        finally:
            await reads.close()

    elapsed = run_async(scenario)
    assert elapsed < 5  # the pool's timeout (1 s), not libpq's default of minutes


@pytest.mark.postgres_only
def test_a_pool_not_open_in_the_running_loop_answers_none(database_url: str) -> None:
    reads = HotReads(database_url, size=1, timeout=1.0, connect_timeout=1.0, statement_timeout=None)

    async def never_opened() -> Any:
        return await reads.rows(text("SELECT 1"), {})

    assert run_async(never_opened) is None

    async def open_here() -> Any:
        await reads.open()
        return await reads.rows(text("SELECT 1"), {})

    # Another event loop (another test client, another thread) reads through a thread,
    # and neither opens nor closes the pool of the first.
    async def elsewhere() -> Any:
        await reads.open()
        found = await reads.rows(text("SELECT 1"), {})
        await reads.close()
        return found

    def two_loops() -> None:  # in a thread without a running loop
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(open_here()) == [(1,)]
            assert run_async(elsewhere) is None
            assert loop.run_until_complete(reads.rows(text("SELECT 1"), {})) == [(1,)]
            loop.run_until_complete(reads.close())
            assert loop.run_until_complete(never_opened()) is None
        finally:
            loop.close()

    in_thread(two_loops)

    async def after() -> Any:  # a later loop opens it again
        await reads.open()
        try:
            return await reads.rows(text("SELECT 3"), {})
        finally:
            await reads.close()

    assert run_async(after) == [(3,)]


def test_sqlite_has_no_event_loop_pool(tmp_path: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert db.hot_reads is None
    finally:
        db.dispose()


# --- on the suite's PostgreSQL -----------------------------------------------------------------


@pytest.fixture
def shopped(db: Database, client: TestClient, clock: FixedClock) -> Database:
    """``db`` under the demo programme, where ana bought three times over a year and a half
    (lots expiring on different dates), read 430 days after the first order."""
    assert db.hot_reads is not None
    use(db, no_pending(DEMO))
    for n, (days, total) in enumerate([(0, "300.00"), (120, "80.50"), (250, "1200.00")]):
        at = START + timedelta(days=days)
        post(client, clock, order_paid(f"ana-e{n}", "ana", f"ana-O{n}", total, at))
    clock.set(START + timedelta(days=430))
    return db


@pytest.mark.postgres_only
def test_the_event_loop_read_answers_what_the_thread_read_answers(
    shopped: Database, client: TestClient, clock: FixedClock
) -> None:
    db = shopped
    assert db.hot_reads is not None
    client.get("/v1/members/ana/balance")  # this process reads the programme once
    seen: list[str] = []
    db.hot_reads.observers.append(seen.append)
    try:
        body = client.get("/v1/members/ana/balance").json()
        missing = client.get("/v1/members/nobody/balance")
    finally:
        db.hot_reads.observers.remove(seen.append)
    assert len(seen) == 2  # both answered on the event loop, one statement each
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "member_not_found"
    with db.unit_of_work(write=False) as session:
        expected = service.read_balance(
            session, "ana", now=clock.now(), programme_at=datetime.now(UTC)
        )
    assert body == expected.model_dump(mode="json")
    assert body["available"] > 0 and body["next_expiry"] is not None


@pytest.mark.postgres_only
def test_a_connection_the_server_dropped_is_replaced_without_an_error(
    shopped: Database, client: TestClient
) -> None:
    db = shopped
    first = client.get("/v1/members/ana/balance")
    assert first.status_code == 200
    # The server ends every session of the pool (as a restart or a failover would).
    with db.engine.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": HOT_READS_APPLICATION},
        ).scalar_one()
        conn.commit()
    assert ended >= 1
    for _ in range(3):
        again = client.get("/v1/members/ana/balance")
        assert again.status_code == 200, again.text
        assert again.content == first.content


@pytest.mark.postgres_only
def test_a_statement_timeout_is_an_operational_error(database_url: str) -> None:
    reads = HotReads(database_url, size=1, timeout=2.0, connect_timeout=2.0, statement_timeout=0.2)

    async def scenario() -> None:
        await reads.open()
        try:
            with pytest.raises(OperationalError, match="statement timeout"):
                await reads.rows(text("SELECT pg_sleep(3)"), {})
            # The connection is still good for the next read.
            assert await reads.rows(text("SELECT 2"), {}) == [(2,)]
        finally:
            await reads.close()

    start = time.perf_counter()
    run_async(scenario)
    assert time.perf_counter() - start < 2.5


# --- reads that arrive together go together --------------------------------------------------


@pytest.mark.postgres_only
def test_concurrent_balance_reads_share_statements_and_answer_each_its_own(
    shopped: Database, client: TestClient, clock: FixedClock, database_url: str
) -> None:
    for name, total in (("bea", "40.00"), ("carl", "999.00")):
        post(client, clock, order_paid(f"{name}-e", name, f"{name}-O", total, clock.now()))
    client.get("/v1/members/ana/balance")  # this process reads the programme once
    with shopped.unit_of_work(write=False) as session:
        expected = {
            name: service.read_balance(
                session, name, now=clock.now(), programme_at=datetime.now(UTC)
            ).model_dump()
            for name in ("ana", "bea", "carl")
        }
    assert len({out["available"] for out in expected.values()}) == 3
    names = ["ana", "bea", "carl", "nobody"] * 10
    other = Database(database_url)  # a pool of its own, opened in this test's loop
    assert other.hot_reads is not None
    seen: list[str] = []
    other.hot_reads.observers.append(seen.append)

    async def scenario() -> list[Any]:
        assert other.hot_reads is not None
        await other.hot_reads.open()
        try:
            reads = [
                service.read_balance_hot(
                    other, name, now=clock.now(), programme_at=datetime.now(UTC)
                )
                for name in names
            ]
            return await asyncio.gather(*reads, return_exceptions=True)
        finally:
            await other.hot_reads.close()

    try:
        answers = run_async(scenario)
    finally:
        other.dispose()
    for name, answer in zip(names, answers, strict=True):
        if name == "nobody":
            assert isinstance(answer, service.MemberNotFound)
        else:
            assert answer is not None and answer.model_dump() == expected[name], name
    # The 40 reads arrived in one turn of the loop: one statement answered them all.
    assert len(seen) == 1, seen


@pytest.mark.postgres_only
def test_a_failing_batch_fails_its_reads_and_the_next_batch_answers(database_url: str) -> None:
    reads = HotReads(database_url, size=2, timeout=2.0, connect_timeout=2.0, statement_timeout=None)
    coalesced = reads.coalesced(
        text("SELECT k, 100 / k AS q FROM unnest(CAST(:keys AS int[])) AS k"), column="k"
    )

    async def read(key: int) -> Any:
        row = await coalesced.row(key, {})
        return None if row is None else row.q

    async def scenario() -> tuple[list[Any], list[Any], Any]:
        with pytest.raises(CoalescedReads.Unavailable):  # not open in this loop yet
            await read(1)
        await reads.open()
        try:
            together = await asyncio.gather(*(read(k) for k in (1, 2, 4, 5, 10)))
            # 0 divides by zero: its batch fails, every read of it with the error.
            failing = await asyncio.gather(
                *(read(k) for k in (1, 2, 0, 4, 5)), return_exceptions=True
            )
            return together, failing, await read(20)
        finally:
            await reads.close()

    together, failing, after = run_async(scenario)
    assert together == [100, 50, 25, 20, 10]
    # Reads that arrive in the same turn of the loop go as one statement.
    assert coalesced.batches == 3
    assert all(isinstance(f, DBAPIError) for f in failing)
    assert "division by zero" in str(failing[0])
    assert after == 5


@pytest.mark.postgres_only
def test_coalesced_reads_go_on_after_the_pool_reopens_in_another_loop(database_url: str) -> None:
    reads = HotReads(database_url, size=2, timeout=2.0, connect_timeout=2.0, statement_timeout=None)
    statement = text("SELECT k, k * 2 AS double FROM unnest(CAST(:keys AS int[])) AS k")

    def in_a_loop_of_its_own(keys: list[int]) -> list[int]:
        async def scenario() -> list[int]:
            await reads.open()
            try:
                coalesced = reads.coalesced(statement, column="k")
                return [
                    r.double for r in await asyncio.gather(*(coalesced.row(k, {}) for k in keys))
                ]
            finally:
                await reads.close()

        return run_async(scenario)

    first = reads.coalesced(statement, column="k")
    assert in_a_loop_of_its_own([1, 2, 3]) == [2, 4, 6]
    assert in_a_loop_of_its_own([4, 5]) == [8, 10]  # a fresh queue for the new loop
    assert reads.coalesced(statement, column="k") is not first
