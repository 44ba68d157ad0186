"""Points operations requested over the API, the console or the CLI: adjustments and spends.

Both go through the engine (:func:`lealta.engine.core.adjust`, :func:`~lealta.engine.core.spend`)
under the member's account lock, like every other change of points.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.engine import core as engine
from lealta.engine.outcome import NewEntry, Outcome
from lealta.engine.state import MemberState
from lealta.events import store
from lealta.events.service import no_crossings, run_loading
from lealta.kit.errors import InvalidInput
from lealta.kit.timestamps import check_moment
from lealta.ledger.schemas import AdjustmentIn, EntryOut, SpendIn, WriteResult
from lealta.members import service as members
from lealta.models import LedgerEntry
from lealta.programme.schema import Programme


def entry_out(entry: LedgerEntry) -> EntryOut:
    return EntryOut.model_validate(entry, from_attributes=True)


def adjust(
    session: Session,
    external_id: str,
    data: AdjustmentIn,
    *,
    actor: str,
    now: datetime,
    programme: Programme,
) -> WriteResult:
    """Credit or debit by hand, with a reason, audited. A debit never takes the balance below 0."""
    if data.points == 0:
        raise InvalidInput("An adjustment of 0 points changes nothing.", code="zero_points")
    at = now if data.occurred_at is None else check_moment(data.occurred_at, now=now)
    result = _apply(
        session,
        programme,
        external_id,
        lambda s: engine.adjust(
            programme, s, points=data.points, reason=data.reason, actor=actor, at=at
        ),
        at=at,
        now=now,
    )
    audit.record(
        session,
        actor=actor,
        action="points.adjust",
        target_type="member",
        target_id=external_id,
        reason=data.reason,
        now=now,
        details={"points": data.points, "entry_id": result.entry.id},
    )
    return result


def award(
    session: Session,
    external_id: str,
    *,
    points: int,
    reason: str,
    actor: str,
    source_type: str,
    source_ref: str,
    now: datetime,
    programme: Programme,
    backfill: bool = False,
) -> WriteResult:
    """Credit ``points`` (> 0) earned by something other than an order (a survey answered),
    named by ``source_type`` and ``source_ref`` in the entry; in the caller's transaction.
    ``backfill``: history loaded from the past (what the catch-up on the way announces is
    marked so, as the answer's own announcement is)."""
    if points <= 0:
        raise InvalidInput("An award must be of at least 1 point.", code="zero_points")
    return _apply(
        session,
        programme,
        external_id,
        lambda s: engine.adjust(
            programme,
            s,
            points=points,
            reason=reason,
            actor=actor,
            at=now,
            source_type=source_type,
            source_ref=source_ref,
        ),
        at=now,
        now=now,
        backfill=backfill,
    )


def spend(
    session: Session,
    external_id: str,
    data: SpendIn,
    *,
    actor: str,
    now: datetime,
    programme: Programme,
) -> WriteResult:
    """Debit ``points`` or fail with ``409 insufficient_points``; never overspends."""
    return _apply(
        session,
        programme,
        external_id,
        lambda s: engine.spend(
            programme,
            s,
            points=data.points,
            reason=data.reason,
            actor=actor,
            at=now,
            source_type="spend",
            source_ref=data.order_id,
        ),
        at=now,
        now=now,
    )


def _apply(
    session: Session,
    programme: Programme,
    external_id: str,
    step: Callable[[MemberState], Outcome],
    *,
    at: datetime,
    now: datetime,
    backfill: bool = False,
) -> WriteResult:
    member = members.get(session, external_id)
    state = store.lock_and_load(session, None, at, member_id=member.id).state
    assert state is not None
    outcome = run_loading(session, programme, state, step, at=at)
    written = store.write_all(
        session, [(member.id, outcome)], now=now, backfill=backfill, on_crossing=no_crossings
    )
    entry = next(e for e in outcome.entries if e.id == outcome.postings[0])
    return WriteResult(
        entry=_entry_out(entry, written.id(member.id, entry.id), now),
        balance=members.balance_of(
            external_id, outcome.state.figures, programme.currency
        ).model_dump(mode="json"),
    )


def _entry_out(entry: NewEntry, entry_id: int, now: datetime) -> EntryOut:
    return EntryOut(
        id=entry_id,
        entry_type=entry.entry_type,
        points=entry.points,
        balance_after=entry.balance_after,
        shortfall=entry.shortfall,
        reason=entry.reason,
        source_type=entry.source_type,
        source_ref=entry.source_ref,
        rule_id=entry.rule_id,
        actor=entry.actor,
        occurred_at=entry.occurred_at,
        recorded_at=now,
    )
