"""What one bulk row or one migrated balance does to a member: pure engine steps.

Each function takes a member's state and returns an :class:`~lealta.engine.outcome.Outcome`,
as the engine's own entry points do (no session, no clock, no I/O), built on the engine's
working state so that balances, lots and tier moves follow exactly the rules of every other
change of points. A refused step raises a :class:`~lealta.kit.errors.LealtaError` and
changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from lealta.engine.core import Context, _Work, expiry_for
from lealta.engine.outcome import Outcome
from lealta.engine.state import MemberState, StateIncomplete
from lealta.kit.errors import InvalidInput
from lealta.programme.schema import Programme
from lealta.tiers import maths as tier_maths

BULK_SOURCE = "bulk"
MIGRATION_SOURCE = "migration"


class UnknownTier(InvalidInput):
    code = "unknown_tier"


class TierUnchanged(InvalidInput):
    code = "tier_unchanged"


class AlreadyExpired(InvalidInput):
    code = "already_expired"


def points(
    programme: Programme,
    state: MemberState,
    *,
    points: int,
    reason: str,
    actor: str,
    at: datetime,
    operation_id: int,
    line: int,
) -> Outcome:
    """Credit (``points`` > 0, a lot that never expires, as a manual adjustment) or debit
    (< 0, refused with ``insufficient_points`` beyond what is available) one bulk row; the
    entry names the operation (``source_type = 'bulk'``, ``source_ref`` its id)."""
    if points == 0:
        raise InvalidInput("A row of 0 points changes nothing.", code="zero_points")
    work = _Work(programme, state, Context(actor=actor))
    common = {
        "entry_type": "adjust",
        "reason": reason,
        "source_type": BULK_SOURCE,
        "source_ref": str(operation_id),
        "occurred_at": at,
        "actor": actor,
        "details": {"bulk_operation": operation_id, "line": line},
    }
    if points > 0:
        entry = work.credit(points=points, **common)  # type: ignore[arg-type]
    else:
        entry = work.debit(points=-points, **common)  # type: ignore[arg-type]
    return work.outcome([entry])


def move_tier(
    programme: Programme, state: MemberState, *, tier_id: str, reason: str, at: datetime
) -> Outcome:
    """Put the member in ``tier_id`` at ``at`` (up or down), held as if reached then: until
    the end of that period plus grace, when the usual review judges it. No entry points are
    paid for a tier given by hand; the same tier again is ``tier_unchanged``."""
    work = _Work(programme, state, Context())
    if not _place(work, tier_id=tier_id, reason=reason, at=at):
        raise TierUnchanged(f"The member already holds '{tier_id}'.", details={"tier": tier_id})
    return work.outcome()


def opening_balance(
    programme: Programme,
    state: MemberState,
    *,
    points: int,
    expires_at: datetime | None,
    tier_id: str | None,
    tier_reached_at: datetime | None,
    source_system: str,
    actor: str,
    at: datetime,
) -> Outcome:
    """A balance carried over from ``source_system``: one ledger entry (``adjust`` with
    ``source_type = 'migration'`` and ``source_ref`` the system's name), a lot expiring at
    ``expires_at`` (absent: the programme's expiry policy counted from ``at``), and the tier
    held since ``tier_reached_at`` (absent: ``at``) and kept through the period of ``at``
    plus grace, when the usual review judges it (a lifetime tier is never reviewed)."""
    if points < 0:
        raise InvalidInput("An opening balance cannot be negative.", code="negative_points")
    if expires_at is not None and expires_at <= at:
        raise AlreadyExpired(
            "These points expired before the migration; leave them out.",
            details={"expires_at": expires_at.isoformat()},
        )
    if tier_reached_at is not None and tier_reached_at > at:
        raise InvalidInput(
            "The date a tier was reached cannot be after the migration.",
            code="tier_reached_in_future",
        )
    work = _Work(programme, state, Context(actor=actor))
    if tier_id is not None:
        # Dated when it was reached, but held through the period of the migration: the value
        # that earned it lives in the old system, so the first review that can judge it is
        # the one at the end of this period (plus grace).
        _place(work, tier_id=tier_id, reason=f"Migrated from {source_system}",
               at=tier_reached_at or at, hold_from=at)  # fmt: skip
    entries = []
    if points > 0:
        entries.append(
            work.credit(
                entry_type="adjust",
                points=points,
                reason=f"Opening balance from {source_system}",
                source_type=MIGRATION_SOURCE,
                source_ref=source_system,
                occurred_at=at,
                actor=actor,
                expires_at=expires_at or expiry_for(programme, at),
                details={"source_system": source_system},
            )
        )
    return work.outcome(entries)


def _place(
    work: _Work, *, tier_id: str, reason: str, at: datetime, hold_from: datetime | None = None
) -> bool:
    """Move the member to ``tier_id`` at ``at``, held as if reached at ``hold_from`` (default
    ``at``); False when already there."""
    programme = work.programme
    tiers = programme.tiers
    tier = programme.tier(tier_id)
    if tiers is None or tier is None:
        known = [level.id for level in tiers.levels] if tiers is not None else []
        raise UnknownTier(
            f"'{tier_id}' is not a tier of the programme.",
            details={"tier": tier_id, "tiers": known},
        )
    held = work.fig.tier_id if programme.tier(work.fig.tier_id) is not None else None
    if held == tier.id:
        return False
    before = tier_maths.rank(tiers, held)
    after = tier_maths.rank(tiers, tier.id)
    direction = "initial" if held is None else "upgrade" if after > before else "downgrade"
    try:
        value = work.qualifying_value(at)
    except StateIncomplete:
        value = Decimal(0)
    work.move(tier, direction, value, reason, at)
    work.fig.tier_held_until = None if after == 0 else tier_maths.held_until(tiers, hold_from or at)
    return True
