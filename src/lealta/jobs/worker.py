"""The worker: claims due jobs and runs them on a pool of threads.

One :class:`Worker` per process (``lealta worker``, or a thread inside ``lealta run`` on the
embedded SQLite default). Its loop, every ``poll`` seconds or as soon as a thread frees up:

1. enqueues the due ticks of periodic schedules (:mod:`lealta.jobs.periodic`);
2. hands new outbox rows to their subscribers (:mod:`lealta.jobs.dispatch`);
3. takes back jobs of dead workers whose lease ran out (:func:`~lealta.jobs.queue.recover_expired`);
4. renews the leases of the jobs it runs, and fails those past their task's time limit;
5. claims as many due jobs as it has free threads, plus ``prefetch`` (a read first, so an
   idle worker writes nothing) and runs each one: a transactional task's writes and its
   completion commit together; a non-transactional task's completions are batched by the
   loop; an exception records a failed attempt (retry with backoff, or dead).

Any number of workers, on any number of machines, share the work on PostgreSQL: claims use
``FOR UPDATE SKIP LOCKED`` and a job is completed only by the worker holding its current
attempt. On SQLite, every write takes the file's one lock, so one worker per database is the
sensible number (the in-process one).

:meth:`Worker.stop` (SIGTERM/SIGINT for ``lealta worker``) stops claiming, gives back the jobs
claimed but not started, and waits up to ``shutdown_timeout`` seconds for the running ones;
any still running then are picked up elsewhere when their lease expires.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import queue as stdlib_queue
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Histogram

from lealta.config import Settings
from lealta.jobs import dispatch as dispatcher
from lealta.jobs import queue, tasks
from lealta.jobs.periodic import Scheduler
from lealta.jobs.queue import Claimed
from lealta.jobs.tasks import Backoff, GiveUp, JobContext, Task
from lealta.kit.clock import Clock
from lealta.kit.db import Database
from lealta.kit.logging import get_logger

log = get_logger("lealta.jobs.worker")

TASK_MODULES: tuple[str, ...] = (
    "lealta.jobs.periodic",
    "lealta.jobs.dispatch",
    "lealta.analytics.clv_jobs",
    "lealta.simulator.runs",
    "lealta.notify.tasks",
    "lealta.webhooks.tasks",
    "lealta.privacy.tasks",
    "lealta.analytics.rollups",
    "lealta.bulk.tasks",
    "lealta.plans.tasks",
    "lealta.segments.tasks",
    "lealta.referrals.tasks",
    "lealta.gamification.tasks",
    "lealta.workflows.tasks",
    "lealta.campaigns.tasks",
)
"""Modules that register tasks and outbox subscribers, imported by every worker. A capability
with background work (notifications, webhooks, …) adds its module here."""

COMPLETION_BATCH = 32
"""Finished non-transactional attempts that wake the loop to complete them together."""

DISPATCH_BATCHES_PER_ROUND = 10
"""Outbox batches handed out per loop round before claiming jobs again."""

ATTEMPTS = Counter(
    "lealta_job_attempts_total", "Job attempts by task and outcome", ["task", "outcome"]
)
DURATION = Histogram("lealta_job_seconds", "Duration of job attempts", ["task"])


def load_tasks(extra: Sequence[str] = ()) -> None:
    """Import :data:`TASK_MODULES` and ``extra`` modules, registering their tasks."""
    for name in (*TASK_MODULES, *extra):
        importlib.import_module(name)


def default_name() -> str:
    """``host:pid:random``: unique per worker, readable in the console."""
    return f"{socket.gethostname()[:150]}:{os.getpid()}:{secrets.token_hex(3)}"


class _LeaseLost(Exception):
    pass


@dataclass(slots=True)
class _Held:
    job: Claimed
    lease_until: datetime
    task: Task | None
    started: float | None = None
    timed_out: bool = False


@dataclass(slots=True)
class WorkerReport:
    """What a worker did since it started."""

    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    lost: int = 0
    released: int = 0
    dispatched: int = 0
    ticks: int = 0
    recovered: int = 0
    errors: list[str] = field(default_factory=list)


class Worker:
    """Runs jobs from the queue until stopped. See the module documentation."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        settings: Settings,
        name: str | None = None,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        poll: float | None = None,
        lease: float | None = None,
        prefetch: int = 0,
        schedule: bool = True,
        dispatch: bool = True,
        shutdown_timeout: float = 30.0,
        modules: Sequence[str] = (),
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.name = (name or default_name())[:200]
        self.concurrency = max(1, concurrency or settings.worker_concurrency)
        self.queues = list(queues) if queues else None
        self.poll = poll if poll is not None else settings.worker_poll_seconds
        self.lease = timedelta(seconds=lease if lease is not None else settings.job_lease_seconds)
        self.prefetch = max(0, prefetch)
        self._refill = max(1, self.prefetch // 2)
        self.schedule = schedule
        self.dispatch = dispatch
        self.shutdown_timeout = shutdown_timeout
        self.report = WorkerReport()
        self._modules = tuple(modules)
        self._scheduler = Scheduler()
        self._held: dict[int, _Held] = {}
        self._done: list[tuple[int, int, str]] = []
        self._lock = threading.Lock()
        self._inbox: stdlib_queue.SimpleQueue[_Held | None] = stdlib_queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_recovery = 0.0
        self._last_dispatch = 0.0
        self._dispatch_backlog = False
        self._claim_backlog = False
        self._recovery_every = max(1.0, min(self.lease.total_seconds() / 4, 15.0))

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`run` on a daemon thread (the in-process worker of ``lealta run``)."""
        if self._thread is not None:
            raise RuntimeError("worker already started")
        self._thread = threading.Thread(target=self._supervise, name=f"lealta-worker-{self.name}")
        self._thread.daemon = True
        self._thread.start()

    def _supervise(self) -> None:
        """A background worker's loop: an unexpected error of the loop itself (a job's errors
        are recorded on the job) restarts it after a pause, so the process is never left
        without its worker."""
        while not self._stopping.is_set():
            try:
                self.run()
                return
            except Exception:
                with contextlib.suppress(Exception):
                    log.error("jobs_worker_crashed", worker=self.name, exc_info=True)
                self._stopping.wait(max(1.0, self.poll * 5))

    def request_stop(self) -> None:
        """Ask the loop to stop (safe from a signal handler or another thread)."""
        self._stopping.set()
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop and wait for the loop started by :meth:`start` to finish."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(self.shutdown_timeout + 5.0 if timeout is None else timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self, *, until_idle: bool = False, once: bool = False) -> WorkerReport:
        """The loop, in the calling thread, until :meth:`request_stop`. ``until_idle``: return
        when no job is due, none runs and the outbox is empty; ``once``: one round of claims,
        then return when those jobs are done."""
        load_tasks(self._modules)
        self._start_threads()
        try:
            log.info(
                "jobs_worker_started",
                worker=self.name,
                concurrency=self.concurrency,
                queues=self.queues or "all",
                tasks=len(tasks.registered()),
            )
            while not self._stopping.is_set():
                now = self.clock.now()
                moved = self._housekeeping(now)
                held = self._held_count()
                free = self.concurrency + self.prefetch - held
                # Claim at once for an idle thread; top up prefetched jobs in batches.
                wanted = free > 0 and (held < self.concurrency or free >= self._refill)
                claimed = self._claim(now, free) if wanted else 0
                if once:
                    self._wait_until_drained()
                    break
                if until_idle and not claimed and not moved and not self._busy():
                    if not self._anything_due():
                        break
                    continue
                if moved:
                    continue  # more outbox rows are likely waiting
                # Wait for a thread to free up (a finishing job sets the event) or for the
                # next poll, whichever comes first.
                self._wake.wait(self.poll)
                self._wake.clear()
        finally:
            self._shutdown()
        log.info("jobs_worker_stopped", worker=self.name, succeeded=self.report.succeeded)
        return self.report

    def _busy(self) -> bool:
        with self._lock:
            return bool(self._held or self._done)

    def _held_count(self) -> int:
        with self._lock:
            return len(self._held)

    def _wait_until_drained(self) -> None:
        while self._busy() and not self._stopping.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            self._housekeeping(self.clock.now(), background=False)

    def _start_threads(self) -> None:
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._thread_loop, name=f"lealta-job-{i}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _thread_loop(self) -> None:
        while True:
            held = self._inbox.get()
            if held is None:
                return
            try:
                self._execute(held)
            except BaseException:  # a thread must survive whatever a job does
                with contextlib.suppress(Exception):
                    log.error("job_thread_error", worker=self.name, exc_info=True)

    def _shutdown(self) -> None:
        # Jobs claimed but not started go back to the queue at once.
        waiting: list[int] = []
        while True:
            try:
                held = self._inbox.get_nowait()
            except stdlib_queue.Empty:
                break
            if held is not None:
                waiting.append(held.job.id)
                with self._lock:
                    self._held.pop(held.job.id, None)
        if waiting:
            try:
                with self.db.unit_of_work() as session:
                    self.report.released += queue.release(session, waiting, worker=self.name)
            except Exception:
                log.error("jobs_release_failed", worker=self.name, exc_info=True)
        for _ in self._threads:
            self._inbox.put(None)
        deadline = time.monotonic() + self.shutdown_timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._guard("complete", lambda: self._flush_done(self.clock.now()))
        still = [t for t in self._threads if t.is_alive()]
        if still:
            with self._lock:
                running = sorted(self._held)
            log.warning(
                "jobs_abandoned_at_shutdown",
                worker=self.name,
                jobs=running,
                note="their leases expire and other workers run them again",
            )
        self._threads.clear()

    # --- the loop's steps ----------------------------------------------------------------

    def _housekeeping(self, now: datetime, *, background: bool = True) -> int:
        """Schedules, outbox, expired leases, lease renewal, time limits. Returns how many
        outbox rows were handed out (more may be waiting)."""
        moved = 0
        self._guard("complete", lambda: self._flush_done(now))
        if background and self.schedule:
            self._guard("schedule", lambda: self._tick(now))
        if (
            background
            and self.dispatch
            and (self._dispatch_backlog or time.monotonic() - self._last_dispatch >= self.poll)
        ):
            self._last_dispatch = time.monotonic()
            moved = self._guard("dispatch", lambda: self._dispatch(now)) or 0
            self._dispatch_backlog = moved > 0
        if background and time.monotonic() - self._last_recovery >= self._recovery_every:
            self._last_recovery = time.monotonic()
            self._guard("recover", lambda: self._recover(now))
        self._guard("renew", lambda: self._renew(now))
        self._guard("timeouts", lambda: self._check_time_limits(now))
        return moved

    def _guard(self, step: str, action: Any) -> Any:
        """Run one step; a failure (the database away) is logged and retried next round."""
        try:
            return action()
        except Exception as exc:
            log.error("jobs_worker_step_failed", worker=self.name, step=step, exc_info=True)
            self.report.errors.append(f"{step}: {type(exc).__name__}: {exc}"[:500])
            del self.report.errors[:-20]
            return None

    def _flush_done(self, now: datetime) -> None:
        """Complete the finished attempts of non-transactional tasks, in one statement."""
        with self._lock:
            done, self._done = self._done, []
        if not done:
            return
        try:
            with self.db.unit_of_work() as session:
                kept = queue.complete_many(
                    session, [(j, a) for j, a, _ in done], worker=self.name, now=now
                )
        except Exception:
            with self._lock:
                self._done[:0] = done  # try again next round; the leases still hold
            raise
        for job_id, _attempt, task_name in done:
            if job_id in kept:
                self.report.succeeded += 1
                ATTEMPTS.labels(task_name, "succeeded").inc()
            else:
                self.report.lost += 1
                ATTEMPTS.labels(task_name, "lost").inc()
                log.warning("job_lost_before_completion", worker=self.name, job=job_id)

    def _tick(self, now: datetime) -> None:
        self.report.ticks += self._scheduler.enqueue_due(self.db, now)

    def _dispatch(self, now: datetime) -> int:
        moved = 0
        for _ in range(DISPATCH_BATCHES_PER_ROUND):
            with self.db.unit_of_work(write=False, autocommit=True) as session:
                if not dispatcher.has_pending(session):
                    break
            with self.db.unit_of_work() as session:
                batch = dispatcher.dispatch(session, now=now)
            moved += batch
            if batch < dispatcher.BATCH:
                break
        self.report.dispatched += moved
        return moved

    def _recover(self, now: datetime) -> None:
        with self.db.unit_of_work(write=False, autocommit=True) as session:
            if not queue.has_expired(session, now=now):
                return
        with self.db.unit_of_work() as session:
            recovered = queue.recover_expired(session, now=now, exclude_worker=self.name)
        if recovered:
            self.report.recovered += recovered
            log.warning("jobs_leases_expired", worker=self.name, recovered=recovered)

    def _renew(self, now: datetime) -> None:
        margin = self.lease * 2 / 3
        with self._lock:
            due = [
                h for h in self._held.values() if not h.timed_out and h.lease_until - now < margin
            ]
        if not due:
            return
        with self.db.unit_of_work() as session:
            kept = queue.renew(
                session, [h.job.id for h in due], worker=self.name, now=now, lease=self.lease
            )
        for held in due:
            if held.job.id in kept:
                held.lease_until = now + self.lease
            else:
                held.timed_out = True  # lost: another worker took it back; do not renew
                log.warning("job_lease_lost", worker=self.name, job=held.job.id)

    def _check_time_limits(self, now: datetime) -> None:
        clock = time.monotonic()
        with self._lock:
            late = [
                h
                for h in self._held.values()
                if h.started is not None
                and not h.timed_out
                and clock - h.started > (h.task.timeout if h.task else tasks.DEFAULT_TIMEOUT)
            ]
        for held in late:
            held.timed_out = True
            limit = held.task.timeout if held.task else tasks.DEFAULT_TIMEOUT
            log.warning("job_timed_out", worker=self.name, job=held.job.id, task=held.job.task)
            ATTEMPTS.labels(held.job.task, "timeout").inc()
            self._record_failure(held, f"TimeoutError: the attempt ran over {limit:g} s", now=now)

    def _anything_due(self) -> bool:
        now = self.clock.now()
        with self.db.unit_of_work(write=False, autocommit=True) as session:
            if queue.has_due(session, now=now, queues=self.queues):
                return True
            return self.dispatch and dispatcher.has_pending(session)

    def _claim(self, now: datetime, free: int) -> int:
        def claim() -> list[Claimed]:
            # An idle worker only reads; after a full claim there is likely more to take.
            if not self._claim_backlog:
                with self.db.unit_of_work(write=False, autocommit=True) as session:
                    if not queue.has_due(session, now=now, queues=self.queues):
                        return []
            with self.db.unit_of_work() as session:
                return queue.claim(
                    session, self.name, now=now, limit=free, lease=self.lease, queues=self.queues
                )

        claimed: list[Claimed] = self._guard("claim", claim) or []
        self._claim_backlog = len(claimed) == free
        for job in claimed:
            held = _Held(job, job.lease_until, tasks.get(job.task))
            with self._lock:
                self._held[job.id] = held
            self._inbox.put(held)
        return len(claimed)

    # --- running one job -----------------------------------------------------------------

    def _execute(self, held: _Held) -> None:
        job = held.job
        held.started = time.monotonic()
        try:
            completed = self._attempt(held)
        except _LeaseLost:
            self.report.lost += 1
            ATTEMPTS.labels(job.task, "lost").inc()
            log.warning("job_lost_before_completion", worker=self.name, job=job.id, task=job.task)
        except GiveUp as exc:
            ATTEMPTS.labels(job.task, "gave_up").inc()
            self._record_failure(held, f"GiveUp: {exc}", give_up=True)
        except Exception as exc:
            ATTEMPTS.labels(job.task, "failed").inc()
            trace = "".join(traceback.format_exception(exc))
            self._record_failure(held, f"{type(exc).__name__}: {exc}\n\n{trace}")
        else:
            if completed:
                self.report.succeeded += 1
                ATTEMPTS.labels(job.task, "succeeded").inc()
        finally:
            DURATION.labels(job.task).observe(time.monotonic() - held.started)
            with self._lock:
                self._held.pop(job.id, None)
                holding, finished = len(self._held), len(self._done)
            if self._wants_loop(holding, finished):
                self._wake.set()

    def _wants_loop(self, holding: int, finished: int) -> bool:
        """Whether a finished job should wake the loop now: to claim (as the loop would), to
        complete a batch of finished attempts, or because nothing runs any more. Otherwise
        the loop wakes at its next poll."""
        free = self.concurrency + self.prefetch - holding
        claims = free > 0 and (holding < self.concurrency or free >= self._refill)
        return claims or finished >= COMPLETION_BATCH or holding == 0

    def _attempt(self, held: _Held) -> bool:
        """Run one attempt; ``True`` if it is complete, ``False`` if its completion waits for
        :meth:`_flush_done`."""
        job, task = held.job, held.task
        if task is None:
            raise LookupError(
                f"unknown task {job.task!r}: no module imported by this worker registers it"
            )
        arguments = _bind(task, job.args)
        ctx = JobContext(
            db=self.db,
            clock=self.clock,
            settings=self.settings,
            job_id=job.id,
            task=job.task,
            attempt=job.attempt,
            now=self.clock.now(),
        )
        if task.transactional:
            with self.db.unit_of_work() as session:
                task.handler(_with_session(ctx, session), **arguments)
                if held.timed_out or not queue.complete(
                    session, job.id, worker=self.name, attempt=job.attempt, now=self.clock.now()
                ):
                    raise _LeaseLost()  # rolls the handler's writes back
            return True
        task.handler(ctx, **arguments)
        # Completed with others in one statement by the loop (:meth:`_flush_done`): the task
        # is at least once anyway, and a commit per job is most of a short job's cost.
        with self._lock:
            self._done.append((job.id, job.attempt, job.task))
        return False

    def _record_failure(
        self, held: _Held, error: str, *, give_up: bool = False, now: datetime | None = None
    ) -> None:
        job = held.job
        if held.timed_out and now is None:
            return  # already recorded when its time ran out
        backoff = held.task.backoff if held.task else Backoff()
        try:
            with self.db.unit_of_work() as session:
                status = queue.fail(
                    session,
                    job.id,
                    worker=self.name,
                    attempt=job.attempt,
                    now=now or self.clock.now(),
                    error=error,
                    backoff=backoff,
                    give_up=give_up,
                )
        except Exception:
            log.error("job_failure_not_recorded", worker=self.name, job=job.id, exc_info=True)
            return
        if status is None:
            self.report.lost += 1
            return
        self.report.failed += 1
        if status == "dead":
            self.report.dead += 1
        log.warning(
            "job_failed",
            worker=self.name,
            job=job.id,
            task=job.task,
            attempt=job.attempt,
            status=status,
            error=error.splitlines()[0][:300] if error else "",
        )


@functools.lru_cache(maxsize=256)
def _signature(handler: Any) -> inspect.Signature:
    return inspect.signature(handler)


def _bind(task: Task, args: dict[str, Any]) -> dict[str, Any]:
    """The job's arguments, checked against the handler's signature (a mismatch will not
    heal by retrying: the job gives up)."""
    try:
        _signature(task.handler).bind(None, **args)
    except TypeError as exc:
        raise GiveUp(f"arguments do not fit task {task.name!r}: {exc}") from None
    return args


def _with_session(ctx: JobContext, session: Any) -> JobContext:
    return JobContext(
        db=ctx.db,
        clock=ctx.clock,
        settings=ctx.settings,
        job_id=ctx.job_id,
        task=ctx.task,
        attempt=ctx.attempt,
        now=ctx.now,
        session=session,
    )
