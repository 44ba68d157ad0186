"""(xi) Jobs per second through the real queue on PostgreSQL, with one and with two workers.

Each run: a fresh throwaway database, migrated; ``N`` ``lealta worker`` processes started and
waited for; then ``jobs`` no-op jobs enqueued in one transaction; the clock runs from that
commit until every job has succeeded (polled every 20 ms). Two kinds of no-op, so the figure
is the queue's own cost: ``bench.noop`` is transactional (each job runs in a unit of work that
also completes it: one commit per job), ``bench.noop_plain`` is not (completions are batched
by the worker). The worker processes import this module (``--import bench.jobs``).

Run alone: ``python -m bench --only jobs``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from bench.pg import throwaway_database
from bench.report import rate, times
from bench.server import LEALTA, ROOT, lealta_env
from lealta.jobs import queue
from lealta.jobs.queue import NewJob
from lealta.jobs.tasks import JobContext, task
from lealta.kit.db import Database
from lealta.kit.migrate import upgrade
from lealta.models import Job

if TYPE_CHECKING:
    from bench.runner import Run

NOOP = "bench.noop"
NOOP_PLAIN = "bench.noop_plain"


@task(NOOP)
def noop(ctx: JobContext, *, n: int) -> None:
    """Nothing, in a unit of work: what is measured is the queue around it."""


@task(NOOP_PLAIN, transactional=False)
def noop_plain(ctx: JobContext, *, n: int) -> None:
    """Nothing, outside any transaction."""


@dataclass(frozen=True, slots=True)
class JobsResult:
    workers: int
    jobs: int
    seconds: float
    task: str = NOOP

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


class WorkerFailed(RuntimeError):
    pass


def _start(url: str, concurrency: int, prefetch: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(LEALTA), "worker", "--import", "bench.jobs",
            "--concurrency", str(concurrency), "--prefetch", str(prefetch),
        ],
        cwd=ROOT,
        env={**lealta_env(url, PYTHONPATH=str(ROOT)), "LEALTA_LOG_LEVEL": "INFO"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _wait_started(process: subprocess.Popen[str], seconds: float = 60.0) -> None:
    assert process.stderr is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if "jobs_worker_started" in line:
            # Keep reading its log so a chatty worker never blocks on a full pipe.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return
        if not line and process.poll() is not None:
            break
    raise WorkerFailed(f"`lealta worker` did not start (exit {process.poll()})")


def drain(
    url: str,
    *,
    workers: int,
    jobs: int,
    concurrency: int = 4,
    prefetch: int = 32,
    task_name: str = NOOP,
) -> JobsResult:
    """Time ``workers`` worker processes draining ``jobs`` no-op jobs on database ``url``."""
    upgrade(url)
    processes = [_start(url, concurrency, prefetch) for _ in range(workers)]
    database = Database(url, pool_size=2, max_overflow=0)
    try:
        for process in processes:
            _wait_started(process)
        with database.unit_of_work() as session:
            queue.enqueue_many(
                session,
                [NewJob(task_name, {"n": i}) for i in range(jobs)],
                now=datetime.now(UTC),
            )
        started = time.perf_counter()
        while True:
            with database.unit_of_work(write=False) as session:
                left = session.scalar(
                    select(func.count()).where(Job.task == task_name, Job.status != "succeeded")
                )
            if not left:
                break
            if any(p.poll() is not None for p in processes):
                raise WorkerFailed("a worker exited while draining")
            time.sleep(0.02)
        return JobsResult(workers, jobs, time.perf_counter() - started, task_name)
    finally:
        database.dispose()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


KINDS = ((NOOP, "transactional"), (NOOP_PLAIN, "non-transactional"))


def jobs_figure(run: Run, admin: str, tps: float, *, jobs: int = 5_000) -> None:
    """(xi) no-op jobs/s with one and two `lealta worker` processes, against pgbench."""
    for task_name, kind in KINDS:
        results: list[JobsResult] = []
        for workers in (1, 2):
            name = run.database(f"jobs{workers}")
            run.step(f"(xi) {jobs:,} {kind} no-op jobs, {workers} `lealta worker`, on {name}")
            with throwaway_database(admin, name) as url:
                try:
                    results.append(drain(url, workers=workers, jobs=jobs, task_name=task_name))
                except WorkerFailed as exc:
                    run.errors.append(f"(xi) {kind} jobs with {workers} worker(s): {exc}")
                    run.report.add(f"(xi) {kind} jobs/s, {workers} worker(s)", "n/a (failed)")
                    break
        for result in results:
            run.report.add(
                f"(xi) {kind} no-op jobs, {result.workers} worker process(es) x 4 threads",
                f"{rate(result.rate, 'jobs/s')} ({result.jobs:,} in {result.seconds:.1f} s)",
                f"pgbench {rate(tps, 'tps')}" if tps else "—",
                times(result.rate / tps) if tps else "—",
            )
        if len(results) == 2 and results[0].rate:
            one, two = results
            run.report.add(
                f"(xi) {kind} jobs/s, 2 workers vs 1",
                rate(two.rate, "jobs/s"),
                rate(one.rate, "jobs/s"),
                times(two.rate / one.rate),
            )


NOTE = (
    "(xi) on a throwaway database per run: N `lealta worker --concurrency 4 --prefetch 32`"
    " processes started first, then {jobs:,} no-op jobs enqueued in one transaction; from that"
    " commit to the last job succeeded. Transactional: each job claimed in a batch and run in"
    " its own unit of work that also completes it (a commit per job); non-transactional: run"
    " outside a transaction, completions batched by the worker. The workers share the cores"
    " with PostgreSQL and the poller."
)


def note(jobs: int = 5_000) -> str:
    return NOTE.format(jobs=jobs)


if __name__ == "__main__":  # pragma: no cover - quick manual runs
    import sys

    url = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    for task_name, _kind in KINDS:
        for n in (1, 2):
            r = drain(url, workers=n, jobs=count, task_name=task_name,
                      concurrency=int(os.environ.get("C", "4")),
                      prefetch=int(os.environ.get("P", "32")))  # fmt: skip
            print(f"{task_name}, {n} worker(s): {r.rate:.0f} jobs/s ({r.seconds:.1f} s)")
