"""Incremental roll-ups of the programme dashboard, and their full rebuild.

The unit of work is one member. :func:`member_facts` (pure) turns a member's enrolment, orders
and ledger entries into one :class:`DayFacts` per UTC day. :func:`sync_members` recomputes
members' facts, compares them with the stored ``analytics_member_days`` rows and adds the
*difference* to the programme totals (``analytics_daily``, ``analytics_monthly``,
``analytics_cohorts``). Because a sync replaces a member's facts instead of adding an
event's amounts, it is idempotent: a redelivered or reordered event leaves every total as it
was. Each outbox row is also recorded in ``analytics_applied`` so a redelivery skips the
work. A sync costs a few set-wise statements per :data:`SYNC_CHUNK` members (their histories
by index), never a scan of the ledger.

:func:`rebuild` empties the tables and recomputes every member with the same pure function,
so the totals of a rebuild equal those kept incrementally (a property test checks it).

Days are UTC calendar days of the event time (``occurred_at``); a refund counts on the day of
the order it refunds; points are positive numbers per movement (``points_adjusted`` is signed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import Table, and_, delete, insert, select, text, tuple_, update
from sqlalchemy.orm import Session

from lealta.jobs.dispatch import OutboxInfo
from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import JobContext
from lealta.kit.db import dialect_insert, lock_for_update
from lealta.kit.logging import get_logger
from lealta.models import (
    AnalyticsApplied,
    AnalyticsCohort,
    AnalyticsDaily,
    AnalyticsMember,
    AnalyticsMemberDay,
    AnalyticsMonthly,
    LedgerEntry,
    Member,
    Order,
)
from lealta.outbox import events as domain
from lealta.outbox.subscribers import subscribe

log = get_logger("lealta.analytics.rollups")

SUBSCRIBER = "analytics.rollups"
REBUILD_CHUNK = 2000

FLOWS = (
    "orders",
    "revenue_minor",
    "refunded_minor",
    "points_earned",
    "points_reversed",
    "points_redeemed",
    "points_expired",
    "points_adjusted",
)
"""The additive figures of a day, columns of both member and programme day rows."""


@dataclass(frozen=True, slots=True)
class DayFacts:
    """One member's figures on one day."""

    orders: int = 0
    revenue_minor: int = 0
    refunded_minor: int = 0
    points_earned: int = 0
    points_reversed: int = 0
    points_redeemed: int = 0
    points_expired: int = 0
    points_adjusted: int = 0
    enrolled: int = 0

    @property
    def bought(self) -> bool:
        return self.orders > 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """Everything the roll-ups hold about one member."""

    enrolled_day: date
    days: dict[date, DayFacts]

    @property
    def cohort(self) -> date:
        return month_of(self.enrolled_day)

    @property
    def active_months(self) -> set[date]:
        return {month_of(d) for d, f in self.days.items() if f.bought}

    @property
    def first_order_day(self) -> date | None:
        return min((d for d, f in self.days.items() if f.bought), default=None)


_LEDGER_FIELD = {
    "earn": ("points_earned", 1),
    "reverse": ("points_reversed", -1),
    "redeem": ("points_redeemed", -1),
    "expire": ("points_expired", -1),
    "adjust": ("points_adjusted", 1),
}


def day_of(at: datetime) -> date:
    """The UTC calendar day of a timestamp."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).date()


def month_of(day: date) -> date:
    """The first day of ``day``'s month."""
    return day.replace(day=1)


def member_facts(
    enrolled_at: datetime,
    orders: Iterable[tuple[datetime, int, int]],
    entries: Iterable[tuple[datetime, str, int]],
) -> MemberFacts:
    """A member's day facts from its enrolment, orders ``(occurred_at, total, refunded)`` and
    ledger entries ``(occurred_at, entry_type, points)``. Pure."""
    acc: dict[date, dict[str, int]] = {}

    def row(day: date) -> dict[str, int]:
        return acc.setdefault(day, dict.fromkeys((*FLOWS, "enrolled"), 0))

    enrolled_day = day_of(enrolled_at)
    row(enrolled_day)["enrolled"] = 1
    for at, total, refunded in orders:
        r = row(day_of(at))
        r["orders"] += 1
        r["revenue_minor"] += int(total)
        r["refunded_minor"] += int(refunded)
    for at, entry_type, points in entries:
        name, sign = _LEDGER_FIELD[entry_type]
        row(day_of(at))[name] += sign * int(points)
    return MemberFacts(enrolled_day, {d: DayFacts(**r) for d, r in acc.items()})


