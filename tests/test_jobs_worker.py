"""The worker on the real database (SQLite and PostgreSQL), in this process: transactional
jobs, failures, give-ups, time limits, lost leases, the outbox dispatcher and its deliveries,
periodic ticks, graceful stop."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from lealta.audit import service as audit
from lealta.config import Settings
from lealta.jobs import dispatch, periodic, queue
from lealta.jobs.dispatch import OutboxInfo
from lealta.jobs.tasks import Backoff, GiveUp, JobContext, task
from lealta.jobs.worker import Worker
from lealta.kit.clock import Clock, FixedClock, SystemClock
from lealta.kit.db import Database
from lealta.members import login_links
from lealta.models import AuditLog, Job, Member, OutboxMessage
from lealta.outbox import events as domain
from lealta.outbox import subscribers
from lealta.outbox.service import emit
from tests.conftest import T0
from tests.factories import add_member

QUICK = Backoff(base=0.5, cap=0.5)
SEEN: dict[str, list[Any]] = {}


@pytest.fixture(autouse=True)
def _clear_seen() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


def _note(ctx: JobContext, what: str) -> None:
    audit.record(
        ctx.require_session(), actor="job", action=what, target_type="job",
        target_id=str(ctx.job_id), now=ctx.now,
    )  # fmt: skip


@task("test.write")
def _write(ctx: JobContext, *, label: str) -> None:
    _note(ctx, label)
    SEEN.setdefault("keys", []).append(ctx.effect_key)


@task("test.flaky", backoff=QUICK, max_attempts=3)
def _flaky(ctx: JobContext, *, fail_times: int) -> None:
    SEEN.setdefault("flaky", []).append((ctx.attempt, ctx.effect_key))
    _note(ctx, f"attempt {ctx.attempt}")
    if ctx.attempt <= fail_times:
        raise ValueError(f"flaky failure {ctx.attempt}")


@task("test.give_up")
def _give_up(ctx: JobContext) -> None:
    raise GiveUp("the target is gone")


@task("test.slow", timeout=0.3)
def _slow(ctx: JobContext) -> None:
    _note(ctx, "slow write")
    time.sleep(1.0)


@task("test.stolen")
def _stolen(ctx: JobContext) -> None:
    # Another worker takes the job over (as after a lease expiry) while this attempt runs.
    with ctx.db.unit_of_work() as session:
        session.execute(
            update(Job)
            .where(Job.id == ctx.job_id)
            .values(worker="thief", attempts=Job.attempts + 1)
        )
    _note(ctx, "stolen write")


@task("test.outside", transactional=False)
def _outside(ctx: JobContext) -> None:
    assert ctx.session is None
    with ctx.db.unit_of_work() as session:
        audit.record(
            session, actor="job", action="outside", target_type="job",
            target_id=str(ctx.job_id), now=ctx.now,
        )  # fmt: skip


@task("test.sleep")
def _sleep(ctx: JobContext, *, seconds: float) -> None:
    time.sleep(seconds)
    _note(ctx, "slept")


@pytest.fixture
def quick_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, env="test", log_level="WARNING", worker_poll_seconds=0.02
    )


def _worker(db: Database, clock: Clock, settings: Settings, **kw: Any) -> Worker:
    kw.setdefault("schedule", False)
    return Worker(db, clock=clock, settings=settings, name=kw.pop("name", "test-worker"), **kw)


def _enqueue(db: Database, task_name: str, args: dict[str, Any] | None = None, **kw: Any) -> int:
    with db.unit_of_work() as session:
        return queue.enqueue(session, task_name, args or {}, now=T0, **kw)


def _job(db: Database, job_id: int) -> Job:
    with db.unit_of_work(write=False) as session:
        return queue.get(session, job_id)


def _actions(db: Database) -> list[str]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


# --- running jobs --------------------------------------------------------------------------


def test_a_transactional_job_commits_its_writes_with_its_completion(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    ids = [_enqueue(db, "test.write", {"label": f"w{i}"}) for i in range(5)]
    ids.append(_enqueue(db, "test.outside"))
    report = _worker(db, clock, quick_settings, concurrency=3).run(until_idle=True)
    assert report.succeeded == 6 and report.failed == 0
    assert sorted(_actions(db)) == ["outside", "w0", "w1", "w2", "w3", "w4"]
    for job_id in ids:
        job = _job(db, job_id)
        assert (job.status, job.attempts, job.finished_at, job.worker) == (
            "succeeded", 1, T0, "test-worker",
        )  # fmt: skip
    assert sorted(SEEN["keys"]) == sorted(f"job:{i}" for i in ids[:5])


def test_failures_are_retried_with_backoff_and_the_effect_key_is_stable(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    job_id = _enqueue(db, "test.flaky", {"fail_times": 2})
    worker = _worker(db, clock, quick_settings)
    worker.run(until_idle=True)
    job = _job(db, job_id)
    assert job.status == "retrying" and job.attempts == 1
    assert job.last_error is not None and job.last_error.startswith("ValueError: flaky failure 1")
    assert "Traceback" in job.last_error
    assert T0 <= job.run_at <= T0 + timedelta(seconds=0.5)
    # The failed attempt's write was rolled back with it.
    assert _actions(db) == []
    for _ in range(2):
        clock.set(clock.now() + timedelta(seconds=1))
        worker.run(until_idle=True)
    job = _job(db, job_id)
    assert (job.status, job.attempts) == ("succeeded", 3)
    assert _actions(db) == ["attempt 3"]
    assert SEEN["flaky"] == [(1, f"job:{job_id}"), (2, f"job:{job_id}"), (3, f"job:{job_id}")]


def test_out_of_attempts_give_up_bad_arguments_and_unknown_tasks(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    always = _enqueue(db, "test.flaky", {"fail_times": 99}, max_attempts=1)
    gave_up = _enqueue(db, "test.give_up")
    bad_args = _enqueue(db, "test.write", {"wrong": 1})
    unknown = _enqueue(db, "test.nobody-registers-this")
    report = _worker(db, clock, quick_settings).run(until_idle=True)
    assert report.dead == 3 and report.failed == 4
    assert _job(db, always).status == "dead"
    dead = _job(db, gave_up)
    assert (dead.status, dead.attempts) == ("dead", 1)
    assert dead.last_error == "GiveUp: the target is gone"
    wrong = _job(db, bad_args)
    assert wrong.status == "dead"
    assert (
        wrong.last_error is not None
        and "arguments do not fit task 'test.write'" in wrong.last_error
    )
    lost = _job(db, unknown)
    assert lost.status == "retrying"  # another worker (a newer deploy) may know it
    assert (
        lost.last_error is not None
        and "unknown task 'test.nobody-registers-this'" in lost.last_error
    )


def test_an_attempt_over_its_time_limit_fails_and_its_writes_roll_back(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    job_id = _enqueue(db, "test.slow")
    report = _worker(db, clock, quick_settings).run(until_idle=True)
    job = _job(db, job_id)
    assert job.status == "retrying"
    assert job.last_error == "TimeoutError: the attempt ran over 0.3 s"
    assert _actions(db) == []
    assert report.lost == 1  # the late attempt could not complete


def test_a_worker_that_lost_its_job_cannot_complete_it(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    job_id = _enqueue(db, "test.stolen")
    report = _worker(db, clock, quick_settings).run(until_idle=True)
    assert report.lost == 1 and report.succeeded == 0
    job = _job(db, job_id)
    assert (job.status, job.worker, job.attempts) == ("running", "thief", 2)
    assert _actions(db) == []


def test_stop_gives_back_claimed_jobs_that_never_started(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    ids = [_enqueue(db, "test.sleep", {"seconds": 0.4}) for _ in range(4)]
    worker = _worker(db, clock, quick_settings, concurrency=1, prefetch=3)
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _job(db, ids[0]).status != "running":
        time.sleep(0.02)
    worker.stop()
    statuses = [_job(db, i).status for i in ids]
    assert statuses[0] == "succeeded"  # the running one was allowed to finish
    assert statuses[1:].count("queued") >= 2
    assert worker.report.released >= 2
    assert all(
        _job(db, i).attempts == 0 for i, s in zip(ids, statuses, strict=True) if s == "queued"
    )


def test_once_runs_one_round(db: Database, clock: FixedClock, quick_settings: Settings) -> None:
    for i in range(5):
        _enqueue(db, "test.write", {"label": str(i)})
    report = _worker(db, clock, quick_settings, concurrency=2).run(once=True)
    assert report.succeeded == 2
    with db.unit_of_work(write=False) as session:
        waiting = session.scalar(select(func.count()).where(Job.status == "queued"))
    assert waiting == 3


# --- periodic ticks ------------------------------------------------------------------------


def test_periodic_ticks_are_enqueued_once_across_workers(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    first = _worker(db, clock, quick_settings, schedule=True, name="a")
    second = _worker(db, clock, quick_settings, schedule=True, name="b")
    first.run(until_idle=True)
    second.run(until_idle=True)
    with db.unit_of_work(write=False) as session:
        rows = session.execute(select(Job.task, Job.dedupe_key, Job.status, Job.run_at)).all()
    by_task = {r.task: r for r in rows}
    # One job per schedule (every capability's), whichever worker enqueued it.
    assert len(rows) == len(by_task) == len(periodic.schedules()), rows
    catch_up = by_task["points.catch_up"]
    assert catch_up.dedupe_key == f"periodic:points.catch_up:{T0.isoformat()}"
    assert catch_up.status == "succeeded" and catch_up.run_at == T0
    assert by_task["jobs.prune"].run_at == T0 - timedelta(minutes=43)  # 11:17, the last :17
    clock.set(T0 + timedelta(minutes=2, seconds=5))
    first.run(until_idle=True)
    with db.unit_of_work(write=False) as session:
        ticks = session.scalars(
            select(Job.run_at).where(Job.task == "points.catch_up").order_by(Job.run_at)
        ).all()
    assert ticks == [T0, T0 + timedelta(minutes=2)]  # the missed minute is not replayed


# --- the outbox ----------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[list[tuple[domain.DomainEvent, OutboxInfo, int]]]:
    calls: list[tuple[domain.DomainEvent, OutboxInfo, int]] = []

    def handle(ctx: JobContext, event: domain.DomainEvent, info: OutboxInfo) -> None:
        calls.append((event, info, ctx.job_id))
        _note(ctx, f"heard {info.id}")

    subscribers.subscribe(domain.OrderPaid, name="test-listener")(handle)
    subscribers.subscribe("review.posted", name="test-listener")(handle)
    subscribers.subscribe(domain.PointsReleased, name="test-backfill", include_backfill=True)(
        handle
    )
    yield calls
    for topic in (domain.OrderPaid, "review.posted", domain.PointsReleased):
        subscribers.unsubscribe(topic, name="test-listener")
    subscribers.unsubscribe(domain.PointsReleased, name="test-backfill")


def _member(db: Database) -> int:
    return add_member(db, "teo", "teo@example.com")


def test_outbox_rows_become_one_delivery_per_subscriber(
    db: Database, clock: FixedClock, quick_settings: Settings, listener: list[Any]
) -> None:
    member_id = _member(db)
    live, backfilled = False, True
    rows = [
        (domain.OrderPaid(event_id="e1", customer_id="teo", points_delta=120), live),
        (domain.OrderPaid(event_id="e0", customer_id="teo", points_delta=5), backfilled),
        (
            domain.EventProcessed(
                event_type="review.posted", event_id="e2", customer_id="teo", points_delta=50
            ),
            live,
        ),
        (domain.PointsReleased(points=7), backfilled),
        (
            domain.TierChanged(
                from_tier=None,
                to_tier="oro",
                direction="upgrade",
                qualifying_value=Decimal("1"),
                at=T0,
            ),
            live,
        ),
    ]
    with db.unit_of_work() as session:
        for event, backfill in rows:
            emit(session, event, member_id=member_id, now=T0, backfill=backfill)
        member = session.get(Member, member_id)
        assert member is not None
        login_links.queue_link_email(
            session, member, to="teo@example.com", subject="s", body="b", now=T0,
            expires_at=T0 + timedelta(minutes=15),
        )  # fmt: skip
    report = _worker(db, clock, quick_settings).run(until_idle=True)
    assert report.dispatched == 6  # the five above and the member's own enrolment (backfill)
    heard = sorted(((type(e).__name__, i.topic, i.backfill) for e, i, _ in listener))
    assert heard == [
        ("EventProcessed", "review.posted", False),
        ("OrderPaid", "order.paid", False),
        ("PointsReleased", "points.released", True),
    ]
    paid = next(e for e, i, _ in listener if i.topic == "order.paid")
    assert paid == domain.OrderPaid(event_id="e1", customer_id="teo", points_delta=120)
    info = next(i for _, i, _ in listener if i.topic == "order.paid")
    assert (info.member_id, info.version, info.created_at) == (member_id, 1, T0)
    with db.unit_of_work(write=False) as session:
        rows = session.execute(select(OutboxMessage.topic, OutboxMessage.processed_at)).all()
        keys = [
            k
            for k in session.scalars(
                select(Job.dedupe_key).where(
                    Job.task.in_([dispatch.DELIVER, dispatch.DELIVER_BACKFILL])
                )
            )
            if k is not None and k.endswith(("test-listener", "test-backfill"))
        ]  # capabilities (analytics, webhooks, ...) subscribe too
    # Every event row is processed; the sign-in e-mail is left to its own sender.
    assert {(t, p is None) for t, p in rows} == {
        ("member.enrolled", False), ("order.paid", False), ("review.posted", False),
        ("points.released", False), ("tier.changed", False), (login_links.LINK_TOPIC, True),
    }  # fmt: skip
    # A live row is a delivery of its own; backfilled rows go in one job per subscriber.
    assert sorted(keys) == sorted(
        f"outbox:{i.id}-{i.id}:test-backfill" if i.backfill else f"outbox:{i.id}:test-listener"
        for _, i, _ in listener
    )
    # The handler's writes committed with its delivery job.
    assert sorted(a for a in _actions(db) if a.startswith("heard")) == sorted(
        f"heard {i.id}" for _, i, _ in listener
    )
    # Dispatching again finds nothing new, and nothing is delivered twice.
    again = _worker(db, clock, quick_settings).run(until_idle=True)
    assert again.dispatched == 0 and len(listener) == 3


def _released(db: Database, member_id: int, points: list[int]) -> list[int]:
    """Backfilled ``points.released`` rows, one per entry of ``points``; their ids."""
    with db.unit_of_work() as session:
        for n in points:
            emit(session, domain.PointsReleased(points=n), member_id=member_id, now=T0,
                 backfill=True)  # fmt: skip
        session.flush()
        return list(
            session.scalars(
                select(OutboxMessage.id)
                .where(OutboxMessage.topic == domain.PointsReleased.TYPE)
                .order_by(OutboxMessage.id)
            )
        )


@contextlib.contextmanager
def _backfill_subscriber(name: str, handle: Any, **kw: Any) -> Iterator[None]:
    """``handle`` subscribed to backfilled ``points.released`` rows under ``name``, for the
    duration of the block."""
    subscribers.subscribe(domain.PointsReleased, name=name, include_backfill=True, **kw)(handle)
    try:
        yield
    finally:
        subscribers.unsubscribe(domain.PointsReleased, name=name)


def _delivery_jobs(db: Database, subscriber: str) -> list[Job]:
    with db.unit_of_work(write=False) as session:
        return [
            job
            for job in session.scalars(
                select(Job)
                .where(Job.task.in_([dispatch.DELIVER, dispatch.DELIVER_BACKFILL]))
                .order_by(Job.id)
            )
            if job.args.get("subscriber") == subscriber
        ]


def test_backfilled_history_reaches_a_subscriber_in_one_job_per_batch_in_order(
    db: Database, clock: FixedClock, quick_settings: Settings, listener: list[Any]
) -> None:
    member_id = _member(db)
    ids = _released(db, member_id, list(range(1, 13)))
    with db.unit_of_work() as session:  # dispatch batches of 5 rows (the enrolment's too)
        every = list(session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id)))
        assert len(every) == 13
        assert [dispatch.dispatch(session, now=T0, limit=5) for _ in range(4)] == [5, 5, 3, 0]
    _worker(db, clock, quick_settings).run(until_idle=True)
    jobs = _delivery_jobs(db, "test-backfill")
    assert [(j.task, j.status) for j in jobs] == [(dispatch.DELIVER_BACKFILL, "succeeded")] * 3
    assert [j.args["outbox_ids"] for j in jobs] == [
        [i for i in every[n : n + 5] if i in ids] for n in (0, 5, 10)
    ]
    # Every row was heard once, each batch within its job and in id order there (jobs run
    # concurrently: no order between them, as between any deliveries).
    assert sorted(i.id for _, i, _ in listener) == ids
    assert sorted(e.points for e, _, _ in listener) == list(range(1, 13))
    assert all(i.backfill for _, i, _ in listener)
    for job in jobs:
        assert [i.id for _, i, job_id in listener if job_id == job.id] == job.args["outbox_ids"]
    assert sorted(a for a in _actions(db) if a.startswith("heard")) == sorted(
        f"heard {i}" for i in ids
    )


def test_a_backfilled_row_that_fails_gets_a_job_of_its_own_and_the_others_are_delivered(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    heard: list[int] = []

    def handle(ctx: JobContext, event: domain.PointsReleased, info: OutboxInfo) -> None:
        _note(ctx, f"heard {info.id}")  # rolled back with the row when the handler fails
        if event.points == 13:
            raise ValueError("unlucky")
        heard.append(info.id)

    with _backfill_subscriber("test-picky", handle):
        ids = _released(db, _member(db), [1, 13, 2])
        _worker(db, clock, quick_settings).run(until_idle=True)
    assert heard == [ids[0], ids[2]]
    assert [a for a in _actions(db) if a.startswith("heard")] == [
        f"heard {ids[0]}", f"heard {ids[2]}"
    ]  # fmt: skip
    batch, single = _delivery_jobs(db, "test-picky")
    assert (batch.task, batch.status, batch.args["outbox_ids"]) == (
        dispatch.DELIVER_BACKFILL, "succeeded", ids
    )  # fmt: skip
    # The failing row is retried on its own, with the usual attempts, and ends visible.
    assert (single.task, single.args["outbox_id"], single.dedupe_key) == (
        dispatch.DELIVER, ids[1], f"outbox:{ids[1]}:test-picky"
    )  # fmt: skip
    assert single.status == "retrying" and "unlucky" in (single.last_error or "")


@pytest.mark.parametrize("many_fails", [False, True])
def test_a_subscriber_may_take_a_backfilled_batch_at_once(
    db: Database, clock: FixedClock, quick_settings: Settings, many_fails: bool
) -> None:
    batches: list[list[int]] = []
    singles: list[int] = []

    def one(ctx: JobContext, event: domain.PointsReleased, info: OutboxInfo) -> None:
        singles.append(info.id)

    def many(ctx: JobContext, items: list[tuple[domain.DomainEvent, OutboxInfo]]) -> None:
        _note(ctx, "batch")  # rolled back with the batch when it fails
        batches.append([info.id for _, info in items])
        if many_fails:
            raise RuntimeError("the batch handler broke")

    with _backfill_subscriber("test-many", one, many=many):
        ids = _released(db, _member(db), [1, 2, 3])
        _worker(db, clock, quick_settings).run(until_idle=True)
    assert batches == [ids]
    # A batch handler that fails leaves nothing behind, and the rows go one by one instead.
    assert singles == (ids if many_fails else [])
    assert ("batch" in _actions(db)) is not many_fails
    [job] = _delivery_jobs(db, "test-many")
    assert (job.task, job.status) == (dispatch.DELIVER_BACKFILL, "succeeded")


def test_a_backfill_delivery_with_garbled_arguments_gives_up(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    garbled = [
        _enqueue(db, dispatch.DELIVER_BACKFILL, args)
        for args in (
            {"outbox_ids": "1,2", "subscriber": "x"},
            {"outbox_ids": [1, None], "subscriber": "x"},
            {"outbox_ids": [0], "subscriber": "x"},
            {"outbox_ids": [1], "subscriber": 5},
        )
    ]
    gone = _enqueue(db, dispatch.DELIVER_BACKFILL, {"outbox_ids": [10**9], "subscriber": "x"})
    _worker(db, clock, quick_settings, dispatch=False).run(until_idle=True)
    assert [_job(db, j).status for j in garbled] == ["dead"] * 4
    assert _job(db, gone).status == "succeeded"


def test_a_delivery_for_a_gone_subscriber_or_row_succeeds_quietly(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    member_id = _member(db)
    with db.unit_of_work() as session:
        emit(session, domain.PointsExpired(points=3), member_id=member_id, now=T0, backfill=False)
        session.flush()
        outbox_id = session.scalar(select(OutboxMessage.id))
    assert outbox_id is not None
    gone_sub = _enqueue(db, dispatch.DELIVER, {"outbox_id": outbox_id, "subscriber": "nobody"})
    gone_row = _enqueue(db, dispatch.DELIVER, {"outbox_id": 10**9, "subscriber": "nobody"})
    garbled = _enqueue(db, dispatch.DELIVER, {"outbox_id": None, "subscriber": "nobody"})
    _worker(db, clock, quick_settings, dispatch=False).run(until_idle=True)
    assert _job(db, gone_sub).status == "succeeded"
    assert _job(db, gone_row).status == "succeeded"
    assert _job(db, garbled).status == "dead"


def test_delivery_keys_stay_within_the_column() -> None:
    assert dispatch.delivery_key(5, "webhooks") == "outbox:5:webhooks"
    long = dispatch.delivery_key(5, "x" * 300)
    assert len(long) <= queue.MAX_DEDUPE_KEY and long.startswith("outbox:5:")
    assert dispatch.delivery_key(5, "rollups", last=9) == "outbox:5-9:rollups"
    long = dispatch.delivery_key(2**62, "x" * 300, last=2**62 + 499)
    assert len(long) <= queue.MAX_DEDUPE_KEY and long.startswith(f"outbox:{2**62}-")


# --- background thread ---------------------------------------------------------------------


def test_a_started_worker_picks_up_new_jobs_while_running(
    db: Database, clock: FixedClock, quick_settings: Settings
) -> None:
    worker = _worker(db, clock, quick_settings)
    worker.start()
    try:
        time.sleep(0.1)
        job_id = _enqueue(db, "test.write", {"label": "late"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _job(db, job_id).status != "succeeded":
            time.sleep(0.02)
        assert _job(db, job_id).status == "succeeded"
    finally:
        worker.stop()
    assert not any(t.name.startswith("lealta-job") for t in threading.enumerate() if t.is_alive())


def test_a_long_job_keeps_its_lease_while_another_worker_watches(
    db: Database, quick_settings: Settings
) -> None:
    """The lease (1 s) is shorter than the job (2 s): the running worker renews it, so the
    other worker, which takes back expired leases, never steals the job."""
    clock = SystemClock()
    with db.unit_of_work() as session:
        job_id = queue.enqueue(session, "test.sleep", {"seconds": 2.0}, now=clock.now())
    runner = _worker(db, clock, quick_settings, name="runner", lease=1.0)
    watcher = _worker(db, clock, quick_settings, name="watcher", lease=1.0, queues=["none"])
    watcher._recovery_every = 0.1
    runner.start()
    watcher.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _job(db, job_id).status != "succeeded":
            time.sleep(0.05)
    finally:
        runner.stop()
        watcher.stop()
    job = _job(db, job_id)
    assert (job.status, job.attempts, job.worker) == ("succeeded", 1, "runner")
    assert watcher.report.recovered == 0 and runner.report.lost == 0
