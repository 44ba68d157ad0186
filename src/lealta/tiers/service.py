"""Tier state: placement, immediate upgrades, period-end reviews, and the member's progress.

The arithmetic is in :mod:`lealta.tiers.maths`; this module reads the qualifying value from
orders or the ledger and records each change as history and as an outbox domain event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lealta.kit.db import Database, lock_for_update
from lealta.kit.money import exponent
from lealta.ledger import lifecycle
from lealta.ledger import service as ledger
from lealta.models import Account, LedgerEntry, Member, Order, TierChange
from lealta.outbox.events import TierChanged
from lealta.outbox.service import emit
from lealta.programme.schema import Programme, Tier, Tiers
from lealta.tiers import maths


def qualifying_value(
    session: Session, programme: Programme, account: Account, *, end: datetime
) -> Decimal:
    """Net spend (currency units) or points earned in the tier window ending at ``end``."""
    tiers = programme.tiers
    assert tiers is not None
    start = maths.window_start(tiers, end)
    lifetime_now = account.last_order_at is not None and end >= account.last_order_at
    if tiers.basis == "spend" and start is None and lifetime_now:
        # Lifetime spend up to now is kept on the account row: no query on the hot path.
        return Decimal(account.qualifying_spend_minor).scaleb(-exponent(programme.currency))
    return _value_between(session, programme, account.member_id, start, end)


def _value_between(
    session: Session,
    programme: Programme,
    member_id: int,
    start: datetime | None,
    end: datetime,
) -> Decimal:
    """The tier basis summed over ``(start, end]`` (from the beginning when ``start`` is None)."""
    assert programme.tiers is not None
    if programme.tiers.basis == "spend":
        stmt = select(func.coalesce(func.sum(Order.total_minor - Order.refunded_minor), 0)).where(
            Order.member_id == member_id, Order.occurred_at <= end
        )
        if start is not None:
            stmt = stmt.where(Order.occurred_at > start)
        return Decimal(int(session.scalar(stmt) or 0)).scaleb(-exponent(programme.currency))
    points = select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
        LedgerEntry.member_id == member_id,
        LedgerEntry.entry_type.in_(("earn", "reverse")),
        LedgerEntry.occurred_at <= end,
    )
    if start is not None:
        points = points.where(LedgerEntry.occurred_at > start)
    return Decimal(int(session.scalar(points) or 0))


def place(
    session: Session,
    programme: Programme,
    account: Account,
    *,
    at: datetime,
    now: datetime,
    backfill: bool = False,
) -> None:
    """Put a member without a tier into the entry tier (first contact with a tiered programme)."""
    tiers = programme.tiers
    if tiers is None or programme.tier(account.tier_id) is not None:
        return
    _change(session, account, tiers.levels[0], "initial", Decimal(0), "Enrolled", at, now, backfill)
    account.tier_held_until = None


@dataclass(frozen=True, slots=True)
class Upgrade:
    tier: Tier
    entries: list[LedgerEntry]


def upgrade_if_qualified(
    session: Session,
    programme: Programme,
    account: Account,
    *,
    at: datetime,
    now: datetime,
    backfill: bool = False,
) -> Upgrade | None:
    """Upgrade at once if the value at ``at`` reaches a higher tier.

    Every tier reached on the way (skipped ones too) pays its ``entry_points`` once per member
    lifetime, credited at ``at``.
    """
    tiers = programme.tiers
    if tiers is None:
        return None
    place(session, programme, account, at=at, now=now, backfill=backfill)
    value = qualifying_value(session, programme, account, end=at)
    target = maths.level_for(tiers, value)
    before = maths.rank(tiers, account.tier_id)
    after = maths.rank(tiers, target.id)
    if after <= before:
        return None
    _change(
        session, account, target, "upgrade", value, "Qualifying value reached", at, now, backfill
    )
    account.tier_held_until = maths.held_until(tiers, at)
    entries = [
        entry
        for level in tiers.levels[before + 1 : after + 1]
        if (entry := _entry_reward(session, programme, account, level, at=at, now=now))
    ]
    return Upgrade(target, entries)


def _entry_reward(
    session: Session,
    programme: Programme,
    account: Account,
    level: Tier,
    *,
    at: datetime,
    now: datetime,
) -> LedgerEntry | None:
    if level.entry_points <= 0:
        return None
    rule_id = f"tier-entry:{level.id}"
    session.flush()
    already = session.scalar(
        select(LedgerEntry.id).where(
            LedgerEntry.member_id == account.member_id, LedgerEntry.rule_id == rule_id
        )
    )
    if already is not None:
        return None
    return ledger.credit(
        session,
        account,
        entry_type="earn",
        points=level.entry_points,
        reason=f"Welcome to {level.name.es}",
        source=ledger.Source("tier", level.id),
        occurred_at=at,
        now=now,
        rule_id=rule_id,
        expires_at=lifecycle.expiry_for(programme, at),
    )


def review(
    session: Session,
    programme: Programme,
    account: Account,
    *,
    at: datetime,
    now: datetime,
    backfill: bool = False,
) -> None:
    """Run every tier review due by ``at`` (several if history spans several periods)."""
    tiers = programme.tiers
    if tiers is None:
        return
    place(session, programme, account, at=at, now=now, backfill=backfill)
    while account.tier_held_until is not None and account.tier_held_until <= at:
        held = account.tier_held_until
        period_end = maths.review_period_end(tiers, held)
        value = qualifying_value(session, programme, account, end=period_end)
        target = maths.level_for(tiers, value)
        if maths.rank(tiers, target.id) < maths.rank(tiers, account.tier_id):
            _change(
                session, account, target, "downgrade", value, "Period review", held, now, backfill
            )
        if maths.rank(tiers, account.tier_id) == 0:
            account.tier_held_until = None
        else:
            account.tier_held_until = maths.held_until(
                tiers, period_end + timedelta(microseconds=1)
            )


def _change(
    session: Session,
    account: Account,
    tier: Tier,
    direction: str,
    value: Decimal,
    reason: str,
    at: datetime,
    now: datetime,
    backfill: bool,
) -> None:
    previous = account.tier_id
    account.tier_id = tier.id
    account.tier_since = at
    account.updated_at = now
    session.add(
        TierChange(
            member_id=account.member_id,
            from_tier=previous,
            to_tier=tier.id,
            direction=direction,
            qualifying_value=str(value),
            reason=reason,
            occurred_at=at,
            recorded_at=now,
        )
    )
    if direction != "initial":
        emit(
            session,
            TierChanged(
                from_tier=previous,
                to_tier=tier.id,
                direction=direction,
                qualifying_value=value,
                at=at,
            ),
            member_id=account.member_id,
            now=now,
            backfill=backfill,
        )


# --- reading -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierStatus:
    tiers: Tiers
    progress: maths.Progress
    held_until: datetime | None
    since: datetime | None
    history: list[TierChange]


def status(
    session: Session, programme: Programme, member: Member, account: Account, *, now: datetime
) -> TierStatus | None:
    """Current tier, qualifying value, next tier, progress and estimated date to reach it."""
    tiers = programme.tiers
    if tiers is None:
        return None
    value = qualifying_value(session, programme, account, end=now)
    rate = _rate(session, programme, account, member, now)
    current_id = account.tier_id if programme.tier(account.tier_id) else tiers.levels[0].id
    progress = maths.progress(tiers, current_id, value, rate_per_day=rate, today=now.date())
    history = list(
        session.scalars(
            select(TierChange)
            .where(TierChange.member_id == member.id)
            .order_by(TierChange.occurred_at.desc(), TierChange.id.desc())
            .limit(50)
        )
    )
    return TierStatus(tiers, progress, account.tier_held_until, account.tier_since, history)


def _rate(
    session: Session, programme: Programme, account: Account, member: Member, now: datetime
) -> Decimal | None:
    """The member's own qualifying rate per day over the last year (or since enrolment)."""
    tiers = programme.tiers
    assert tiers is not None
    value = _value_between(session, programme, account.member_id, now - timedelta(days=365), now)
    if tiers.basis == "spend":
        first = session.scalar(
            select(func.min(Order.occurred_at)).where(Order.member_id == account.member_id)
        )
    else:
        first = member.enrolled_at
    if first is None:
        return None
    days = (now - first).days
    return maths.spending_rate(value, days)


def refresh_all(db: Database, programme: Programme, *, now: datetime, batch_size: int = 500) -> int:
    """After a programme edit: upgrade every member who now qualifies; never downgrade.

    Each member is handled under its account lock in its own unit of work; running it twice
    changes nothing the second time. Returns how many members moved up.
    """
    if programme.tiers is None:
        return 0
    upgraded = 0
    last_id = 0
    while True:
        with db.unit_of_work(write=False) as session:
            ids = list(
                session.scalars(
                    select(Account.member_id)
                    .where(Account.member_id > last_id)
                    .order_by(Account.member_id)
                    .limit(batch_size)
                )
            )
        if not ids:
            return upgraded
        for member_id in ids:
            with db.unit_of_work() as session:
                account = session.scalars(
                    lock_for_update(select(Account).where(Account.member_id == member_id))
                ).one()
                if upgrade_if_qualified(session, programme, account, at=now, now=now):
                    upgraded += 1
        last_id = ids[-1]