# --- totals (pure) ---------------------------------------------------------------------------


@dataclass(slots=True)
class Totals:
    """Programme totals: per day (flows, ``new_members``, ``active_members``), per month
    (``active_members``, ``new_members``, ``orders``, ``revenue_minor``) and per cohort-month."""

    daily: dict[date, Counter[str]]
    monthly: dict[date, Counter[str]]
    cohorts: Counter[tuple[date, date]]

    @classmethod
    def empty(cls) -> Totals:
        return cls({}, {}, Counter())

    def add(self, facts: MemberFacts | None, sign: int = 1) -> None:
        """Add (``sign=1``) or take away (``-1``) one member's contribution."""
        if facts is None:
            return
        for day, f in facts.days.items():
            d = self.daily.setdefault(day, Counter())
            for name in FLOWS:
                d[name] += sign * getattr(f, name)
            d["new_members"] += sign * f.enrolled
            d["active_members"] += sign * int(f.bought)
            m = self.monthly.setdefault(month_of(day), Counter())
            m["orders"] += sign * f.orders
            m["revenue_minor"] += sign * f.revenue_minor
            m["new_members"] += sign * f.enrolled
        for month in facts.active_months:
            self.monthly.setdefault(month, Counter())["active_members"] += sign
            self.cohorts[(facts.cohort, month)] += sign


def difference(old: MemberFacts | None, new: MemberFacts | None) -> Totals:
    """What replacing ``old`` by ``new`` adds to the programme totals."""
    delta = Totals.empty()
    delta.add(old, -1)
    delta.add(new, 1)
    return delta


# --- I/O: members -------------------------------------------------------------------------


def _load_facts(session: Session, member_ids: list[int]) -> dict[int, MemberFacts]:
    """The current facts of ``member_ids`` from members, orders and the ledger."""
    if not member_ids:
        return {}
    enrolled: dict[int, datetime] = {
        m: at
        for m, at in session.execute(
            select(Member.id, Member.enrolled_at).where(Member.id.in_(member_ids))
        )
    }
    orders: dict[int, list[tuple[datetime, int, int]]] = {}
    for m, at, total, refunded in session.execute(
        select(Order.member_id, Order.occurred_at, Order.total_minor, Order.refunded_minor).where(
            Order.member_id.in_(member_ids)
        )
    ):
        orders.setdefault(m, []).append((at, total, refunded))
    entries: dict[int, list[tuple[datetime, str, int]]] = {}
    for m, at, kind, points in session.execute(
        select(
            LedgerEntry.member_id,
            LedgerEntry.occurred_at,
            LedgerEntry.entry_type,
            LedgerEntry.points,
        ).where(LedgerEntry.member_id.in_(member_ids))
    ):
        entries.setdefault(m, []).append((at, kind, points))
    return {
        m: member_facts(at, orders.get(m, ()), entries.get(m, ())) for m, at in enrolled.items()
    }


def _stored_facts(session: Session, held: dict[int, date]) -> dict[int, MemberFacts]:
    """The facts the roll-ups hold for the members of ``held`` (member -> enrolment day)."""
    days: dict[int, dict[date, DayFacts]] = {m: {} for m in held}
    names = (*FLOWS, "enrolled")
    columns = [getattr(AnalyticsMemberDay, n) for n in names]
    for member_id, day, *figures in session.execute(
        select(AnalyticsMemberDay.member_id, AnalyticsMemberDay.day, *columns).where(
            AnalyticsMemberDay.member_id.in_(list(held))
        )
    ):
        days[member_id][day] = DayFacts(**dict(zip(names, figures, strict=True)))
    return {m: MemberFacts(enrolled, days[m]) for m, enrolled in held.items()}


