"""Points operations requested over the API or CLI: adjustments and direct spends."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.kit.errors import InvalidInput
from lealta.kit.timestamps import check_moment
from lealta.ledger import service as ledger
from lealta.ledger.schemas import AdjustmentIn, EntryOut, SpendIn, WriteResult
from lealta.members import service as members
from lealta.models import LedgerEntry


def entry_out(entry: LedgerEntry) -> EntryOut:
    return EntryOut.model_validate(entry, from_attributes=True)


def adjust(
    session: Session,
    external_id: str,
    data: AdjustmentIn,
    *,
    actor: str,
    now: datetime,
    currency: str,
) -> WriteResult:
    """Credit or debit by hand, with a reason, audited. A debit never takes the balance below 0."""
    if data.points == 0:
        raise InvalidInput("An adjustment of 0 points changes nothing.", code="zero_points")
    occurred_at = now if data.occurred_at is None else check_moment(data.occurred_at, now=now)
    member = members.get(session, external_id)
    account = ledger.lock_account(session, member.id)
    source = ledger.Source("adjustment", None, actor)
    if data.points > 0:
        entry = ledger.credit(
            session,
            account,
            entry_type="adjust",
            points=data.points,
            reason=data.reason,
            source=source,
            occurred_at=occurred_at,
            now=now,
        )
    else:
        entry = ledger.debit(
            session,
            account,
            entry_type="adjust",
            points=-data.points,
            reason=data.reason,
            source=source,
            occurred_at=occurred_at,
            now=now,
        )
    session.flush()  # the entry id goes into the audit row
    audit.record(
        session,
        actor=actor,
        action="points.adjust",
        target_type="member",
        target_id=external_id,
        reason=data.reason,
        now=now,
        details={"points": data.points, "entry_id": entry.id},
    )
    return WriteResult(
        entry=entry_out(entry),
        balance=members.balance_of(external_id, account, currency).model_dump(mode="json"),
    )


def spend(
    session: Session, external_id: str, data: SpendIn, *, actor: str, now: datetime, currency: str
) -> WriteResult:
    """Debit ``points`` or fail with ``409 insufficient_points``; never overspends."""
    member = members.get(session, external_id)
    account = ledger.lock_account(session, member.id)
    entry = ledger.debit(
        session,
        account,
        entry_type="redeem",
        points=data.points,
        reason=data.reason,
        source=ledger.Source("spend", data.order_id, actor),
        occurred_at=now,
        now=now,
    )
    return WriteResult(
        entry=entry_out(entry),
        balance=members.balance_of(external_id, account, currency).model_dump(mode="json"),
    )
