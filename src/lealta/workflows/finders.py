"""Who is due for a time-based trigger at ``now``: one SELECT per trigger, no Python loop.

:func:`due` returns a SQLAlchemy Core SELECT of labelled ``member_id`` and ``occurrence``
columns that runs on SQLite and PostgreSQL alike, meant to be fed to an
``INSERT … SELECT`` that starts runs idempotently on ``(workflow, member, occurrence)``.
Erased members (an erasure scheduled or completed) are never due.

Timezones: SQLite has no timezone database, so the local date of each member is not computed
by SQL. At any instant at most three calendar dates exist on Earth; the finder lists the
zones whose date differs from the programme zone's (a small ``VALUES`` table) and joins it on
the member's timezone; every other member (same date as the programme, or an unknown zone)
takes the programme zone's date.

Dates of timestamps (last order, enrolment, lot expiry) are UTC dates.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    and_,
    case,
    column,
    exists,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    values,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from lealta.jobs.periodic import latest_tick
from lealta.kit.db import UTCDateTime
from lealta.kit.money import exponent
from lealta.models import Account, LedgerEntry, Member, MemberErasure, Order, PointLot
from lealta.programme.schema import Programme
from lealta.tiers import maths as tier_maths
from lealta.workflows import triggers as t

_members = cast(Table, Member.__table__)
_accounts = cast(Table, Account.__table__)
_erasures = cast(Table, MemberErasure.__table__)
_lots = cast(Table, PointLot.__table__)
_entries = cast(Table, LedgerEntry.__table__)
_orders = cast(Table, Order.__table__)

Due = Select[tuple[int, str]]


# --- dialect-neutral date text -------------------------------------------------------------


class UtcDay(FunctionElement[str]):
    """``YYYY-MM-DD`` of a UTC timestamp column."""

    type = String()
    name = "utc_day"
    inherit_cache = True


class MonthDay(FunctionElement[int]):
    """``month * 100 + day`` of a DATE column (229 for 29 February)."""

    type = Integer()
    name = "month_day"
    inherit_cache = True


class UtcMonthDay(FunctionElement[int]):
    """``month * 100 + day`` of a UTC timestamp column."""

    type = Integer()
    name = "utc_month_day"
    inherit_cache = True


@compiles(UtcDay)
def _utc_day_sqlite(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite stores naive UTC text ("2026-01-05 12:00:00.000000").
    return f"strftime('%Y-%m-%d', {compiler.process(element.clauses, **kw)})"


@compiles(UtcDay, "postgresql")
def _utc_day_pg(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@compiles(MonthDay)
def _month_day_sqlite(element: MonthDay, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite stores dates as 'YYYY-MM-DD' text: slicing it is the cheapest read.
    x = compiler.process(element.clauses, **kw)
    return f"CAST(substr({x}, 6, 2) || substr({x}, 9, 2) AS INTEGER)"


@compiles(MonthDay, "postgresql")
def _month_day_pg(element: MonthDay, compiler: SQLCompiler, **kw: Any) -> str:
    # date_part on a date is about twice as fast as to_char (measured over 100,000 members).
    x = compiler.process(element.clauses, **kw)
    return f"CAST(date_part('month', {x}) * 100 + date_part('day', {x}) AS INTEGER)"


@compiles(UtcMonthDay)
def _utc_month_day_sqlite(element: UtcMonthDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(strftime('%m%d', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(UtcMonthDay, "postgresql")
def _utc_month_day_pg(element: UtcMonthDay, compiler: SQLCompiler, **kw: Any) -> str:
    x = f"(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC')"
    return f"CAST(date_part('month', {x}) * 100 + date_part('day', {x}) AS INTEGER)"


# --- the finders ---------------------------------------------------------------------------


def _not_erased() -> ColumnElement[bool]:
    return ~exists().where(_erasures.c.member_id == _members.c.id)


def _result(member_id: ColumnElement[Any], occurrence: ColumnElement[Any]) -> Due:
    return select(
        member_id.label("member_id"),
        func.coalesce(occurrence, literal_column("''", String())).label("occurrence"),
    ).where(_not_erased())


def _at(value: datetime) -> ColumnElement[datetime]:
    return literal(value, UTCDateTime())


def _celebration(
    now: datetime, programme: Programme, ahead: int
) -> tuple[Any, list[Any], list[ColumnElement[Any]]]:
    """The per-zone day table joined to members, and the columns (date, month-day,
    alternative month-day) each member celebrates: from the table when their zone is listed,
    else the programme zone's; and every month-day celebrated somewhere."""
    base, others = t.zone_days(now, fallback=programme.timezone, ahead=ahead)
    rows = [(z.zone, z.day.isoformat(), z.month_day, z.alt_month_day) for z in [base, *others]]
    zones = values(
        column("zone", String),
        column("day", String),
        column("md", Integer),
        column("alt_md", Integer),
        name="zone_days",
        literal_binds=True,
    ).data(rows)
    table = zones.cte("zone_days")
    cols = [
        func.coalesce(table.c.day, _const(base.day.isoformat())),
        func.coalesce(table.c.md, _const(base.month_day)),
        func.coalesce(table.c.alt_md, _const(base.alt_month_day)),
    ]
    found = sorted({m for z in [base, *others] for m in (z.month_day, z.alt_month_day)})
    return table, cols, [_const(m) for m in found]


