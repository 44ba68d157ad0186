"""Points lifecycle: pending points becoming available, and expiry. Processed in event time.

``catch_up`` brings one member's account up to a moment: it releases pending lots whose
return window has passed and expires lots whose date has come, each at its own time. It runs
before every event of that member (so imported history replays exactly as live traffic) and
from the scheduled job (``lealta jobs run``) for members with nothing new. Running it twice
does nothing the second time: it only acts on lots still due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from lealta.kit.periods import add_months, end_of
from lealta.ledger import service as ledger
from lealta.models import Account, LedgerEntry, PointLot
from lealta.outbox.events import PointsExpired, PointsReleased
from lealta.outbox.service import emit
from lealta.programme.schema import Programme


def expiry_for(programme: Programme, earned_at: datetime) -> datetime | None:
    """When points earned at ``earned_at`` expire under the programme (None: never)."""
    if programme.expiry.months is None:
        return None
    return end_of(add_months(earned_at, programme.expiry.months), programme.expiry.round_to)


def pending_until(programme: Programme, occurred_at: datetime) -> datetime | None:
    """Order points wait out the return window; None when there is none."""
    days = programme.pending.days
    return occurred_at + timedelta(days=days) if days else None


def release_pending(
    session: Session, account: Account, *, at: datetime, now: datetime, backfill: bool = False
) -> int:
    """Make pending lots whose window ended by ``at`` available; returns the points moved."""
    due = session.execute(
        select(PointLot.id, PointLot.remaining).where(
            PointLot.member_id == account.member_id,
            PointLot.pending.is_(True),
            PointLot.available_at <= at,
        )
    ).all()
    if not due:
        return 0
    moved = sum(int(r.remaining) for r in due)
    session.execute(
        update(PointLot).where(PointLot.id.in_([r.id for r in due])).values(pending=False)
    )
    account.points_pending -= moved
    account.points_available += moved
    account.updated_at = now
    if moved:
        emit(
            session,
            PointsReleased(points=moved),
            member_id=account.member_id,
            now=now,
            backfill=backfill,
        )
    return moved


def expire_due(
    session: Session, account: Account, *, at: datetime, now: datetime, backfill: bool = False
) -> list[LedgerEntry]:
    """Expire what is left of every lot whose expiry date is at or before ``at``.

    One ``expire`` entry per lot, dated at the lot's expiry (event time), so the ledger reads
    the same whether the job ran on the day or history was imported later.
    """
    lots = session.execute(
        select(PointLot.id, PointLot.remaining, PointLot.expires_at)
        .where(
            PointLot.member_id == account.member_id,
            PointLot.remaining > 0,
            PointLot.expires_at <= at,
        )
        .order_by(PointLot.expires_at, PointLot.id)
    ).all()
    entries = []
    for lot in lots:
        assert lot.expires_at is not None
        entries.append(
            ledger.debit(
                session,
                account,
                entry_type="expire",
                points=lot.remaining,
                reason="Points expired",
                source=ledger.Source("expiry", str(lot.id)),
                occurred_at=lot.expires_at,
                now=now,
                only_lot_ids=[lot.id],
            )
        )
    if entries:
        emit(
            session,
            PointsExpired(points=-sum(e.points for e in entries)),
            member_id=account.member_id,
            now=now,
            backfill=backfill,
        )
    return entries


def catch_up(
    session: Session, account: Account, *, at: datetime, now: datetime, backfill: bool = False
) -> None:
    """Release and expire everything due by ``at`` for this (locked) account.

    ``backfill`` marks the domain events of imported history (see ``IngestContext``)."""
    session.flush()
    due = session.scalar(
        select(PointLot.id).where(PointLot.member_id == account.member_id, _due(at)).limit(1)
    )
    if due is None:  # the common case on the ingest path: one cheap query
        return
    release_pending(session, account, at=at, now=now, backfill=backfill)
    expire_due(session, account, at=at, now=now, backfill=backfill)


def _due(at: datetime) -> ColumnElement[bool]:
    return or_(
        (PointLot.pending.is_(True)) & (PointLot.available_at <= at),
        (PointLot.remaining > 0) & (PointLot.expires_at <= at),
    )


def members_due(session: Session, *, at: datetime, limit: int) -> list[int]:
    """Members with a pending release, an expiry or a tier review due by ``at``."""
    lots = select(PointLot.member_id).where(_due(at))
    tiers = select(Account.member_id).where(Account.tier_held_until <= at)
    ids = {row[0] for row in session.execute(lots.union(tiers).limit(limit))}
    return sorted(ids)
