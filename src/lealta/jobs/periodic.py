"""Periodic jobs: tasks enqueued on a cron schedule.

A schedule is a task with a cron expression (five fields, or six with seconds first), read by
`cronsim <https://pypi.org/project/cronsim/>`_ in a timezone: the schedule's own, else the
programme's when it names one, else UTC (so "0 3 * * *" is 03:00 where the shop is, across
daylight-saving changes). Every worker runs a :class:`Scheduler`: each tick is enqueued as one
job with the dedupe key ``periodic:<name>:<tick in UTC>``, so any number of workers enqueue it
once. Ticks missed while no worker ran are not replayed one by one: the newest missed tick
runs once (the tasks here catch up by themselves).

Built in: the points and tiers catch-up (:func:`lealta.jobs.service.run_due`: pending points,
expiries, tier reviews and coupon expiry) every minute, and the pruning of finished jobs
every hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from sqlalchemy.orm import Session

from lealta.jobs import queue as job_queue
from lealta.jobs import service, tasks
from lealta.jobs.tasks import Handler, JobContext
from lealta.kit.db import Database
from lealta.kit.logging import get_logger
from lealta.programme import service as programmes

log = get_logger("lealta.jobs.periodic")

ZONE_CACHE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Schedule:
    """Task ``task`` with ``args``, enqueued at every tick of ``cron``."""

    name: str
    cron: str
    task: str
    args: dict[str, Any]
    timezone: str | None = None


_SCHEDULES: dict[str, Schedule] = {}


def check_cron(cron: str) -> None:
    """``ValueError`` unless ``cron`` is a valid expression."""
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError, IndexError) as exc:
        raise ValueError(f"invalid cron expression {cron!r}: {exc}") from None


def latest_tick(cron: str, now: datetime, zone: tzinfo = UTC) -> datetime:
    """The newest tick of ``cron`` at or before ``now``, read in ``zone``; in UTC."""
    # cronsim walks back from its start excluding the start itself; starting one second after
    # ``now`` (whole seconds) includes a tick falling exactly on ``now``.
    start = now.astimezone(zone).replace(microsecond=0) + timedelta(seconds=1)
    return next(CronSim(cron, start, reverse=True)).astimezone(UTC)


def next_tick(cron: str, now: datetime, zone: tzinfo = UTC) -> datetime:
    """The first tick of ``cron`` strictly after ``now``, read in ``zone``; in UTC."""
    return next(CronSim(cron, now.astimezone(zone))).astimezone(UTC)


def dedupe_key(schedule: Schedule, tick: datetime) -> str:
    return f"periodic:{schedule.name}:{tick.astimezone(UTC).isoformat()}"


def schedule(
    name: str,
    cron: str,
    *,
    task: str | None = None,
    args: dict[str, Any] | None = None,
    timezone: str | None = None,
) -> Schedule:
    """Register (or replace) schedule ``name`` for an already registered ``task`` (default:
    the task named ``name``)."""
    check_cron(cron)
    if timezone is not None:
        ZoneInfo(timezone)  # raises for an unknown zone
    entry = Schedule(name, cron, task or name, dict(args or {}), timezone)
    _SCHEDULES[name] = entry
    return entry


def periodic(
    name: str,
    cron: str,
    *,
    timezone: str | None = None,
    max_attempts: int = 3,
    timeout: float = tasks.DEFAULT_TIMEOUT,
    queue: str = tasks.DEFAULT_QUEUE,
    transactional: bool = True,
) -> Callable[[Handler], Handler]:
    """Register the decorated ``handler(ctx)`` as task ``name`` and run it on ``cron``."""
    check_cron(cron)

    def register(handler: Handler) -> Handler:
        tasks.task(
            name,
            max_attempts=max_attempts,
            timeout=timeout,
            queue=queue,
            transactional=transactional,
        )(handler)
        schedule(name, cron, timezone=timezone)
        return handler

    return register


def schedules() -> list[Schedule]:
    """Every registered schedule, by name."""
    return [_SCHEDULES[name] for name in sorted(_SCHEDULES)]


def unschedule(name: str) -> None:
    """Remove a schedule (tests; a capability switched off)."""
    _SCHEDULES.pop(name, None)


def programme_zone(session: Session, now: datetime) -> tzinfo:
    """The timezone of the programme in force, if its document names one; else UTC."""
    programme = programmes.current(session, now=now)
    name = getattr(programme, "timezone", None)
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("programme_timezone_unknown", timezone=name)
    return UTC


class Scheduler:
    """Enqueues the due tick of every schedule, once per tick per process (and, through the
    dedupe key, once per tick across every worker)."""

    def __init__(
        self,
        entries: Sequence[Schedule] | None = None,
        *,
        zone: Callable[[Session, datetime], tzinfo] = programme_zone,
    ) -> None:
        self._entries = entries
        self._zone_of = zone
        self._zone: tzinfo | None = None
        self._zone_read = 0.0
        self._last: dict[str, datetime] = {}

    def entries(self) -> list[Schedule]:
        return list(self._entries) if self._entries is not None else schedules()

    def due(self, now: datetime, zone: tzinfo) -> list[tuple[Schedule, datetime]]:
        """The newest tick of each schedule not yet enqueued by this scheduler (pure)."""
        found = []
        for entry in self.entries():
            tick = latest_tick(
                entry.cron, now, ZoneInfo(entry.timezone) if entry.timezone else zone
            )
            if self._last.get(entry.name) != tick:
                found.append((entry, tick))
        return found

    def enqueue_due(self, db: Database, now: datetime) -> int:
        """Enqueue the due ticks (one transaction; a tick already enqueued elsewhere is a
        no-op); returns how many ticks were new to this scheduler."""
        zone = self._programme_zone(db, now)
        found = self.due(now, zone)
        if not found:
            return 0
        with db.unit_of_work() as session:
            for entry, tick in found:
                job_queue.enqueue(
                    session,
                    entry.task,
                    entry.args,
                    now=now,
                    run_at=tick,
                    dedupe_key=dedupe_key(entry, tick),
                )
        for entry, tick in found:
            self._last[entry.name] = tick
        return len(found)

    def _programme_zone(self, db: Database, now: datetime) -> tzinfo:
        if self._zone is None or time.monotonic() - self._zone_read > ZONE_CACHE_SECONDS:
            with db.unit_of_work(write=False) as session:
                self._zone = self._zone_of(session, now)
            self._zone_read = time.monotonic()
        return self._zone


# --- built-in schedules --------------------------------------------------------------------


@periodic("points.catch_up", "* * * * *", transactional=False, timeout=3600.0)
def catch_up(ctx: JobContext) -> None:
    """Release pending points, expire points and coupons, run tier reviews, up to now."""
    report = service.run_due(ctx.db, now=ctx.now)
    if report.members or report.coupons_expired:
        log.info(
            "points_caught_up",
            members=report.members,
            released=report.released,
            expired=report.expired,
            tier_changes=report.tier_changes,
            coupons_expired=report.coupons_expired,
        )


PRUNE_BATCH = 5000
PRUNE_MAX_BATCHES = 100


@periodic("jobs.prune", "17 * * * *", transactional=False)
def prune(ctx: JobContext) -> None:
    """Delete succeeded and discarded jobs older than ``LEALTA_JOB_RETENTION_DAYS``."""
    keep = timedelta(days=ctx.settings.job_retention_days)
    removed = 0
    for _ in range(PRUNE_MAX_BATCHES):
        with ctx.db.unit_of_work() as session:
            batch = job_queue.prune(session, now=ctx.now, older_than=keep, limit=PRUNE_BATCH)
        removed += batch
        if batch < PRUNE_BATCH:
            break
    if removed:
        log.info("jobs_pruned", removed=removed)
