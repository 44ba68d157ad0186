"""Reading a member's tier progress, and refreshing tiers after a programme edit.

The arithmetic is in :mod:`lealta.tiers.maths`; placement, upgrades and period reviews are
decided by the engine (:mod:`lealta.engine.core`) on the path of every event and by the
points-and-tiers job.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import ScalarSelect, Select, Table, bindparam, func, null, select, true
from sqlalchemy.orm import Session

from lealta.engine import core as engine
from lealta.events import store
from lealta.events.service import no_crossings, run_loading
from lealta.kit.db import Database, UTCDateTime
from lealta.kit.money import exponent
from lealta.members.service import AccountView, MemberView
from lealta.models import Account, LedgerEntry, Order, TierChange
from lealta.programme.schema import Programme, Tiers
from lealta.tiers import maths
from lealta.tiers.schemas import TierChangeOut

# --- reading -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierStatus:
    tiers: Tiers
    progress: maths.Progress
    held_until: datetime | None
    since: datetime | None
    history: list[TierChangeOut]


def status(
    session: Session,
    programme: Programme,
    member: MemberView,
    account: AccountView,
    *,
    now: datetime,
) -> TierStatus | None:
    """Current tier, qualifying value, next tier, progress, the estimated date to reach it
    (from the member's own rate over the last year) and the latest 50 changes; one Core
    statement (lifetime spend is read from the account row)."""
    tiers = programme.tiers
    if tiers is None:
        return None
    start = maths.window_start(tiers, now)
    # Lifetime spend up to now is kept on the account row: no sum over the orders.
    from_account = (
        tiers.basis == "spend"
        and start is None
        and account.last_order_at is not None
        and now >= account.last_order_at
    )
    rows = (
        session.connection()
        .execute(
            _status_statement(tiers.basis, from_account, start is not None),
            {
                "member_id": account.member_id,
                "end": now,
                "window_start": start,
                "year_start": now - timedelta(days=365),
            },
        )
        .all()
    )
    figures = rows[0]
    scale = -exponent(programme.currency) if tiers.basis == "spend" else 0
    if from_account:
        value = Decimal(account.qualifying_spend_minor).scaleb(scale)
    else:
        value = Decimal(int(figures.value)).scaleb(scale)
    first = figures.first_order_at if tiers.basis == "spend" else member.enrolled_at
    rate = None
    if first is not None:
        last_year = Decimal(int(figures.last_year)).scaleb(scale)
        rate = maths.spending_rate(last_year, (now - first).days)
    current_id = account.tier_id if programme.tier(account.tier_id) else tiers.levels[0].id
    progress = maths.progress(tiers, current_id, value, rate_per_day=rate, today=now.date())
    history = [
        TierChangeOut(
            from_tier=row.from_tier,
            to_tier=row.to_tier,
            direction=row.direction,
            qualifying_value=row.qualifying_value,
            reason=row.reason,
            occurred_at=row.occurred_at,
        )
        for row in rows
        if row.to_tier is not None
    ]
    return TierStatus(tiers, progress, account.tier_held_until, account.tier_since, history)


_orders = cast(Table, Order.__table__)
_entries = cast(Table, LedgerEntry.__table__)
_changes = cast(Table, TierChange.__table__)
HISTORY_LIMIT = 50


def _basis_sum(basis: str, start: str | None) -> ScalarSelect[Any]:
    """The tier basis of member ``:member_id`` summed over ``(:start, :end]`` (from the
    beginning without ``start``): net spend in minor units, or points earned."""
    if basis == "spend":
        at = _orders.c.occurred_at
        stmt = select(
            func.coalesce(func.sum(_orders.c.total_minor - _orders.c.refunded_minor), 0)
        ).where(_orders.c.member_id == bindparam("member_id"))
    else:
        at = _entries.c.occurred_at
        stmt = select(func.coalesce(func.sum(_entries.c.points), 0)).where(
            _entries.c.member_id == bindparam("member_id"),
            _entries.c.entry_type.in_(("earn", "reverse")),
        )
    stmt = stmt.where(at <= bindparam("end", type_=UTCDateTime()))
    if start is not None:
        stmt = stmt.where(at > bindparam(start, type_=UTCDateTime()))
    return stmt.scalar_subquery()


@functools.cache
def _status_statement(basis: str, from_account: bool, windowed: bool) -> Select[Any]:
    """The figures of :func:`status` (window value, last year's value, first order) joined
    to the member's latest tier changes: one row per change, or one row without any. Built
    once per shape; the moments travel as parameters."""
    figures = select(
        (null() if from_account else _basis_sum(basis, "window_start" if windowed else None)).label(
            "value"
        ),
        _basis_sum(basis, "year_start").label("last_year"),
        (
            select(func.min(_orders.c.occurred_at))
            .where(_orders.c.member_id == bindparam("member_id"))
            .scalar_subquery()
            if basis == "spend"
            else null()
        ).label("first_order_at"),
    ).subquery("figures")
    history = (
        select(_changes)
        .where(_changes.c.member_id == bindparam("member_id"))
        .order_by(_changes.c.occurred_at.desc(), _changes.c.id.desc())
        .limit(HISTORY_LIMIT)
        .subquery("history")
    )
    return (
        select(figures, history)
        .select_from(figures.outerjoin(history, true()))
        .order_by(history.c.occurred_at.desc(), history.c.id.desc())
    )


def refresh_all(db: Database, programme: Programme, *, now: datetime, batch_size: int = 500) -> int:
    """After a programme edit: upgrade every member who now qualifies; never downgrade.

    Each member is handled by the engine under its account lock in its own unit of work;
    running it twice changes nothing the second time. Returns how many members moved up.
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
                state = store.lock_and_load(session, None, now, member_id=member_id).state
                if state is None:  # pragma: no cover - erased meanwhile
                    continue
                outcome = run_loading(
                    session, programme, state, lambda s: engine.upgrade(programme, s, now), at=now
                )
                store.write_all(
                    session,
                    [(member_id, outcome)],
                    now=now,
                    backfill=False,
                    on_crossing=no_crossings,
                )
                upgraded += any(m.direction == "upgrade" for m in outcome.tier_moves)
        last_id = ids[-1]
