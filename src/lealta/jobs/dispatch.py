"""The outbox dispatcher: domain events become one job per subscriber.

The worker calls :func:`dispatch` whenever the outbox has unprocessed rows. In one
transaction it takes a batch of them in id order (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so several workers share the rows), enqueues an ``outbox.deliver`` job for every subscriber
of each row (:func:`lealta.outbox.subscribers.subscribers_for`, with the dedupe key
``outbox:<id>:<subscriber>``) and marks the rows processed. A row is therefore handed to each
of its subscribers exactly once, and each delivery is a job of its own: retried with backoff,
visible in the console when it fails, replayable.

Backfilled history (an import, ``lealta demo up``) comes in bulk: a million imported orders
are millions of rows, and a job per row and subscriber would keep the workers busy for hours
and the dashboard incomplete meanwhile. Its rows go to each subscriber that takes them
(``include_backfill``) as one ``outbox.deliver_backfill`` job per dispatched batch, which
hands them over in id order in one transaction. A row whose handler fails there is rolled
back alone (a savepoint) and given a job of its own, retried and visible as any delivery.

Rows with no subscriber are only marked processed. Topics that have their own reader (the
cockpit's sign-in e-mails, sent right after the request) are left to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Table, select, update
from sqlalchemy.orm import Session

from lealta.jobs import queue
from lealta.jobs.tasks import GiveUp, JobContext, task
from lealta.kit.logging import get_logger
from lealta.members.login_links import LINK_TOPIC
from lealta.models import OutboxMessage
from lealta.outbox import subscribers
from lealta.outbox.events import DomainEvent, decode

log = get_logger("lealta.jobs.dispatch")

DELIVER = "outbox.deliver"
DELIVER_BACKFILL = "outbox.deliver_backfill"
BATCH = 500
OWN_READERS = frozenset({LINK_TOPIC})
"""Outbox topics read by their own code, never dispatched."""

_outbox = cast(Table, OutboxMessage.__table__)


@dataclass(frozen=True, slots=True)
class OutboxInfo:
    """The outbox row a delivered event comes from."""

    id: int
    topic: str
    version: int
    member_id: int | None
    backfill: bool
    created_at: datetime


def delivery_key(outbox_id: int, subscriber: str, *, last: int | None = None) -> str:
    """``outbox:<id>:<subscriber>``, or ``outbox:<id>-<last>:<subscriber>`` for the backfilled
    rows ``id`` to ``last`` (the name hashed if the key would be too long)."""
    rows = f"{outbox_id}" if last is None else f"{outbox_id}-{last}"
    key = f"outbox:{rows}:{subscriber}"
    if len(key) <= queue.MAX_DEDUPE_KEY:
        return key
    return f"outbox:{rows}:{hashlib.sha256(subscriber.encode()).hexdigest()}"


def _delivery(outbox_id: int, subscriber: str) -> queue.NewJob:
    return queue.NewJob(
        DELIVER,
        {"outbox_id": outbox_id, "subscriber": subscriber},
        dedupe_key=delivery_key(outbox_id, subscriber),
    )


def _pending() -> ColumnElement[bool]:
    return (_outbox.c.processed_at.is_(None)) & (_outbox.c.topic.not_in(sorted(OWN_READERS)))


def has_pending(session: Session) -> bool:
    """Whether any outbox row waits for the dispatcher (a read)."""
    stmt = select(_outbox.c.id).where(_pending()).limit(1)
    return session.execute(stmt).first() is not None


def dispatch(session: Session, *, now: datetime, limit: int = BATCH) -> int:
    """Hand up to ``limit`` unprocessed outbox rows to their subscribers (in the caller's
    transaction); returns how many rows were processed."""
    rows = session.execute(
        select(_outbox.c.id, _outbox.c.topic, _outbox.c.backfill)
        .where(_pending())
        .order_by(_outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0
    idle: dict[str, bool] = {}

    def wanted(sub: subscribers.Subscriber) -> bool:
        if sub.wanted is None:
            return True
        if sub.name not in idle:
            idle[sub.name] = not sub.wanted(session)
        return not idle[sub.name]

    deliveries: list[queue.NewJob] = []
    backfilled: dict[str, list[int]] = {}  # subscriber -> its backfilled rows, in id order
    for row in rows:
        for sub in subscribers.subscribers_for(row.topic, bool(row.backfill)):
            if not wanted(sub):
                continue
            if row.backfill:
                backfilled.setdefault(sub.name, []).append(row.id)
            else:
                deliveries.append(_delivery(row.id, sub.name))
    deliveries += [
        queue.NewJob(
            DELIVER_BACKFILL,
            {"outbox_ids": ids, "subscriber": name},
            dedupe_key=delivery_key(ids[0], name, last=ids[-1]),
        )
        for name, ids in backfilled.items()
    ]
    queue.enqueue_many(session, deliveries, now=now)
    session.execute(
        update(_outbox).where(_outbox.c.id.in_([row.id for row in rows])).values(processed_at=now)
    )
    return len(rows)


@task(DELIVER, max_attempts=10)
def deliver(ctx: JobContext, *, outbox_id: int, subscriber: str) -> None:
    """Call one subscriber with one outbox row's typed event, in this job's transaction."""
    session = ctx.require_session()
    if not isinstance(outbox_id, int) or not isinstance(subscriber, str):
        raise GiveUp("outbox_id must be an integer and subscriber a string")
    row = session.get(OutboxMessage, outbox_id) if 0 < outbox_id < 2**63 else None
    if row is None:
        log.warning("outbox_row_gone", outbox_id=outbox_id, subscriber=subscriber)
        return
    _hand_over(ctx, row, subscriber)


@task(DELIVER_BACKFILL, max_attempts=10, timeout=1800.0)
def deliver_backfill(ctx: JobContext, *, outbox_ids: list[int], subscriber: str) -> None:
    """Call one subscriber with backfilled outbox rows, in id order, in this job's
    transaction. A row whose handler raises is rolled back alone and gets a job of its own
    (:func:`deliver`), so the others are not held back by it."""
    session = ctx.require_session()
    if (
        not isinstance(outbox_ids, list)
        or not all(isinstance(i, int) and 0 < i < 2**63 for i in outbox_ids)
        or not isinstance(subscriber, str)
    ):
        raise GiveUp("outbox_ids must be a list of row ids and subscriber a string")
    rows = session.scalars(
        select(OutboxMessage).where(OutboxMessage.id.in_(outbox_ids)).order_by(OutboxMessage.id)
    ).all()
    many = {getattr(subscribers.find(row.topic, subscriber), "many", None) for row in rows}
    if len(many) == 1 and (handle_many := many.pop()) is not None:
        try:
            with session.begin_nested():
                handle_many(ctx, [_typed(row) for row in rows])
            return
        except Exception as exc:  # row by row below: the one at fault gets its own job
            log.warning("backfill_batch_failed", subscriber=subscriber, error=repr(exc))
    failed: list[int] = []
    for row in rows:
        try:
            with session.begin_nested():
                _hand_over(ctx, row, subscriber)
        except Exception as exc:  # the row's own job retries it and shows why
            log.warning(
                "backfill_delivery_failed", outbox_id=row.id, subscriber=subscriber, error=repr(exc)
            )
            failed.append(row.id)
    if failed:
        queue.enqueue_many(session, [_delivery(i, subscriber) for i in failed], now=ctx.now)


def _hand_over(ctx: JobContext, row: OutboxMessage, subscriber: str) -> None:
    """Call ``subscriber``'s handler with ``row``'s typed event."""
    handler = subscribers.find(row.topic, subscriber)
    if handler is None:
        # The capability was switched off (or renamed) after the row was dispatched.
        log.warning("subscriber_gone", outbox_id=row.id, subscriber=subscriber)
        return
    handler.handler(ctx, *_typed(row))


def _typed(row: OutboxMessage) -> tuple[DomainEvent, OutboxInfo]:
    """``row``'s typed event and what the subscriber learns of the row itself."""
    try:
        event = decode(row.topic, row.payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise GiveUp(f"outbox row {row.id} ({row.topic}) cannot be decoded: {exc}") from exc
    info = OutboxInfo(
        id=row.id,
        topic=row.topic,
        version=row.version,
        member_id=row.member_id,
        backfill=row.backfill,
        created_at=row.created_at,
    )
    return event, info
