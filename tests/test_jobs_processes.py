"""Worker *processes* (``lealta worker``) on PostgreSQL.

- Kill test: a worker is SIGKILLed in the middle of two jobs whose effects (points credited,
  then a coupon reward redeemed) are keyed on the job's effect key, one that commits its
  effect before it is killed and one killed before its transaction commits. A second worker
  takes both jobs back when their leases expire and finishes them: each member ends with
  exactly one credit and one coupon, and the ledger verifies.
- Two workers drain 10,000 jobs; every execution is recorded outside the job's transaction,
  and no job ran twice.

The tasks live in this module, which the worker processes import with ``--import``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from sqlalchemy import func, select, text

from lealta.demo.programme import DEMO_PROGRAMME_TEXT
from lealta.jobs import queue
from lealta.jobs.queue import NewJob
from lealta.jobs.tasks import JobContext, task
from lealta.kit.db import Database
from lealta.kit.idempotency import run_once
from lealta.ledger import operations
from lealta.ledger import service as ledger
from lealta.ledger.schemas import AdjustmentIn
from lealta.members import service as members
from lealta.models import Coupon, Job, LedgerEntry, Member
from lealta.programme import service as programmes
from lealta.rewards import service as rewards
from tests.factories import add_member

pytestmark = pytest.mark.postgres_only

ROOT = Path(__file__).resolve().parents[1]
LEALTA = Path(sys.executable).parent / "lealta"
MARKERS = "LEALTA_TEST_JOB_MARKERS"
EXECUTIONS = "test_job_executions"
AWARD = 1000


# --- tasks run by the worker processes -----------------------------------------------------


def _award_and_redeem(ctx: JobContext, session: Any, external_id: str) -> None:
    """Credit points and redeem a coupon reward with them, once per job (effect key)."""
    programme = programmes.current(session, now=ctx.now)

    def effect() -> tuple[int, dict[str, Any]]:
        operations.adjust(
            session, external_id, AdjustmentIn(points=AWARD, reason="Job award"),
            actor="job", now=ctx.now, programme=programme,
        )  # fmt: skip
        member = members.get(session, external_id)
        done = rewards.redeem(
            session, programme, member, "coupon-5", now=ctx.now, actor="job"
        ).redemption
        return 201, {"redemption": done.id}

    run_once(
        session, scope="job-award", key=ctx.effect_key, payload={"member": external_id},
        now=ctx.now, effect=effect,
    )  # fmt: skip


def _mark(ctx: JobContext) -> None:
    folder = os.environ.get(MARKERS)
    if folder:
        (Path(folder) / f"{ctx.job_id}-{ctx.attempt}").touch()


@task("test.award_then_pause", transactional=False, max_attempts=3)
def award_then_pause(ctx: JobContext, *, external_id: str, pause: float) -> None:
    """The effect commits in its own transaction, then the first attempt pauses (and is
    killed)."""
    with ctx.db.unit_of_work() as session:
        _award_and_redeem(ctx, session, external_id)
    _mark(ctx)
    if ctx.attempt == 1:
        time.sleep(pause)


@task("test.award_in_job", max_attempts=3)
def award_in_job(ctx: JobContext, *, external_id: str, pause: float) -> None:
    """The effect is written in the job's transaction, which is open when the kill comes."""
    session = ctx.require_session()
    _award_and_redeem(ctx, session, external_id)
    session.flush()
    _mark(ctx)
    if ctx.attempt == 1:
        time.sleep(pause)


_recorders = threading.local()


@task("test.record", transactional=False)
def record(ctx: JobContext, *, n: int) -> None:
    """Record this execution on a connection of its own, committed at once, whatever becomes
    of the job's own transactions: a second execution of a job would show as a second row.
    (``synchronous_commit`` is off for this bookkeeping connection only.)"""
    conn = getattr(_recorders, "conn", None)
    if conn is None:
        url = ctx.db.url.replace("postgresql+psycopg://", "postgresql://")
        conn = _recorders.conn = psycopg.connect(url, autocommit=True)
        conn.execute("SET synchronous_commit = off")
    conn.execute(
        f"INSERT INTO {EXECUTIONS} (job_id, attempt, worker) VALUES (%s, %s, %s)",
        (ctx.job_id, ctx.attempt, str(os.getpid())),
    )


# --- worker processes ----------------------------------------------------------------------