def _lock_members(session: Session, member_ids: list[int], now: datetime) -> dict[int, date]:
    """Lock the members' roll-up rows, in id order; the enrolment day each held. Members the
    roll-ups had not seen get a row and are left out of the answer."""
    table = cast(Table, AnalyticsMember.__table__)
    created = set(
        session.scalars(
            dialect_insert(session, table)
            .values(
                [
                    {"member_id": m, "enrolled_day": date(1970, 1, 1), "synced_at": now}
                    for m in member_ids
                ]
            )
            .on_conflict_do_nothing()
            .returning(table.c.member_id)
        )
    )
    seen = [m for m in member_ids if m not in created]
    if not seen:
        return {}
    return {
        m: held
        for m, held in session.execute(
            lock_for_update(
                select(AnalyticsMember.member_id, AnalyticsMember.enrolled_day)
                .where(AnalyticsMember.member_id.in_(seen))
                .order_by(AnalyticsMember.member_id)
            )
        )
    }


SYNC_CHUNK = 500
"""Members synced per round of statements (the ``IN`` lists and multi-row inserts stay small)."""


def sync_member(session: Session, member_id: int, *, now: datetime) -> bool:
    """Bring one member's roll-up rows and their share of the totals up to date; whether
    anything changed (see :func:`sync_members`)."""
    return sync_members(session, [member_id], now=now) > 0


def sync_members(session: Session, member_ids: Iterable[int], *, now: datetime) -> int:
    """Bring the members' roll-up rows and their share of the totals up to date; how many
    changed.

    A round of a few set-wise statements per :data:`SYNC_CHUNK` members, whatever their
    number: lock their ``analytics_members`` rows (in id order, so concurrent syncs queue
    instead of deadlocking), read what the roll-ups hold and the facts, then write the
    changed day rows and one combined difference of the totals. Safe to repeat and to run
    concurrently for the same members.
    """
    ids = sorted(set(member_ids))
    changed = 0
    for start in range(0, len(ids), SYNC_CHUNK):
        changed += _sync_chunk(session, ids[start : start + SYNC_CHUNK], now)
    return changed


def _sync_chunk(session: Session, ids: list[int], now: datetime) -> int:
    held = _lock_members(session, ids, now)
    old = _stored_facts(session, held)
    new = _load_facts(session, ids)
    delta = Totals.empty()
    unchanged: list[int] = []
    gone: list[int] = []
    members: list[dict[str, Any]] = []
    stale_days: list[tuple[int, date]] = []
    day_rows: list[dict[str, Any]] = []
    for m in ids:
        before, after = old.get(m), new.get(m)
        if before == after:
            unchanged.append(m)
            continue
        delta.add(before, -1)
        delta.add(after, 1)
        old_days = before.days if before is not None else {}
        new_days = after.days if after is not None else {}
        for d in sorted(old_days.keys() | new_days.keys()):
            if old_days.get(d) == new_days.get(d):
                continue
            stale_days.append((m, d))
            if d in new_days:
                day_rows.append({"member_id": m, "day": d, **new_days[d].as_dict()})
        if after is None:
            gone.append(m)
        else:
            members.append(
                {
                    "member_id": m,
                    "enrolled_day": after.enrolled_day,
                    "first_order_day": after.first_order_day,
                    "synced_at": now,
                }
            )
    if unchanged:
        session.execute(
            update(AnalyticsMember)
            .where(AnalyticsMember.member_id.in_(unchanged))
            .values(synced_at=now)
        )
    _apply_totals(session, delta)
    key = tuple_(AnalyticsMemberDay.member_id, AnalyticsMemberDay.day)
    for start in range(0, len(stale_days), SYNC_CHUNK):
        session.execute(
            delete(AnalyticsMemberDay).where(key.in_(stale_days[start : start + SYNC_CHUNK]))
        )
    if day_rows:
        session.execute(insert(AnalyticsMemberDay), day_rows)
    if gone:
        session.execute(delete(AnalyticsMember).where(AnalyticsMember.member_id.in_(gone)))
    if members:
        session.execute(update(AnalyticsMember), members)
    return len(ids) - len(unchanged)