def _const(value: int | str) -> ColumnElement[Any]:
    """A constant written into the SQL (an int, or an ISO date we formatted), not bound: the
    statement then has no parameters, and PostgreSQL plans it with the real month-days (a
    prepared statement's generic plan would not use the month-day index)."""
    if isinstance(value, int):
        return literal_column(str(int(value)), Integer())
    assert value.replace("-", "").isdigit()
    return literal_column(f"'{value}'", String())


def _birthday(trigger: t.BirthdayTrigger, programme: Programme, now: datetime) -> Due:
    table, (day, md, alt_md), candidates = _celebration(now, programme, trigger.days_before)
    born = MonthDay(_members.c.birthday)
    # The few month-days celebrated somewhere now, as constants: the expression index of
    # migration 0021 finds their members; the zone table then keeps each member's own.
    return (
        _result(_members.c.id, day)
        .select_from(_members.outerjoin(table, table.c.zone == _members.c.timezone))
        .where(born.in_(candidates), born.in_([md, alt_md]))
    )


def _anniversary(programme: Programme, now: datetime) -> Due:
    table, (day, md, alt_md), _ = _celebration(now, programme, 0)
    enrolled = UtcMonthDay(_members.c.enrolled_at)
    return (
        _result(_members.c.id, day)
        .select_from(_members.outerjoin(table, table.c.zone == _members.c.timezone))
        # The same MM-DD and enrolled more than two days ago: a year or more ago.
        .where(
            enrolled.in_([md, alt_md]),
            _members.c.enrolled_at < _at(now - timedelta(days=2)),
        )
    )


def _inactivity(trigger: t.InactivityTrigger, now: datetime) -> Due:
    cutoff = _at(now - timedelta(days=trigger.days))
    last = _accounts.c.last_order_at
    return (
        _result(_members.c.id, UtcDay(func.coalesce(last, _members.c.enrolled_at)))
        .select_from(_members.outerjoin(_accounts, _accounts.c.member_id == _members.c.id))
        .where(
            or_(
                last <= cutoff,
                and_(last.is_(None), _members.c.enrolled_at <= cutoff),
            )
        )
    )


