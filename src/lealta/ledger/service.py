"""Ledger operations. Callers pass a locked :class:`Account` (see :func:`lock_account`).

Every balance change goes through :func:`credit` or :func:`debit`, which append the entry,
move lot ``remaining`` figures with allocation rows, and update the cached balances, all in
the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from lealta.kit.db import lock_for_update
from lealta.kit.errors import NotFound
from lealta.kit.pagination import decode_cursor, encode_cursor, newest_first
from lealta.ledger.errors import InsufficientPoints
from lealta.ledger.maths import OpenLot, allocate
from lealta.models import Account, LedgerEntry, LotAllocation, PointLot


@dataclass(frozen=True, slots=True)
class Source:
    """Where an entry comes from: ``source_type`` (order, event, admin, api…) and a reference."""

    source_type: str
    source_ref: str | None = None
    actor: str = "system"
    order_id: int | None = None


def lock_account(session: Session, member_id: int) -> Account:
    """Load the member's account row under a write lock (``FOR UPDATE`` on PostgreSQL)."""
    account: Account | None = session.scalars(
        lock_for_update(select(Account).where(Account.member_id == member_id))
    ).one_or_none()
    if account is None:
        raise NotFound("The member has no points account.", code="member_not_found")
    return account


def credit(
    session: Session,
    account: Account,
    *,
    entry_type: str,
    points: int,
    reason: str,
    source: Source,
    occurred_at: datetime,
    now: datetime,
    rule_id: str | None = None,
    expires_at: datetime | None = None,
    pending_until: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> LedgerEntry:
    """Add ``points`` (> 0) as a new lot.

    With ``pending_until`` the lot is pending (not spendable) until then; ``release_pending``
    makes it available. ``expires_at`` is when what is left of the lot expires.
    """
    if points <= 0:
        raise ValueError("credit needs a positive amount")
    if pending_until is not None:
        account.points_pending += points
    else:
        account.points_available += points
    if entry_type in ("earn", "adjust"):
        account.lifetime_earned += points
    account.updated_at = now
    entry = _entry(account, entry_type, points, reason, source, occurred_at, now, rule_id, details)
    session.add(entry)
    # No flush here: the relationship fills in entry_id when the caller's unit of work
    # flushes, so one event's inserts go to the database together. Flush to read entry.id.
    session.add(
        PointLot(
            member_id=account.member_id,
            entry=entry,
            order_id=source.order_id,
            points=points,
            remaining=points,
            earned_at=occurred_at,
            expires_at=expires_at,
            pending=pending_until is not None,
            available_at=pending_until,
        )
    )
    return entry


def debit(
    session: Session,
    account: Account,
    *,
    entry_type: str,
    points: int,
    reason: str,
    source: Source,
    occurred_at: datetime,
    now: datetime,
    allow_shortfall: bool = False,
    prefer_order_id: int | None = None,
    only_lot_ids: list[int] | None = None,
    details: dict[str, Any] | None = None,
) -> LedgerEntry:
    """Take ``points`` (> 0) from the member's lots, soonest-expiring first.

    Without ``allow_shortfall`` an uncovered amount raises ``insufficient_points`` and nothing
    is written. With it (refund reversals) the entry takes what there is and records the rest
    as ``shortfall``: the balance never goes negative.
    """
    if points <= 0:
        raise ValueError("debit needs a positive amount")
    if points > account.points_available and not allow_shortfall:
        raise InsufficientPoints(
            f"The member has {account.points_available} points available; {points} requested.",
            details={"available": account.points_available, "requested": points},
        )
    # Lots credited earlier in this unit of work may not be flushed yet (credit defers its
    # inserts); they must be visible to the allocation below.
    session.flush()
    stmt = select(
        PointLot.id,
        PointLot.remaining,
        PointLot.earned_at,
        PointLot.expires_at,
        PointLot.order_id,
        PointLot.pending,
    ).where(PointLot.member_id == account.member_id, PointLot.remaining > 0)
    if only_lot_ids is not None:
        stmt = stmt.where(PointLot.id.in_(only_lot_ids))
    lots = session.execute(stmt).all()
    # Pending points are not spendable; a refund may take back its own order's pending lot,
    # and expiry names its lots explicitly.
    own_order = prefer_order_id is not None
    usable = [
        r
        for r in lots
        if not r.pending
        or only_lot_ids is not None
        or (own_order and r.order_id == prefer_order_id)
    ]
    prefer = [r.id for r in usable if own_order and r.order_id == prefer_order_id]
    allocations, shortfall = allocate(
        [OpenLot(r.id, r.remaining, r.earned_at, r.expires_at) for r in usable],
        points,
        prefer=prefer,
    )
    if shortfall and not allow_shortfall:  # the cached balance and the lots disagree
        raise RuntimeError(
            f"account {account.member_id}: lots cover {points - shortfall} of {points} points"
        )
    pending_ids = {r.id for r in usable if r.pending}
    taken_pending = sum(amount for lot_id, amount in allocations if lot_id in pending_ids)
    taken = points - shortfall
    account.points_available -= taken - taken_pending
    account.points_pending -= taken_pending
    account.points_shortfall += shortfall
    if entry_type == "redeem":
        account.lifetime_spent += taken
    elif entry_type == "reverse":
        account.lifetime_earned -= taken
    elif entry_type == "expire":
        account.points_expired += taken
    account.updated_at = now
    entry = _entry(account, entry_type, -taken, reason, source, occurred_at, now, None, details)
    entry.shortfall = shortfall
    session.add(entry)
    session.flush()
    for lot_id, amount in allocations:
        session.execute(
            update(PointLot)
            .where(PointLot.id == lot_id)
            .values(remaining=PointLot.remaining - amount)
        )
        session.add(
            LotAllocation(
                entry_id=entry.id, member_id=account.member_id, lot_id=lot_id, points=amount
            )
        )
    return entry


def restore(
    session: Session,
    account: Account,
    original: LedgerEntry,
    *,
    reason: str,
    source: Source,
    occurred_at: datetime,
    now: datetime,
) -> LedgerEntry:
    """Undo a ``redeem`` entry: put its points back into the very lots it consumed.

    The result is a positive ``reverse`` entry; each lot gets back what the redemption took
    (recorded as a negative allocation), keeping its original expiry date, so points restored
    after their expiry expire at the next catch-up instead of living on.
    """
    if original.entry_type != "redeem" or original.member_id != account.member_id:
        raise ValueError("only a member's own redeem entries can be restored")
    marker = f"restores:{original.id}"
    done = session.scalar(
        select(LedgerEntry.id).where(
            LedgerEntry.member_id == account.member_id,
            LedgerEntry.entry_type == "reverse",
            LedgerEntry.source_ref == marker,
        )
    )
    if done is not None:
        raise ValueError("this redemption was already restored")
    taken = session.execute(
        select(LotAllocation.lot_id, func.sum(LotAllocation.points))
        .where(LotAllocation.entry_id == original.id)
        .group_by(LotAllocation.lot_id)
    ).all()
    points = sum(int(amount) for _, amount in taken)
    if points <= 0:
        raise ValueError("this redemption has nothing left to restore")
    account.points_available += points
    account.lifetime_spent -= points
    account.updated_at = now
    entry = _entry(
        account,
        "reverse",
        points,
        reason,
        Source(source.source_type, marker, source.actor, source.order_id),
        occurred_at,
        now,
        None,
        {"restores_entry_id": original.id, "ref": source.source_ref},
    )
    session.add(entry)
    session.flush()
    for lot_id, amount in taken:
        session.execute(
            update(PointLot)
            .where(PointLot.id == lot_id)
            .values(remaining=PointLot.remaining + int(amount))
        )
        session.add(
            LotAllocation(
                entry_id=entry.id, member_id=account.member_id, lot_id=lot_id, points=-int(amount)
            )
        )
    session.flush()
    return entry


def _entry(
    account: Account,
    entry_type: str,
    points: int,
    reason: str,
    source: Source,
    occurred_at: datetime,
    now: datetime,
    rule_id: str | None,
    details: dict[str, Any] | None,
) -> LedgerEntry:
    return LedgerEntry(
        member_id=account.member_id,
        entry_type=entry_type,
        points=points,
        balance_after=account.points_available + account.points_pending,
        shortfall=0,
        reason=reason,
        source_type=source.source_type,
        source_ref=source.source_ref,
        order_id=source.order_id,
        rule_id=rule_id,
        actor=source.actor,
        details=details or {},
        occurred_at=occurred_at,
        recorded_at=now,
    )


# --- history -------------------------------------------------------------------------------


def history(
    session: Session, member_id: int, *, limit: int, cursor: str | None
) -> tuple[list[LedgerEntry], str | None]:
    """Newest first by event time, keyset-paginated on ``(occurred_at, id)``."""
    stmt = select(LedgerEntry).where(LedgerEntry.member_id == member_id)
    return newest_first(session, stmt, LedgerEntry, limit=limit, cursor=cursor)


# --- verification --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Discrepancy:
    member_id: int
    figure: str
    cached: int
    derived: int


def verify(session: Session) -> tuple[int, list[Discrepancy]]:
    """Re-derive every account's figures from the ledger and lots; return the mismatches.

    Balance (available + pending) = sum of entries; available and pending each = what is left
    in the member's spendable and pending lots; lifetime figures = sums by entry type.
    """
    sums = {
        row.member_id: row
        for row in session.execute(
            select(
                LedgerEntry.member_id,
                func.coalesce(func.sum(LedgerEntry.points), 0).label("available"),
                func.coalesce(
                    func.sum(
                        _case_sum(
                            (LedgerEntry.entry_type == "earn")
                            | ((LedgerEntry.entry_type == "reverse") & (LedgerEntry.points < 0))
                            | ((LedgerEntry.entry_type == "adjust") & (LedgerEntry.points > 0))
                        )
                    ),
                    0,
                ).label("earned"),
                func.coalesce(
                    func.sum(
                        _case_sum(
                            (LedgerEntry.entry_type == "redeem")
                            | ((LedgerEntry.entry_type == "reverse") & (LedgerEntry.points > 0))
                        )
                    ),
                    0,
                ).label("redeemed"),
                func.coalesce(func.sum(_case_sum(LedgerEntry.entry_type == "expire")), 0).label(
                    "expired"
                ),
                func.coalesce(func.sum(LedgerEntry.shortfall), 0).label("shortfall"),
            ).group_by(LedgerEntry.member_id)
        )
    }
    lots: dict[tuple[int, bool], int] = {
        (member_id, bool(pending)): int(remaining or 0)
        for member_id, pending, remaining in session.execute(
            select(PointLot.member_id, PointLot.pending, func.sum(PointLot.remaining)).group_by(
                PointLot.member_id, PointLot.pending
            )
        )
    }
    problems: list[Discrepancy] = []
    checked = 0
    for account in session.scalars(select(Account).order_by(Account.member_id)):
        checked += 1
        row = sums.get(account.member_id)
        derived = {
            "balance": int(row.available) if row else 0,
            "lifetime_earned": int(row.earned) if row else 0,
            "lifetime_spent": -int(row.redeemed) if row else 0,
            "points_expired": -int(row.expired) if row else 0,
            "points_shortfall": int(row.shortfall) if row else 0,
            "available_lots": lots.get((account.member_id, False), 0),
            "pending_lots": lots.get((account.member_id, True), 0),
        }
        cached = {
            "balance": account.points_available + account.points_pending,
            "lifetime_earned": account.lifetime_earned,
            "lifetime_spent": account.lifetime_spent,
            "points_expired": account.points_expired,
            "points_shortfall": account.points_shortfall,
            "available_lots": account.points_available,
            "pending_lots": account.points_pending,
        }
        for figure, value in derived.items():
            if cached[figure] != value:
                problems.append(Discrepancy(account.member_id, figure, cached[figure], value))
    return checked, problems


def _case_sum(condition: Any) -> Any:
    return case((condition, LedgerEntry.points), else_=0)


__all__ = ["decode_cursor", "encode_cursor"]  # kept importable from here for callers
