"""Queue semantics on the real database (SQLite and PostgreSQL): enqueue in the caller's
transaction, dedupe, claim order, leases, completion by the holder only, backoff, dead
letters, retry/discard, depth, pruning; concurrent claims on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from lealta.jobs import queue
from lealta.jobs.queue import NewJob
from lealta.jobs.tasks import Backoff
from lealta.kit.db import Base, Database
from lealta.kit.errors import InvalidInput
from lealta.kit.migrate import alembic_config, upgrade
from lealta.models import Job
from tests.conftest import T0

LEASE = timedelta(seconds=30)
ALWAYS_MAX = Backoff(base=10, cap=100)


def _enqueue(db: Database, task: str = "t", **kw: object) -> int:
    with db.unit_of_work() as session:
        return queue.enqueue(session, task, kw.pop("args", {}), now=T0, **kw)  # type: ignore[arg-type]


def _claim(db: Database, worker: str = "w1", *, limit: int = 10, at=T0, **kw: object):  # type: ignore[no-untyped-def]
    with db.unit_of_work() as session:
        return queue.claim(session, worker, now=at, limit=limit, lease=LEASE, **kw)  # type: ignore[arg-type]


def _job(db: Database, job_id: int) -> Job:
    with db.unit_of_work(write=False) as session:
        return queue.get(session, job_id)


# --- enqueue -------------------------------------------------------------------------------


def test_a_job_enqueued_by_a_rolled_back_transaction_never_exists(db: Database) -> None:
    with pytest.raises(RuntimeError), db.unit_of_work() as session:
        queue.enqueue(session, "t", {"n": 1}, now=T0)
        raise RuntimeError("the change failed")
    with db.unit_of_work(write=False) as session:
        assert session.scalars(select(Job)).all() == []
    job_id = _enqueue(db, args={"n": 2})
    job = _job(db, job_id)
    assert (job.status, job.args, job.run_at, job.attempts) == ("queued", {"n": 2}, T0, 0)
    assert job.max_attempts == 8 and job.queue == "default"


def test_the_same_dedupe_key_is_one_job(db: Database) -> None:
    first = _enqueue(db, dedupe_key="k1", args={"a": 1})
    again = _enqueue(db, dedupe_key="k1", args={"a": 2})
    other = _enqueue(db, dedupe_key="k2")
    assert first == again != other
    assert _job(db, first).args == {"a": 1}
    # Even once finished, the key still names that job.
    (claimed,) = [c for c in _claim(db) if c.id == first]
    with db.unit_of_work() as session:
        assert queue.complete(session, first, worker="w1", attempt=claimed.attempt, now=T0)
    assert _enqueue(db, dedupe_key="k1") == first
    with db.unit_of_work() as session:
        sent = queue.enqueue_many(
            session, [NewJob("t", dedupe_key="k1"), NewJob("t", dedupe_key="k3")], now=T0
        )
    assert sent == 2
    with db.unit_of_work(write=False) as session:
        keys = session.scalars(select(Job.dedupe_key).order_by(Job.id)).all()
    assert keys == ["k1", "k2", "k3"]


def test_enqueue_refuses_what_cannot_be_stored(db: Database) -> None:
    with db.unit_of_work() as session:
        with pytest.raises(InvalidInput) as bad_args:
            queue.enqueue(session, "t", {"when": object()}, now=T0)
        assert bad_args.value.code == "invalid_job_args"
        with pytest.raises(InvalidInput):
            queue.enqueue(session, "x" * 101, now=T0)
        with pytest.raises(InvalidInput):
            queue.enqueue(session, "t", now=T0, dedupe_key="k" * 201)
        with pytest.raises(InvalidInput):
            queue.enqueue(session, "t", now=T0, max_attempts=0)


# --- claim ---------------------------------------------------------------------------------


def test_claim_takes_due_jobs_by_priority_then_age(db: Database) -> None:
    late = _enqueue(db, run_at=T0 - timedelta(minutes=1))
    early = _enqueue(db, run_at=T0 - timedelta(minutes=5))
    urgent = _enqueue(db, run_at=T0, priority=10)
    _enqueue(db, run_at=T0 + timedelta(seconds=1))  # not due yet
    _enqueue(db, queue="mail")
    assert [c.id for c in _claim(db, queues=["default"])] == [urgent, early, late]
    assert _claim(db, queues=["default"]) == []
    (mail,) = _claim(db, "w2")
    assert mail.queue == "mail"
    later = _claim(db, "w2", at=T0 + timedelta(seconds=1))
    assert len(later) == 1


def test_claim_counts_the_attempt_and_sets_the_lease(db: Database) -> None:
    job_id = _enqueue(db, args={"x": [1, 2]})
    (c,) = _claim(db, limit=5)
    assert (c.id, c.task, c.args, c.attempt, c.lease_until) == (
        job_id,
        "t",
        {"x": [1, 2]},
        1,
        T0 + LEASE,
    )
    job = _job(db, job_id)
    assert (job.status, job.worker, job.attempts, job.started_at) == ("running", "w1", 1, T0)
    with db.unit_of_work(write=False) as session:
        assert not queue.has_due(session, now=T0 + timedelta(hours=1))
    assert _claim(db, "w2", limit=0) == []


def test_only_the_holder_of_the_current_attempt_completes(db: Database) -> None:
    job_id = _enqueue(db)
    (c,) = _claim(db)
    with db.unit_of_work() as session:
        assert not queue.complete(session, job_id, worker="w2", attempt=1, now=T0)
        assert not queue.complete(session, job_id, worker="w1", attempt=2, now=T0)
        assert queue.complete(session, job_id, worker="w1", attempt=c.attempt, now=T0)
        assert not queue.complete(session, job_id, worker="w1", attempt=c.attempt, now=T0)
    job = _job(db, job_id)
    assert (job.status, job.finished_at, job.lease_until) == ("succeeded", T0, None)


# --- failures ------------------------------------------------------------------------------


def test_failures_back_off_then_go_dead_with_the_error(db: Database) -> None:
    job_id = _enqueue(db, max_attempts=3)
    at = T0
    for attempt in (1, 2):
        (c,) = _claim(db, at=at)
        assert c.attempt == attempt
        with db.unit_of_work() as session:
            status = queue.fail(
                session, job_id, worker="w1", attempt=attempt, now=at,
                error=f"boom {attempt}", backoff=ALWAYS_MAX, rand=lambda: 0.5,
            )  # fmt: skip
        assert status == "retrying"
        job = _job(db, job_id)
        # Full jitter at 0.5 of the ceiling: 5 s after the first failure, 10 s after the second.
        assert job.run_at == at + timedelta(seconds=5 * attempt)
        assert job.last_error == f"boom {attempt}"
        assert _claim(db, at=job.run_at - timedelta(microseconds=1)) == []
        at = job.run_at
    (c,) = _claim(db, at=at)
    with db.unit_of_work() as session:
        status = queue.fail(
            session, job_id, worker="w1", attempt=3, now=at, error="x" * 20_000, backoff=ALWAYS_MAX
        )
    assert status == "dead"
    job = _job(db, job_id)
    assert (job.status, job.finished_at, job.attempts) == ("dead", at, 3)
    assert job.last_error is not None and len(job.last_error) == queue.MAX_ERROR_CHARS
    assert _claim(db, at=at + timedelta(days=1)) == []


def test_give_up_is_dead_at_once_and_a_lost_job_is_not_failed(db: Database) -> None:
    job_id = _enqueue(db)
    _claim(db)
    with db.unit_of_work() as session:
        assert (
            queue.fail(
                session, job_id, worker="w9", attempt=1, now=T0, error="e", backoff=ALWAYS_MAX
            )
            is None
        )
        assert queue.fail(
            session, job_id, worker="w1", attempt=1, now=T0, error="bad", backoff=ALWAYS_MAX,
            give_up=True,
        ) == "dead"  # fmt: skip
    assert _job(db, job_id).status == "dead"


# --- leases --------------------------------------------------------------------------------


def test_a_dead_workers_job_is_taken_back_when_its_lease_runs_out(db: Database) -> None:
    job_id = _enqueue(db, max_attempts=2)
    _claim(db, "dead-worker")
    with db.unit_of_work() as session:
        assert not queue.has_expired(session, now=T0 + LEASE)
        assert queue.recover_expired(session, now=T0 + LEASE) == 0
        assert queue.has_expired(session, now=T0 + LEASE + timedelta(seconds=1))
        # A worker does not take back its own jobs (it watches their time limits itself).
        later = T0 + LEASE + timedelta(seconds=1)
        assert queue.recover_expired(session, now=later, exclude_worker="dead-worker") == 0
        assert queue.recover_expired(session, now=later, exclude_worker="w2") == 1
    job = _job(db, job_id)
    assert job.status == "retrying" and job.worker is None
    assert job.last_error == "lease expired: worker dead-worker stopped or stalled"
    (again,) = _claim(db, "w2", at=later)
    assert again.attempt == 2
    # The first worker comes back to life: its completion is refused.
    with db.unit_of_work() as session:
        assert not queue.complete(session, job_id, worker="dead-worker", attempt=1, now=later)
    # The second holder dies too: that was the last attempt.
    with db.unit_of_work() as session:
        assert queue.recover_expired(session, now=later + LEASE + timedelta(seconds=1)) == 1
    assert _job(db, job_id).status == "dead"


def test_renewal_keeps_a_job_and_release_gives_it_back(db: Database) -> None:
    a, b = _enqueue(db), _enqueue(db)
    _claim(db)
    later = T0 + timedelta(seconds=20)
    with db.unit_of_work() as session:
        assert queue.renew(session, [a, b], worker="w1", now=later, lease=LEASE) == {a, b}
        assert queue.renew(session, [a], worker="w2", now=later, lease=LEASE) == set()
        assert not queue.has_expired(session, now=T0 + LEASE + timedelta(seconds=1))
        assert queue.release(session, [b], worker="w1") == 1
    assert _job(db, a).lease_until == later + LEASE
    released = _job(db, b)
    assert (released.status, released.attempts, released.worker) == ("queued", 0, None)


# --- people: retry, discard, lists, depth, pruning -----------------------------------------


def test_retry_and_discard(db: Database) -> None:
    job_id = _enqueue(db, max_attempts=1)
    _claim(db)
    with db.unit_of_work() as session:
        with pytest.raises(queue.JobStateConflict) as running:
            queue.discard(session, job_id, now=T0)
        assert running.value.code == "job_running"
        queue.fail(session, job_id, worker="w1", attempt=1, now=T0, error="e", backoff=ALWAYS_MAX)
    later = T0 + timedelta(hours=1)
    with db.unit_of_work() as session:
        job = queue.retry(session, job_id, now=later)
        assert (job.status, job.attempts, job.run_at, job.finished_at) == ("queued", 0, later, None)
        assert job.last_error == "e"  # kept: what went wrong before
        assert queue.discard(session, job_id, now=later).status == "discarded"
        assert queue.discard(session, job_id, now=later).status == "discarded"
        assert queue.retry(session, job_id, now=later).status == "queued"
    (c,) = _claim(db, at=later)
    with db.unit_of_work() as session:
        queue.complete(session, job_id, worker="w1", attempt=c.attempt, now=later)
    with db.unit_of_work() as session:
        for action in (queue.retry, queue.discard):
            with pytest.raises(queue.JobStateConflict) as finished:
                action(session, job_id, now=later)
            assert finished.value.code == "job_finished"
        with pytest.raises(queue.JobNotFound):
            queue.retry(session, 999_999, now=later)
        with pytest.raises(queue.JobNotFound):
            queue.get(session, 2**70)


def test_listing_is_newest_first_and_paged(db: Database) -> None:
    ids = [_enqueue(db, "a" if i % 2 else "b") for i in range(7)]
    with db.unit_of_work(write=False) as session:
        page, more = queue.list_jobs(session, limit=3)
        assert [j.id for j in page] == ids[::-1][:3] and more == ids[4]
        page, more = queue.list_jobs(session, limit=3, before_id=more)
        assert [j.id for j in page] == ids[::-1][3:6]
        page, more = queue.list_jobs(session, limit=3, before_id=more)
        assert [j.id for j in page] == [ids[0]] and more is None
        only_a, _ = queue.list_jobs(session, task="a", status="queued")
        assert [j.id for j in only_a] == [ids[5], ids[3], ids[1]]
        with pytest.raises(InvalidInput):
            queue.list_jobs(session, status="lost")


def test_stats_count_depth_and_lag(db: Database) -> None:
    _enqueue(db, "a", run_at=T0 - timedelta(minutes=10))
    _enqueue(db, "a")
    _enqueue(db, "b", run_at=T0 + timedelta(hours=1))
    dead = _enqueue(db, "b", max_attempts=1)
    _claim(db, limit=1)  # the oldest "a"
    with db.unit_of_work() as session:
        c = queue.claim(session, "w", now=T0, limit=5, lease=LEASE, queues=["default"])
        for job in c:
            if job.id == dead:
                queue.fail(
                    session, dead, worker="w", attempt=1, now=T0, error="e", backoff=ALWAYS_MAX
                )
            else:
                queue.complete(session, job.id, worker="w", attempt=1, now=T0)
    with db.unit_of_work(write=False) as session:
        s = queue.stats(session, now=T0)
    assert s.counts == {
        "queued": 1, "running": 1, "retrying": 0, "succeeded": 1, "dead": 1, "discarded": 0,
    }  # fmt: skip
    assert (s.due, s.scheduled, s.oldest_due_seconds) == (0, 1, None)
    assert {(d.task, d.status, d.count) for d in s.by_task} == {
        ("a", "running", 1), ("b", "queued", 1), ("b", "dead", 1),
    }  # fmt: skip
    with db.unit_of_work(write=False) as session:
        s = queue.stats(session, now=T0 + timedelta(hours=2))
    assert (s.due, s.oldest_due_seconds) == (1, 3600.0)
    assert s.counts["succeeded"] == 1
    with db.unit_of_work(write=False) as session:
        assert queue.stats(session, now=T0 + timedelta(days=2)).counts["succeeded"] == 0


def test_prune_keeps_recent_dead_and_the_newest_tick(db: Database) -> None:
    old = T0 - timedelta(days=10)
    finished = []
    for i in range(3):
        job_id = _enqueue(db, "periodic.t", dedupe_key=f"periodic:periodic.t:{i}", run_at=old)
        finished.append(job_id)
    plain = _enqueue(db, "plain", run_at=old)
    dead = _enqueue(db, "plain", run_at=old, max_attempts=1)
    with db.unit_of_work() as session:
        for c in queue.claim(session, "w", now=old, limit=10, lease=LEASE):
            if c.id == dead:
                queue.fail(
                    session, c.id, worker="w", attempt=1, now=old, error="e", backoff=ALWAYS_MAX
                )
            else:
                queue.complete(session, c.id, worker="w", attempt=1, now=old)
    recent = _enqueue(db, "plain")
    (c,) = _claim(db)
    with db.unit_of_work() as session:
        queue.complete(session, recent, worker="w1", attempt=c.attempt, now=T0)
        assert queue.prune(session, now=T0, older_than=timedelta(days=7), limit=1) == 1
        assert queue.prune(session, now=T0, older_than=timedelta(days=7)) == 2
        assert queue.prune(session, now=T0, older_than=timedelta(days=7)) == 0
    with db.unit_of_work(write=False) as session:
        left = set(session.scalars(select(Job.id)))
    assert left == {finished[-1], dead, recent}
    assert plain not in left


def test_the_jobs_table_matches_its_migration(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    # Alembic cannot compare an expression index (``priority DESC``): ix_jobs_claim is
    # checked by name below, everything else in full.
    assert [d for d in diff if "jobs" in repr(d) and "ix_jobs_claim" not in repr(d)] == []
    with db.engine.connect() as conn:
        indexes = {ix["name"] for ix in inspect(conn).get_indexes("jobs")}
    assert {"ix_jobs_claim", "ix_jobs_lease", "ix_jobs_status_task"} <= indexes


# --- concurrency (PostgreSQL: real concurrent transactions) --------------------------------


@pytest.mark.postgres_only
def test_concurrent_claims_never_share_a_job(db: Database) -> None:
    with db.unit_of_work() as session:
        queue.enqueue_many(session, [NewJob("t", {"n": i}) for i in range(600)], now=T0)
    taken: dict[str, list[int]] = {}
    barrier = threading.Barrier(6)

    def work(name: str) -> None:
        mine = taken.setdefault(name, [])
        barrier.wait()
        while True:
            with db.unit_of_work() as session:
                got = queue.claim(session, name, now=T0, limit=7, lease=LEASE)
            if not got:
                return
            mine.extend(c.id for c in got)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [job for jobs in taken.values() for job in jobs]
    assert len(everything) == 600 == len(set(everything))
    assert sum(1 for jobs in taken.values() if jobs) > 1  # they did share the work


def test_the_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrations.db'}"
    upgrade(url, "0010")
    engine = create_engine(url)
    try:
        assert "jobs" in inspect(engine).get_table_names()
        command.downgrade(alembic_config(url), "0009")
        assert "jobs" not in inspect(engine).get_table_names()
        upgrade(url, "0010")
        engine.dispose()  # SQLite's PRAGMAs on a pooled connection may not see the new table
        assert "ix_jobs_claim" in {ix["name"] for ix in inspect(engine).get_indexes("jobs")}
    finally:
        engine.dispose()