def _points_expiring(trigger: t.PointsExpiringTrigger, now: datetime) -> Due:
    expiring = (
        select(
            _lots.c.member_id,
            func.min(_lots.c.expires_at).label("first_expiry"),
        )
        .where(
            _lots.c.remaining > 0,
            _lots.c.pending == false(),
            _lots.c.expires_at > _at(now),
            _lots.c.expires_at <= _at(now + timedelta(days=trigger.within_days)),
        )
        .group_by(_lots.c.member_id)
        .having(func.sum(_lots.c.remaining) >= trigger.min_points)
        .subquery("expiring")
    )
    return _result(_members.c.id, UtcDay(expiring.c.first_expiry)).select_from(
        _members.join(expiring, expiring.c.member_id == _members.c.id)
    )


def _unused_points(trigger: t.UnusedPointsTrigger, now: datetime) -> Due:
    cutoff = _at(now - timedelta(days=trigger.older_than_days))
    old = (
        select(_lots.c.member_id, func.sum(_lots.c.remaining).label("points"))
        .where(_lots.c.remaining > 0, _lots.c.pending == false(), _lots.c.earned_at <= cutoff)
        .where(or_(_lots.c.expires_at.is_(None), _lots.c.expires_at > _at(now)))
        .group_by(_lots.c.member_id)
        .having(func.sum(_lots.c.remaining) >= trigger.min_points)
        .subquery("old_points")
    )
    last_redeem = (
        select(func.max(_entries.c.occurred_at))
        .where(_entries.c.member_id == _members.c.id, _entries.c.entry_type == "redeem")
        .correlate(_members)
        .scalar_subquery()
    )
    since = func.coalesce(last_redeem, _members.c.enrolled_at)
    return (
        _result(_members.c.id, UtcDay(since))
        .select_from(
            _members.join(old, old.c.member_id == _members.c.id).join(
                _accounts, _accounts.c.member_id == _members.c.id
            )
        )
        .where(
            _accounts.c.points_available >= trigger.min_points,
            ~exists().where(
                _entries.c.member_id == _members.c.id,
                _entries.c.entry_type == "redeem",
                _entries.c.occurred_at > cutoff,
            ),
        )
    )


def _tier_value(programme: Programme, now: datetime) -> tuple[ColumnElement[Any], Any]:
    """The qualifying value per member (minor units or points) and the derived table to
    outer-join for it (None when the account row holds it)."""
    tiers = programme.tiers
    assert tiers is not None
    start = tier_maths.window_start(tiers, now)
    if tiers.basis == "spend" and start is None:
        return func.coalesce(_accounts.c.qualifying_spend_minor, 0), None
    if tiers.basis == "spend":
        at = _orders.c.occurred_at
        stmt = select(
            _orders.c.member_id,
            func.sum(_orders.c.total_minor - _orders.c.refunded_minor).label("value"),
        ).group_by(_orders.c.member_id)
    else:
        at = _entries.c.occurred_at
        stmt = (
            select(_entries.c.member_id, func.sum(_entries.c.points).label("value"))
            .where(_entries.c.entry_type.in_(("earn", "reverse")))
            .group_by(_entries.c.member_id)
        )
    stmt = stmt.where(at <= _at(now))
    if start is not None:
        stmt = stmt.where(at > _at(start))
    sums = stmt.subquery("qualifying")
    return func.coalesce(sums.c.value, 0), sums