class WorkerProcess:
    """``lealta worker`` as a child process, its log read on a thread."""

    def __init__(self, database_url: str, *args: str, **env: str) -> None:
        environment = {
            **os.environ,
            "LEALTA_DATABASE_URL": database_url.replace("postgresql+psycopg://", "postgresql://"),
            "LEALTA_LOG_FORMAT": "json",
            "LEALTA_LOG_LEVEL": "INFO",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        environment.pop("LEALTA_TEST_DATABASE_URL", None)
        self.process = subprocess.Popen(
            [str(LEALTA), "worker", "--import", __name__, *args],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_started(self, seconds: float = 60.0) -> None:
        assert _until(lambda: any("jobs_worker_started" in x for x in self.lines), seconds), (
            self.log()
        )

    def log(self) -> str:
        return "".join(self.lines[-40:])

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, seconds: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(seconds)
        self._reader.join(5)
        return code


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


def _until(check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _job(db: Database, job_id: int) -> Job:
    with db.unit_of_work(write=False) as session:
        return queue.get(session, job_id)


# --- the kill test -------------------------------------------------------------------------


def test_a_killed_workers_jobs_finish_elsewhere_without_double_effects(
    db: Database, database_url: str, tmp_path: Path, processes: list[WorkerProcess]
) -> None:
    now = datetime.now(UTC)
    with db.unit_of_work() as session:
        programmes.apply(
            session, programmes.validate(yaml.safe_load(DEMO_PROGRAMME_TEXT)), actor="test",
            now=now - timedelta(days=1),
        )  # fmt: skip
    for name in ("ana", "ben"):
        add_member(db, name, f"{name}@example.com")
    with db.unit_of_work() as session:
        committed = queue.enqueue(
            session, "test.award_then_pause", {"external_id": "ana", "pause": 600}, now=now
        )
        in_flight = queue.enqueue(
            session, "test.award_in_job", {"external_id": "ben", "pause": 600}, now=now
        )
    env = {MARKERS: str(tmp_path), "LEALTA_JOB_LEASE_SECONDS": "3"}

    first = WorkerProcess(database_url, "--concurrency", "2", **env)
    processes.append(first)
    assert _until(
        lambda: (tmp_path / f"{committed}-1").exists() and (tmp_path / f"{in_flight}-1").exists(),
        60,
    ), first.log()
    first.kill()  # SIGKILL: no clean-up of any kind
    for job_id in (committed, in_flight):
        job = _job(db, job_id)
        assert (job.status, job.attempts) == ("running", 1)
    # The effect of the first job committed; the second one's died with its transaction.
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Coupon)) == 1

    second = WorkerProcess(database_url, "--concurrency", "2", **env)
    processes.append(second)
    assert _until(
        lambda: all(_job(db, j).status == "succeeded" for j in (committed, in_flight)), 60
    ), second.log()
    assert second.stop() == 0, second.log()

    for job_id in (committed, in_flight):
        job = _job(db, job_id)
        assert job.attempts == 2
        assert job.last_error is not None and job.last_error.startswith("lease expired: worker")
        assert (tmp_path / f"{job_id}-2").exists()
    with db.unit_of_work(write=False) as session:
        for name in ("ana", "ben"):
            member = session.scalars(select(Member).where(Member.external_id == name)).one()
            awards = session.scalars(
                select(LedgerEntry.points).where(
                    LedgerEntry.member_id == member.id, LedgerEntry.reason == "Job award"
                )
            ).all()
            coupons = session.scalars(
                select(Coupon.code).where(Coupon.member_id == member.id)
            ).all()
            assert (list(awards), len(coupons)) == ([AWARD], 1), name
        checked, problems = ledger.verify(session)
        assert checked >= 2 and problems == []


# --- two workers, 10,000 jobs --------------------------------------------------------------


@pytest.fixture
def executions(db: Database) -> Iterator[None]:
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {EXECUTIONS}"))
        conn.execute(
            text(f"CREATE TABLE {EXECUTIONS} (job_id bigint NOT NULL, attempt int, worker text)")
        )
    yield
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {EXECUTIONS}"))


JOBS = 10_000


def test_two_workers_drain_ten_thousand_jobs_and_none_runs_twice(
    db: Database, database_url: str, executions: None, processes: list[WorkerProcess]
) -> None:
    workers = [
        WorkerProcess(database_url, "--concurrency", "4", "--prefetch", "32") for _ in range(2)
    ]
    processes.extend(workers)
    for worker in workers:
        worker.wait_started()
    started = time.monotonic()
    with db.unit_of_work() as session:
        queue.enqueue_many(
            session, [NewJob("test.record", {"n": i}) for i in range(JOBS)], now=datetime.now(UTC)
        )

    def done() -> bool:
        with db.unit_of_work(write=False) as session:
            left = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.task == "test.record", Job.status != "succeeded")
            )
        return left == 0

    assert _until(done, 120), [w.log() for w in workers]
    elapsed = time.monotonic() - started
    codes = [w.stop() for w in workers]
    assert codes == [0, 0], [w.log() for w in workers]
    with db.engine.connect() as conn:
        total, distinct, attempts = conn.execute(
            text(f"SELECT count(*), count(DISTINCT job_id), max(attempt) FROM {EXECUTIONS}")
        ).one()
        per_worker = dict(
            conn.execute(text(f"SELECT worker, count(*) FROM {EXECUTIONS} GROUP BY worker")).all()
        )
    assert (total, distinct, attempts) == (JOBS, JOBS, 1)
    pids = {str(w.process.pid) for w in workers}
    assert set(per_worker) == pids, per_worker  # both took part
    print(
        f"\n{JOBS} jobs by 2 workers in {elapsed:.1f} s ({JOBS / elapsed:.0f} jobs/s): {per_worker}"
    )