def _upsert_add(
    session: Session, model: type[Any], keys: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    """Add each row's figures to the row with the same key (inserting it if missing), then
    drop the touched rows that came to zero (a rebuild never writes an all-zero row)."""
    if not rows:
        return
    table = cast(Table, model.__table__)
    figures = [c.name for c in table.columns if c.name not in keys]
    complete = [{**dict.fromkeys(figures, 0), **r} for r in rows]
    stmt = dialect_insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: table.c[name] + stmt.excluded[name] for name in figures},
    )
    session.execute(stmt, complete)
    touched = [tuple(r[k] for k in keys) for r in rows]
    key_cols = [table.c[k] for k in keys]
    all_zero = and_(*(table.c[name] == 0 for name in figures))
    for start in range(0, len(touched), 500):
        chunk = touched[start : start + 500]
        match = (
            key_cols[0].in_([t[0] for t in chunk])
            if len(keys) == 1
            else tuple_(*key_cols).in_(chunk)
        )
        session.execute(delete(table).where(match, all_zero))


def _nonzero(counter: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in counter.items() if v}


def _apply_totals(session: Session, delta: Totals) -> None:
    # In key order, so that concurrent syncs lock the rows they share in the same order.
    daily = [{"day": d, **_nonzero(c)} for d, c in sorted(delta.daily.items()) if _nonzero(c)]
    monthly = [{"month": m, **_nonzero(c)} for m, c in sorted(delta.monthly.items()) if _nonzero(c)]
    cohorts = [
        {"cohort": c, "month": m, "active_members": n}
        for (c, m), n in sorted(delta.cohorts.items())
        if n
    ]
    # Same shape per statement: executemany needs every row to name the same columns.
    _upsert_add(session, AnalyticsDaily, ("day",), _fill(daily, ("day",), AnalyticsDaily))
    _upsert_add(session, AnalyticsMonthly, ("month",), _fill(monthly, ("month",), AnalyticsMonthly))
    _upsert_add(session, AnalyticsCohort, ("cohort", "month"), cohorts)


def _fill(
    rows: list[dict[str, Any]], keys: tuple[str, ...], model: type[Any]
) -> list[dict[str, Any]]:
    table = cast(Table, model.__table__)
    names = [c.name for c in table.columns if c.name not in keys]
    return [{**dict.fromkeys(names, 0), **r} for r in rows]


# --- subscribers -----------------------------------------------------------------------------

TOPICS: tuple[type[domain.DomainEvent], ...] = (
    domain.OrderPaid,
    domain.OrderRefunded,
    domain.PointsExpired,
    domain.RewardRedeemed,
    domain.RedemptionRolledBack,
    domain.TierChanged,
    domain.ThresholdReached,
    domain.BadgeAwarded,
    domain.ChallengeCompleted,
    domain.ChallengeRevoked,
    domain.StreakRewarded,
    domain.ReferralRewarded,
    domain.SurveyAnswered,
)
"""Events after which a member's figures may have changed, the points gamification,
referrals and surveys give included (custom events and manual adjustments are counted at
the member's next such event, or by a rebuild)."""


def on_event(ctx: JobContext, event: domain.DomainEvent, message: OutboxInfo) -> None:
    """Re-sync the member an outbox row names, once per row."""
    on_events(ctx, [(event, message)])


def on_events(ctx: JobContext, items: list[tuple[domain.DomainEvent, OutboxInfo]]) -> None:
    """Re-sync each member the rows name, once however many of its rows there are (the
    facts are derived from its orders and ledger, which already hold all of them); rows
    applied before (a redelivery) are skipped. A batch of backfilled rows comes here whole."""
    ids = [message.id for _, message in items if message.member_id is not None]
    if not ids:
        return
    session = ctx.require_session()
    table = cast(Table, AnalyticsApplied.__table__)
    first = set(
        session.scalars(
            dialect_insert(session, table)
            .values([{"outbox_id": i, "applied_at": ctx.now} for i in ids])
            .on_conflict_do_nothing()
            .returning(table.c.outbox_id)
        )
    )
    for skipped in sorted(set(ids) - first):
        log.info("analytics_redelivery_skipped", outbox_id=skipped)
    sync_members(
        session,
        (m.member_id for _, m in items if m.id in first and m.member_id is not None),
        now=ctx.now,
    )