def _near_tier(trigger: t.NearTierTrigger, programme: Programme, now: datetime) -> Due:
    tiers = programme.tiers
    if tiers is None:
        return _nobody()
    bounds = t.near_tier_bounds(
        tiers,
        scale=exponent(programme.currency),
        within_amount=trigger.within_amount,
        within_percent=trigger.within_percent,
    )
    by_tier = {b.current: b for b in bounds}
    entry = by_tier.get(tiers.levels[0].id)
    tier_id = _accounts.c.tier_id

    def pick(field: str) -> ColumnElement[Any]:
        whens = [
            (tier_id == level.id, _bound(by_tier.get(level.id), field))
            for level in tiers.levels[1:]
        ]
        return case(*whens, else_=_bound(entry, field))

    value, sums = _tier_value(programme, now)
    low, high, target = pick("low"), pick("high"), pick("target")
    if tiers.period == "lifetime":
        occurrence: ColumnElement[Any] = target
    elif tiers.period == "calendar_year":
        occurrence = target + f":{t.local_date(now, programme.timezone).year}"
    else:
        since = func.coalesce(_accounts.c.tier_since, _members.c.enrolled_at)
        occurrence = target + ":" + UtcDay(since)
    joined = _members.outerjoin(_accounts, _accounts.c.member_id == _members.c.id)
    if sums is not None:
        joined = joined.outerjoin(sums, sums.c.member_id == _members.c.id)
    return (
        _result(_members.c.id, occurrence)
        .select_from(joined)
        .where(target.is_not(None), value >= low, value < high)
    )


def _bound(bound: t.NearBound | None, field: str) -> ColumnElement[Any]:
    if bound is None:
        return null()
    if field == "target":
        return literal(bound.target, String())
    return literal(getattr(bound, field), BigInteger())


def _near_reward(trigger: t.NearRewardTrigger, programme: Programme, now: datetime) -> Due:
    rewards = sorted(
        (
            r
            for r in programme.rewards
            if r.cost > 0
            and (trigger.reward is None or r.id == trigger.reward)
            and (r.available_from is None or r.available_from <= now)
            and (r.available_until is None or now < r.available_until)
        ),
        key=lambda r: (r.cost, r.id),
    )
    if not rewards:
        return _nobody()
    points = func.coalesce(_accounts.c.points_available, 0)
    whens = []
    for reward in rewards:
        near = and_(points < reward.cost, points >= reward.cost - trigger.within_points)
        if reward.tiers is not None:
            near = and_(near, _accounts.c.tier_id.in_(reward.tiers))
        whens.append((near, literal(reward.id, String())))
    chosen = case(*whens, else_=null())
    # Once per reward until the member spends points again.
    spent = sa.cast(func.coalesce(_accounts.c.lifetime_spent, 0), String)
    return (
        _result(_members.c.id, chosen + ":" + spent)
        .select_from(_members.outerjoin(_accounts, _accounts.c.member_id == _members.c.id))
        .where(chosen.is_not(None))
    )


def _schedule(trigger: t.ScheduleTrigger, programme: Programme, now: datetime) -> Due:
    tick = latest_tick(trigger.cron, now, ZoneInfo(programme.timezone))
    return _result(_members.c.id, literal(t.iso_tick(tick), String())).select_from(_members)


def _nobody() -> Due:
    return _result(_members.c.id, literal("", String())).select_from(_members).where(false())


def due(trigger: t.TimeTrigger, *, programme: Programme, now: datetime) -> Due:
    """Members due for ``trigger`` at ``now`` and the occurrence each is due for.

    The SELECT has labelled columns ``member_id`` and ``occurrence``; the occurrence is
    stable for as long as the same instance lasts (the birthday's date, the last order's
    date, the first expiry date, the target tier and period, the reward and points spent so
    far, the cron tick), so running it again fires nothing twice.
    """
    if isinstance(trigger, t.BirthdayTrigger):
        return _birthday(trigger, programme, now)
    if isinstance(trigger, t.AnniversaryTrigger):
        return _anniversary(programme, now)
    if isinstance(trigger, t.InactivityTrigger):
        return _inactivity(trigger, now)
    if isinstance(trigger, t.PointsExpiringTrigger):
        return _points_expiring(trigger, now)
    if isinstance(trigger, t.UnusedPointsTrigger):
        return _unused_points(trigger, now)
    if isinstance(trigger, t.NearTierTrigger):
        return _near_tier(trigger, programme, now)
    if isinstance(trigger, t.NearRewardTrigger):
        return _near_reward(trigger, programme, now)
    return _schedule(trigger, programme, now)
