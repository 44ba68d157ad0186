"""The task registry: what a job's ``task`` name runs.

A capability registers its background work with :func:`task`::

    @task("webhooks.deliver", max_attempts=15, timeout=30)
    def deliver(ctx: JobContext, *, endpoint_id: int, outbox_id: int) -> None:
        ...

and enqueues it with :func:`lealta.jobs.queue.enqueue` (``"webhooks.deliver"`` and the keyword
arguments as JSON). Delivery is at least once: a job may run again after a crash, a lost
lease or a timeout, so an effect that must not repeat (points, a coupon, a message) uses
:attr:`JobContext.effect_key` as its idempotency key.

A *transactional* task (the default) runs inside one unit of work, ``ctx.session``, and the
job is marked done in that same transaction: its writes and the completion commit together,
and a worker that lost the job meanwhile (lease expired, timed out) rolls its writes back.
A task with ``transactional=False`` opens its own units of work from ``ctx.db`` (long
batch work, calls to the outside world made outside any transaction).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from lealta.config import Settings
from lealta.kit.clock import Clock
from lealta.kit.db import Database

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_TIMEOUT = 600.0
DEFAULT_QUEUE = "default"
MAX_NAME = 100

Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, capped.

    The wait after the ``n``-th failed attempt is drawn uniformly from
    ``[0, min(cap, base * 2 ** (n - 1))]`` seconds: retries of many jobs that failed together
    (an endpoint down) spread out instead of coming back in waves.
    """

    base: float = 5.0
    cap: float = 3600.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(0, attempt - 1)
        if exponent >= 64:  # 2**64 * base is past any cap
            return self.cap
        return min(self.cap, self.base * 2.0**exponent)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> timedelta:
        """The wait before the next attempt; ``rand`` returns a float in ``[0, 1)``."""
        return timedelta(seconds=self.ceiling(attempt) * rand())


class GiveUp(Exception):
    """Raised by a handler when retrying cannot help (bad arguments, a deleted target): the job
    goes straight to ``dead`` with this message."""


@dataclass(frozen=True, slots=True)
class Task:
    """A registered task: its name, handler and how it is run and retried."""

    name: str
    handler: Handler
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float = DEFAULT_TIMEOUT
    queue: str = DEFAULT_QUEUE
    backoff: Backoff = field(default_factory=Backoff)
    transactional: bool = True


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets besides its arguments.

    ``now`` is the clock's time when the attempt started (the clock is the application's, so a
    test's fixed clock drives jobs too); ``attempt`` counts from 1. ``session`` is the unit of
    work of a transactional task (``None`` otherwise).
    """

    db: Database
    clock: Clock
    settings: Settings
    job_id: int
    task: str
    attempt: int
    now: datetime
    session: Session | None = None

    @property
    def effect_key(self) -> str:
        """An idempotency key stable across every attempt of this job (``job:<id>``)."""
        return f"job:{self.job_id}"

    def effect_key_for(self, name: str) -> str:
        """A stable key for one of several effects of this job (``job:<id>:<name>``)."""
        return f"job:{self.job_id}:{name}"

    def require_session(self) -> Session:
        """The job's unit of work; a non-transactional task has none (a programming error)."""
        if self.session is None:
            raise RuntimeError(f"task {self.task!r} is not transactional: use ctx.db")
        return self.session


_REGISTRY: dict[str, Task] = {}


def task(
    name: str,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    timeout: float = DEFAULT_TIMEOUT,
    queue: str = DEFAULT_QUEUE,
    backoff: Backoff | None = None,
    transactional: bool = True,
) -> Callable[[Handler], Handler]:
    """Register the decorated ``handler(ctx, **args)`` as task ``name``.

    ``max_attempts`` and ``queue`` are the defaults of jobs enqueued under this name;
    ``timeout`` (seconds) is how long one attempt may run before it counts as failed and the
    job is retried (the thread cannot be killed: a transactional task's writes are then rolled
    back when it finishes). Registering a name again replaces it (a reloaded module).
    """
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"a task name has 1 to {MAX_NAME} characters")
    if max_attempts < 1 or timeout <= 0:
        raise ValueError("max_attempts must be at least 1 and timeout positive")

    def register(handler: Handler) -> Handler:
        _REGISTRY[name] = Task(
            name=name,
            handler=handler,
            max_attempts=max_attempts,
            timeout=timeout,
            queue=queue,
            backoff=backoff or Backoff(),
            transactional=transactional,
        )
        return handler

    return register


def get(name: str) -> Task | None:
    """The task registered under ``name`` in this process, if any."""
    return _REGISTRY.get(name)


def registered() -> list[str]:
    """The names of every registered task, sorted."""
    return sorted(_REGISTRY)


def unregister(name: str) -> None:
    """Forget a task (tests)."""
    _REGISTRY.pop(name, None)