for _topic in TOPICS:
    subscribe(_topic, name=SUBSCRIBER, include_backfill=True, many=on_events)(on_event)


UNSEEN_BATCH = 1000


def sync_unseen(session: Session, *, now: datetime, limit: int = UNSEEN_BATCH) -> int:
    """Sync up to ``limit`` members the roll-ups have not seen yet (enrolled without any
    event: over the API, the console or an import of members); how many were synced."""
    ids = list(
        session.scalars(
            select(Member.id)
            .outerjoin(AnalyticsMember, AnalyticsMember.member_id == Member.id)
            .where(AnalyticsMember.member_id.is_(None))
            .order_by(Member.id)
            .limit(limit)
        )
    )
    sync_members(session, ids, now=now)
    return len(ids)


@periodic("analytics.sync_unseen", "*/5 * * * *")
def sync_unseen_job(ctx: JobContext) -> None:
    """Every five minutes: count new members that no domain event has named yet."""
    synced = sync_unseen(ctx.require_session(), now=ctx.now)
    if synced:
        log.info("analytics_members_synced", members=synced)


# --- rebuild ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RebuildReport:
    members: int
    days: int
    months: int


def _member_chunks(session: Session, size: int) -> Iterator[list[int]]:
    last = 0
    while True:
        ids = list(
            session.scalars(
                select(Member.id).where(Member.id > last).order_by(Member.id).limit(size)
            )
        )
        if not ids:
            return
        yield ids
        last = ids[-1]


def rebuild(session: Session, *, now: datetime, chunk: int = REBUILD_CHUNK) -> RebuildReport:
    """Empty the roll-ups and recompute them from members, orders and the ledger.

    One transaction; on PostgreSQL the roll-up tables are locked against concurrent syncs
    for its duration (they wait and then apply on top of the rebuilt rows).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE analytics_members IN EXCLUSIVE MODE"))
    for model in (
        AnalyticsMemberDay,
        AnalyticsMember,
        AnalyticsDaily,
        AnalyticsMonthly,
        AnalyticsCohort,
    ):
        session.execute(delete(model))
    totals = Totals.empty()
    members = 0
    for ids in _member_chunks(session, chunk):
        facts = _load_facts(session, ids)
        member_rows: list[dict[str, Any]] = []
        day_rows: list[dict[str, Any]] = []
        for m, f in facts.items():
            totals.add(f)
            member_rows.append(
                {
                    "member_id": m,
                    "enrolled_day": f.enrolled_day,
                    "first_order_day": f.first_order_day,
                    "synced_at": now,
                }
            )
            day_rows.extend({"member_id": m, "day": d, **x.as_dict()} for d, x in f.days.items())
        session.execute(insert(AnalyticsMember), member_rows)
        if day_rows:
            session.execute(insert(AnalyticsMemberDay), day_rows)
        members += len(facts)
    daily = _fill(
        [{"day": d, **_nonzero(c)} for d, c in totals.daily.items() if _nonzero(c)],
        ("day",),
        AnalyticsDaily,
    )
    monthly = _fill(
        [{"month": m, **_nonzero(c)} for m, c in totals.monthly.items() if _nonzero(c)],
        ("month",),
        AnalyticsMonthly,
    )
    cohorts = [
        {"cohort": c, "month": m, "active_members": n} for (c, m), n in totals.cohorts.items() if n
    ]
    for model, rows in (
        (AnalyticsDaily, daily),
        (AnalyticsMonthly, monthly),
        (AnalyticsCohort, cohorts),
    ):
        if rows:
            session.execute(insert(model), rows)
    return RebuildReport(members=members, days=len(daily), months=len(monthly))


def snapshot(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every roll-up row, sorted (tests and ``lealta report rebuild --check``)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for model in (
        AnalyticsMember,
        AnalyticsMemberDay,
        AnalyticsDaily,
        AnalyticsMonthly,
        AnalyticsCohort,
    ):
        table = cast(Table, model.__table__)
        cols = [c for c in table.columns if c.name != "synced_at"]
        out[table.name] = sorted(tuple(r) for r in session.execute(select(*cols)))
    return out
