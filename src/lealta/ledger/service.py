"""Ledger operations. Callers pass a locked :class:`Account` (see :func:`lock_account`).

Every balance change goes through :func:`credit` or :func:`debit`, which append the entry,
move lot ``remaining`` figures with allocation rows, and update the cached balances, all in
the caller's transaction.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from lealta.kit.db import lock_for_update
from lealta.kit.errors import InvalidInput, NotFound
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
    details: dict[str, Any] | None = None,
) -> LedgerEntry:
    """Add ``points`` (> 0) as a new lot."""
    if points <= 0:
        raise ValueError("credit needs a positive amount")
    account.points_available += points
    if entry_type in ("earn", "adjust"):
        account.lifetime_earned += points
    account.updated_at = now
    entry = _entry(account, entry_type, points, reason, source, occurred_at, now, rule_id, details)
    session.add(entry)
    session.flush()
    session.add(
        PointLot(
            member_id=account.member_id,
            entry_id=entry.id,
            order_id=source.order_id,
            points=points,
            remaining=points,
            earned_at=occurred_at,
            expires_at=expires_at,
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
    lots = session.execute(
        select(
            PointLot.id,
            PointLot.remaining,
            PointLot.earned_at,
            PointLot.expires_at,
            PointLot.order_id,
        ).where(PointLot.member_id == account.member_id, PointLot.remaining > 0)
    ).all()
    prefer = [row.id for row in lots if prefer_order_id and row.order_id == prefer_order_id]
    allocations, shortfall = allocate(
        [OpenLot(r.id, r.remaining, r.earned_at, r.expires_at) for r in lots],
        points,
        prefer=prefer,
    )
    taken = points - shortfall
    account.points_available -= taken
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
        session.add(LotAllocation(entry_id=entry.id, lot_id=lot_id, points=amount))
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
        balance_after=account.points_available,
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


def encode_cursor(occurred_at: datetime, entry_id: int) -> str:
    raw = json.dumps([occurred_at.isoformat(), entry_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, entry_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(at), int(entry_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("The cursor is not one this API issued.", code="invalid_cursor") from exc


def history(
    session: Session, member_id: int, *, limit: int, cursor: str | None
) -> tuple[list[LedgerEntry], str | None]:
    """Newest first by event time, keyset-paginated on ``(occurred_at, id)``."""
    stmt = select(LedgerEntry).where(LedgerEntry.member_id == member_id)
    if cursor:
        at, entry_id = decode_cursor(cursor)
        stmt = stmt.where(
            (LedgerEntry.occurred_at < at)
            | ((LedgerEntry.occurred_at == at) & (LedgerEntry.id < entry_id))
        )
    rows = list(
        session.scalars(
            stmt.order_by(LedgerEntry.occurred_at.desc(), LedgerEntry.id.desc()).limit(limit + 1)
        )
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].occurred_at, rows[-1].id)
    return rows, next_cursor


# --- verification --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Discrepancy:
    member_id: int
    figure: str
    cached: int
    derived: int


def verify(session: Session) -> tuple[int, list[Discrepancy]]:
    """Re-derive every account's figures from the ledger and lots; return the mismatches."""
    sums = {
        row.member_id: row
        for row in session.execute(
            select(
                LedgerEntry.member_id,
                func.coalesce(func.sum(LedgerEntry.points), 0).label("available"),
                func.coalesce(
                    func.sum(
                        _case_sum(
                            (LedgerEntry.entry_type.in_(("earn", "reverse")))
                            | ((LedgerEntry.entry_type == "adjust") & (LedgerEntry.points > 0))
                        )
                    ),
                    0,
                ).label("earned"),
                func.coalesce(func.sum(_case_sum(LedgerEntry.entry_type == "redeem")), 0).label(
                    "redeemed"
                ),
                func.coalesce(func.sum(_case_sum(LedgerEntry.entry_type == "expire")), 0).label(
                    "expired"
                ),
                func.coalesce(func.sum(LedgerEntry.shortfall), 0).label("shortfall"),
            ).group_by(LedgerEntry.member_id)
        )
    }
    lots = {
        member_id: remaining
        for member_id, remaining in session.execute(
            select(PointLot.member_id, func.sum(PointLot.remaining)).group_by(PointLot.member_id)
        )
    }
    problems: list[Discrepancy] = []
    checked = 0
    for account in session.scalars(select(Account).order_by(Account.member_id)):
        checked += 1
        row = sums.get(account.member_id)
        derived = {
            "points_available": int(row.available) if row else 0,
            "lifetime_earned": int(row.earned) if row else 0,
            "lifetime_spent": -int(row.redeemed) if row else 0,
            "points_expired": -int(row.expired) if row else 0,
            "points_shortfall": int(row.shortfall) if row else 0,
            "lots_remaining": int(lots.get(account.member_id) or 0),
        }
        cached = {
            "points_available": account.points_available,
            "lifetime_earned": account.lifetime_earned,
            "lifetime_spent": account.lifetime_spent,
            "points_expired": account.points_expired,
            "points_shortfall": account.points_shortfall,
            "lots_remaining": account.points_available,
        }
        for figure, value in derived.items():
            if cached[figure] != value:
                problems.append(Discrepancy(account.member_id, figure, cached[figure], value))
    return checked, problems


def _case_sum(condition: Any) -> Any:
    return case((condition, LedgerEntry.points), else_=0)
