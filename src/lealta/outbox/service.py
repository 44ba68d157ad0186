"""Writing domain events: the one place an outbox row for a domain event is made."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from lealta.events import store
from lealta.models import OutboxMessage
from lealta.outbox.events import DomainEvent

_outbox = cast(Table, OutboxMessage.__table__)


def _row(
    event: DomainEvent, *, member_id: int | None, now: datetime, backfill: bool
) -> dict[str, Any]:
    return {
        "topic": event.topic,
        "version": event.VERSION,
        "member_id": member_id,
        "payload": event.to_payload(),
        "backfill": backfill,
        "created_at": now,
        "processed_at": None,
    }


def emit(
    session: Session,
    event: DomainEvent,
    *,
    member_id: int | None,
    now: datetime,
    backfill: bool,
) -> None:
    """Record ``event`` in the outbox, in the caller's transaction.

    ``backfill`` marks history replayed from outside (CSV import, demo load): subscribers
    that must not fire for the past (a welcome e-mail for a 2019 order) skip it.
    """
    session.add(OutboxMessage(**_row(event, member_id=member_id, now=now, backfill=backfill)))


def emit_many(
    session: Session,
    events: Iterable[tuple[DomainEvent, int | None]],
    *,
    now: datetime,
    backfill: bool,
) -> int:
    """Record several ``(event, member_id)`` pairs with one statement (COPY on PostgreSQL for
    many rows, a driver-level executemany on SQLite: the batch driver announces a chunk's
    enrolments and coupons with it); returns how many."""
    rows = [_row(e, member_id=m, now=now, backfill=backfill) for e, m in events]
    store.insert_rows(session, _outbox, rows, bulk=True)
    return len(rows)
