"""Gamification at the database edge: badges, challenge progress, streaks, leaderboards.

Every rewarding effect claims a unique row first (``member_badges`` per member and badge,
``challenge_progress.completed_at`` set by a conditional ``UPDATE``, ``streak_rungs`` per
run and rung, ``gamification_applied`` per challenge and event) and credits points in the
same transaction, so a re-delivered or racing event gives nothing twice.

**Imported history** (``backfill``): badges, challenge progress and streaks are brought up to
date, but completions reached by imported events credit no points and issue no coupon (the
shop's old system already rewarded that history; the badge shows, with 0 points). A badge
newly added to the programme is given set-wise by :func:`backfill_badges` to every member who
already qualifies, with its points, once: the subscriber and the job meet on the same
unique row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from lealta.coupons import service as coupons
from lealta.gamification import maths
from lealta.gamification.schema import Badge, BadgeCondition, Challenge, Leaderboard, Streak
from lealta.kit.db import dialect_insert, insert_ignore, insert_ignoring, lock_for_update
from lealta.kit.errors import Conflict, InvalidInput, NotFound
from lealta.kit.money import exponent
from lealta.ledger import operations as ledger_ops
from lealta.ledger.schemas import AdjustmentIn
from lealta.models import (
    Account,
    ChallengeProgress,
    Consent,
    Coupon,
    Event,
    GamificationApplied,
    LeaderboardProfile,
    LedgerEntry,
    Member,
    MemberBadge,
    Order,
    StreakRung,
    StreakState,
)
from lealta.outbox import service as outbox
from lealta.outbox.events import (
    BadgeAwarded,
    ChallengeCompleted,
    ChallengeRevoked,
    StreakRewarded,
)
from lealta.programme.schema import Programme, name_in
from lealta.rules.cel import CelCompileError, Expression, compile_expression
from lealta.rules.engine import EventFacts, Item, MemberSnapshot, activation

CONSENT_PURPOSE = "leaderboard"
ORDER_PAID = "order.paid"


class LeaderboardNotFound(NotFound):
    code = "leaderboard_not_found"


class DisplayNameTaken(Conflict):
    code = "display_name_taken"


class DisplayNameInvalid(InvalidInput):
    code = "display_name_invalid"


# --- facts of one event -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Happened:
    """One processed event as gamification sees it."""

    event_type: str
    key: str
    occurred_at: datetime
    payload: dict[str, Any]
    backfill: bool


def happened(
    session: Session, event_type: str, key: str, fallback_at: datetime, *, backfill: bool
) -> Happened:
    """The event named by an outbox message (its stored row gives time and body)."""
    row = session.execute(
        select(Event.occurred_at, Event.payload).where(Event.idempotency_key == key)
    ).first()
    if row is None:
        return Happened(event_type, key, fallback_at, {}, backfill)
    return Happened(event_type, key, row[0], dict(row[1] or {}), backfill)


def _order_minor(payload: dict[str, Any], currency: str) -> int:
    order = payload.get("order") or {}
    try:
        total = Decimal(str(order.get("total", "0")))
    except ArithmeticError:
        return 0
    return int((total * (Decimal(10) ** exponent(currency))).to_integral_value())


def _facts(event: Happened, currency: str) -> EventFacts:
    order = event.payload.get("order") or {}
    exp = Decimal(10) ** exponent(currency)
    items = tuple(
        Item(
            str(i.get("sku", "")),
            i.get("category"),
            int(i.get("quantity", 1)),
            int((Decimal(str(i.get("unit_price", "0"))) * exp).to_integral_value()),
        )
        for i in order.get("items") or ()
        if isinstance(i, dict)
    )
    return EventFacts(
        event_type=event.event_type,
        occurred_at=event.occurred_at,
        properties=dict(event.payload.get("properties") or {}),
        event_id=str(event.payload.get("id") or event.key),
        order_id=order.get("id"),
        order_total_minor=_order_minor(event.payload, currency) if order else None,
        currency=order.get("currency"),
        channel=order.get("channel"),
        store=order.get("store"),
        items=items,
    )


@lru_cache(maxsize=256)
def _compiled(source: str) -> Expression | None:
    try:
        return compile_expression(source)
    except CelCompileError:
        return None


# --- metrics and badges -------------------------------------------------------------------


def tier_ranks(programme: Programme) -> dict[str, int]:
    return {t.id: i for i, t in enumerate(programme.tiers.levels)} if programme.tiers else {}


def metrics(session: Session, programme: Programme, member_id: int) -> maths.Metrics:
    """The member's badge figures: a few indexed aggregates."""
    orders, spend = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Order.total_minor - Order.refunded_minor), 0),
        ).where(Order.member_id == member_id, Order.status != "refunded")
    ).one()
    wanted = sorted(
        {b.condition.event_type for b in programme.badges if b.condition.event_type is not None}
    )
    events: dict[str, int] = {}
    if wanted:
        rows = session.execute(
            select(Event.event_type, func.count())
            .where(Event.member_id == member_id, Event.event_type.in_(wanted))
            .group_by(Event.event_type)
        )
        events = {str(t): int(n) for t, n in rows}
    tier = session.scalar(select(Account.tier_id).where(Account.member_id == member_id))
    return maths.Metrics(
        orders=int(orders),
        spend_minor=int(spend),
        events=events,
        tier_rank=tier_ranks(programme).get(tier) if tier else None,
    )


def _award_badge(
    session: Session,
    programme: Programme,
    member: Member,
    badge: Badge,
    *,
    now: datetime,
    backfill: bool,
) -> bool:
    points = 0 if backfill else badge.points
    row_id = insert_ignore(
        session,
        MemberBadge,
        {
            "member_id": member.id,
            "badge_id": badge.id,
            "points": points,
            "ledger_entry_id": None,
            "backfill": backfill,
            "awarded_at": now,
        },
        conflict=["member_id", "badge_id"],
    )
    if row_id is None:
        return False
    entry_id = None
    if points > 0:
        result = ledger_ops.award(
            session, member.external_id, points=points,
            reason=f"Badge: {name_in(badge.name, 'en')}"[:200], actor="gamification",
            source_type="badge", source_ref=badge.id, now=now, programme=programme,
        )  # fmt: skip
        entry_id = result.entry.id
        session.execute(
            update(MemberBadge).where(MemberBadge.id == row_id).values(ledger_entry_id=entry_id)
        )
    outbox.emit(
        session,
        BadgeAwarded(badge_id=badge.id, points=points, at=now),
        member_id=member.id,
        now=now,
        backfill=backfill,
    )
    return True


def evaluate_badges(
    session: Session, programme: Programme, member: Member, *, now: datetime, backfill: bool
) -> list[str]:
    """Award every active badge ``member`` now qualifies for and lacks; their ids."""
    active = [b for b in programme.badges if b.active]
    if not active:
        return []
    held = set(
        session.scalars(select(MemberBadge.badge_id).where(MemberBadge.member_id == member.id))
    )
    missing = [b for b in active if b.id not in held]
    if not missing:
        return []
    figures = metrics(session, programme, member.id)
    exp = exponent(programme.currency)
    ranks = tier_ranks(programme)
    awarded = []
    for badge in missing:
        met = maths.badge_met(badge.condition, figures, exponent=exp, tier_ranks=ranks)
        if met and _award_badge(session, programme, member, badge, now=now, backfill=backfill):
            awarded.append(badge.id)
    return awarded


def qualifying(programme: Programme, condition: BadgeCondition) -> Select[Any]:
    """``SELECT member_id`` of every member meeting ``condition`` (one grouped query)."""
    if condition.metric in ("orders", "spend"):
        stmt = select(Order.member_id).where(Order.status != "refunded").group_by(Order.member_id)
        if condition.metric == "orders":
            return stmt.having(func.count() >= int(condition.at_least))
        minor = int(condition.at_least * (Decimal(10) ** exponent(programme.currency)))
        return stmt.having(func.sum(Order.total_minor - Order.refunded_minor) >= minor)
    if condition.metric == "events":
        return (
            select(Event.member_id)
            .where(Event.event_type == condition.event_type)
            .group_by(Event.member_id)
            .having(func.count() >= int(condition.at_least))
        )
    ranks = tier_ranks(programme)
    wanted = ranks.get(condition.tier or "", len(ranks))
    tiers = [t for t, rank in ranks.items() if rank >= wanted]
    return select(Account.member_id).where(Account.tier_id.in_(tiers))


BACKFILL_CHUNK = 500


def backfill_badges(
    session: Session, programme: Programme, *, now: datetime, badge_ids: Sequence[str] = ()
) -> dict[str, int]:
    """Give each (or each named) active badge to every member who qualifies and lacks it:
    one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per badge, then the points of the
    new rows credited in chunks. Returns the number of new awards per badge."""
    table = MemberBadge.__table__
    counts: dict[str, int] = {}
    for badge in programme.badges:
        if not badge.active or (badge_ids and badge.id not in badge_ids):
            continue
        source = qualifying(programme, badge.condition).subquery()
        stmt = (
            dialect_insert(session, table)  # type: ignore[arg-type]
            .from_select(
                ["member_id", "badge_id", "points", "backfill", "awarded_at"],
                select(
                    source.c.member_id,
                    literal(badge.id),
                    literal(badge.points),
                    literal(False),
                    literal(now, MemberBadge.awarded_at.type),
                ).where(true()),  # SQLite parses ``SELECT ... ON CONFLICT`` only after a WHERE
            )
            .on_conflict_do_nothing(index_elements=["member_id", "badge_id"])
            .returning(table.c.id, table.c.member_id)
        )
        new = [(int(i), int(m)) for i, m in session.execute(stmt)]
        counts[badge.id] = len(new)
        for start in range(0, len(new), BACKFILL_CHUNK):
            chunk = new[start : start + BACKFILL_CHUNK]
            externals = dict(
                session.execute(
                    select(Member.id, Member.external_id).where(
                        Member.id.in_([m for _, m in chunk])
                    )
                ).all()
            )
            for row_id, member_id in chunk:
                if badge.points > 0:
                    result = ledger_ops.award(
                        session, externals[member_id], points=badge.points,
                        reason=f"Badge: {name_in(badge.name, 'en')}"[:200],
                        actor="gamification", source_type="badge", source_ref=badge.id,
                        now=now, programme=programme,
                    )  # fmt: skip
                    session.execute(
                        update(MemberBadge)
                        .where(MemberBadge.id == row_id)
                        .values(ledger_entry_id=result.entry.id)
                    )
            outbox.emit_many(
                session,
                [(BadgeAwarded(badge.id, badge.points, now), m) for _, m in chunk],
                now=now,
                backfill=False,
            )
    return counts


def badges_of(session: Session, member_id: int) -> dict[str, MemberBadge]:
    rows = session.scalars(select(MemberBadge).where(MemberBadge.member_id == member_id))
    return {r.badge_id: r for r in rows}


def badge_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(MemberBadge.badge_id, func.count()).group_by(MemberBadge.badge_id)
    )
    return {str(b): int(n) for b, n in rows}


# --- challenges ---------------------------------------------------------------------------


def _zone_for(challenge: Challenge, member: Member, programme: Programme) -> str:
    return member.timezone if challenge.clock == "member" else programme.timezone


def _snapshot(session: Session, programme: Programme, member: Member) -> MemberSnapshot:
    """The member as a challenge's CEL filter sees them (figures as stored when counted)."""
    tier = session.scalar(select(Account.tier_id).where(Account.member_id == member.id))
    figures = metrics(session, programme, member.id)
    return MemberSnapshot(
        member_id=member.id,
        external_id=member.external_id,
        tier=tier,
        qualifying_spend_minor=figures.spend_minor,
        orders_count=figures.orders,
        attributes=dict(member.attributes or {}),
        tags=tuple(member.tags or ()),
        timezone=member.timezone,
        language=member.language,
    )


def advance_challenges(
    session: Session, programme: Programme, member: Member, event: Happened, *, now: datetime
) -> list[tuple[str, str]]:
    """Count ``event`` toward each live challenge listening to its type (once per event);
    returns the (challenge, period) pairs it completed."""
    listening = [c for c in programme.challenges if c.event_type == event.event_type]
    if not listening:
        return []
    exp = exponent(programme.currency)
    env: dict[str, Any] | None = None
    completed = []
    for challenge in listening:
        period = maths.challenge_period(
            challenge, event.occurred_at, _zone_for(challenge, member, programme)
        )
        if period is None:
            continue
        if challenge.when is not None:
            expr = _compiled(challenge.when)
            if env is None:
                facts = _facts(event, programme.currency)
                env = activation(_snapshot(session, programme, member), facts, programme.currency)
            if expr is None or not expr.test(env):
                continue
        amount = (
            1
            if challenge.goal.measure == "count"
            else _order_minor(event.payload, programme.currency)
        )
        if amount <= 0:
            continue
        claimed = insert_ignore(
            session,
            GamificationApplied,
            {
                "key": f"challenge:{challenge.id}:{event.key}"[:300],
                "member_id": member.id,
                "recorded_at": now,
            },
            conflict=["key"],
        )
        if claimed is None:
            continue
        where = and_(
            ChallengeProgress.member_id == member.id,
            ChallengeProgress.challenge_id == challenge.id,
            ChallengeProgress.period == period,
        )
        insert_ignore(
            session,
            ChallengeProgress,
            {
                "member_id": member.id,
                "challenge_id": challenge.id,
                "period": period,
                "value": 0,
                "target": maths.challenge_target(challenge, exp),
                "completed_at": None,
                "points": 0,
                "ledger_entry_id": None,
                "coupon_id": None,
                "updated_at": now,
            },
            conflict=["member_id", "challenge_id", "period"],
        )
        session.execute(
            update(ChallengeProgress)
            .where(where)
            .values(value=ChallengeProgress.value + amount, updated_at=now)
        )
        done = session.execute(
            update(ChallengeProgress)
            .where(
                where,
                ChallengeProgress.completed_at.is_(None),
                ChallengeProgress.value >= ChallengeProgress.target,
            )
            .values(completed_at=now)
            .returning(ChallengeProgress.id)
        ).scalar_one_or_none()
        if done is not None:
            _reward_challenge(session, programme, member, challenge, period, done, event, now)
            completed.append((challenge.id, period))
    return completed


def _paid_event_key(session: Session, member_id: int, order: Order) -> str | None:
    """The key of the ``order.paid`` event that created ``order`` (one index lookup on the
    member's events at the order's time, the order id checked in the stored body)."""
    rows = session.execute(
        select(Event.idempotency_key, Event.payload).where(
            Event.member_id == member_id,
            Event.occurred_at == order.occurred_at,
            Event.event_type == "order.paid",
        )
    ).all()
    for key, payload in rows:
        if str(((payload or {}).get("order") or {}).get("id", "")) == order.external_id:
            return str(key)
    return None


def revoke_challenges(
    session: Session, programme: Programme, member: Member, refund: Happened, *, now: datetime
) -> list[tuple[str, str]]:
    """A refund takes back what its order counted toward order challenges: a spend challenge
    loses the refunded amount, a count challenge loses the order once it is refunded in full.
    A completed challenge that falls below its goal is revoked, once: its points are taken
    back (as much as the member still has, like a refund's reversal) and its coupon voided
    when unused; completing it again later rewards again. Returns the revoked (challenge,
    period) pairs. Badges and streaks are kept: a badge marks what happened."""
    listening = [c for c in programme.challenges if c.event_type == "order.paid"]
    details = refund.payload.get("refund") or {}
    order_ref = str(details.get("order_id") or "")
    if not listening or not order_ref:
        return []
    order = session.scalar(
        select(Order).where(Order.external_id == order_ref, Order.member_id == member.id)
    )
    if order is None:
        return []
    paid_key = _paid_event_key(session, member.id, order)
    if paid_key is None:
        return []
    exp = exponent(programme.currency)
    raw = details.get("amount")
    try:
        refunded = (
            int((Decimal(str(raw)) * (Decimal(10) ** exp)).to_integral_value())
            if raw is not None
            else order.total_minor
        )
    except ArithmeticError:
        refunded = 0
    revoked = []
    for challenge in listening:
        counted = session.scalar(
            select(GamificationApplied.key).where(
                GamificationApplied.key == f"challenge:{challenge.id}:{paid_key}"[:300]
            )
        )
        if counted is None:
            continue
        if challenge.goal.measure == "count":
            amount = 1 if order.status == "refunded" else 0
        else:
            amount = min(refunded, order.total_minor)
        if amount <= 0:
            continue
        period = maths.challenge_period(
            challenge, order.occurred_at, _zone_for(challenge, member, programme)
        )
        claimed = insert_ignore(
            session,
            GamificationApplied,
            {
                "key": f"challenge-refund:{challenge.id}:{refund.key}"[:300],
                "member_id": member.id,
                "recorded_at": now,
            },
            conflict=["key"],
        )
        if period is None or claimed is None:
            continue
        where = and_(
            ChallengeProgress.member_id == member.id,
            ChallengeProgress.challenge_id == challenge.id,
            ChallengeProgress.period == period,
        )
        session.execute(
            update(ChallengeProgress)
            .where(where)
            .values(value=ChallengeProgress.value - amount, updated_at=now)
        )
        row = session.execute(
            select(
                ChallengeProgress.id,
                ChallengeProgress.points,
                ChallengeProgress.coupon_id,
                ChallengeProgress.value < ChallengeProgress.target,
            ).where(where, ChallengeProgress.completed_at.is_not(None))
        ).first()
        if row is None or not row[3]:
            continue
        undone = session.execute(
            update(ChallengeProgress)
            .where(ChallengeProgress.id == row[0], ChallengeProgress.completed_at.is_not(None))
            .values(completed_at=None, points=0, ledger_entry_id=None, coupon_id=None)
            .execution_options(synchronize_session=False)
        )
        if not getattr(undone, "rowcount", 0):
            continue
        reason = (
            f"Challenge revoked: {name_in(challenge.name, 'en')} ({period}),"
            f" order {order_ref} refunded"
        )
        taken = _take_back(session, programme, member, int(row[1]), row[2], reason[:200], now=now)
        outbox.emit(
            session,
            ChallengeRevoked(challenge_id=challenge.id, period=period, points=taken, at=now),
            member_id=member.id,
            now=now,
            backfill=refund.backfill,
        )
        revoked.append((challenge.id, period))
    return revoked


def _take_back(
    session: Session,
    programme: Programme,
    member: Member,
    points: int,
    coupon_id: int | None,
    reason: str,
    *,
    now: datetime,
) -> int:
    """Debit a revoked challenge's points (as many as the member still has: the rest was
    spent, as with a refund's reversal) and void its coupon when unused; the points taken."""
    account = session.get(Account, member.id)
    take = min(points, max(account.points_available if account is not None else 0, 0))
    if take > 0:
        ledger_ops.adjust(
            session,
            member.external_id,
            AdjustmentIn(points=-take, reason=reason),
            actor="gamification",
            now=now,
            programme=programme,
        )
    if coupon_id is not None:
        coupon = session.get(Coupon, coupon_id)
        if coupon is not None and coupon.status == "active":
            with contextlib.suppress(Conflict):  # used at a till: the discount was had
                coupons.void(session, coupon.id)
    return take


def _reward_challenge(
    session: Session,
    programme: Programme,
    member: Member,
    challenge: Challenge,
    period: str,
    progress_id: int,
    event: Happened,
    now: datetime,
) -> None:
    points = 0 if event.backfill else challenge.points
    values: dict[str, Any] = {"points": points}
    if points > 0:
        result = ledger_ops.award(
            session, member.external_id, points=points,
            reason=f"Challenge: {name_in(challenge.name, 'en')} ({period})"[:200],
            actor="gamification", source_type="challenge",
            source_ref=f"{challenge.id}:{period}"[:200], now=now, programme=programme,
        )  # fmt: skip
        values["ledger_entry_id"] = result.entry.id
    reward = programme.reward(challenge.reward) if challenge.reward else None
    if reward is not None and reward.coupon is not None and not event.backfill:
        coupon = coupons.issue(
            session, reward.coupon, reward_id=reward.id, member_id=member.id,
            # Coupons' sources are a closed list; challenge_progress.coupon_id says which.
            source="challenge", currency=programme.currency,
            valid_from=now, now=now,
        )  # fmt: skip
        values["coupon_id"] = coupon.id
    session.execute(
        update(ChallengeProgress).where(ChallengeProgress.id == progress_id).values(**values)
    )
    outbox.emit(
        session,
        ChallengeCompleted(challenge_id=challenge.id, period=period, points=points, at=now),
        member_id=member.id,
        now=now,
        backfill=event.backfill,
    )


def progress_of(session: Session, member_id: int) -> dict[tuple[str, str], ChallengeProgress]:
    rows = session.scalars(
        select(ChallengeProgress).where(ChallengeProgress.member_id == member_id)
    )
    return {(r.challenge_id, r.period): r for r in rows}


def challenge_rates(session: Session) -> dict[str, tuple[int, int]]:
    """Per challenge: (members with progress, completions), over every period."""
    rows = session.execute(
        select(
            ChallengeProgress.challenge_id,
            func.count(),
            func.sum(case((ChallengeProgress.completed_at.is_not(None), 1), else_=0)),
        ).group_by(ChallengeProgress.challenge_id)
    )
    return {str(c): (int(n), int(d or 0)) for c, n, d in rows}


# --- streaks ------------------------------------------------------------------------------


def streak_value(row: StreakState | None) -> maths.StreakState | None:
    if row is None:
        return None
    return maths.StreakState(row.started_month, row.last_month, row.length, row.best)


def advance_streaks(
    session: Session, programme: Programme, member: Member, event: Happened, *, now: datetime
) -> list[tuple[str, int]]:
    """Move each streak listening to ``event``'s type; returns the (streak, months) rungs
    reached (each once per run, points unless the event is imported history)."""
    reached: list[tuple[str, int]] = []
    month = maths.month_index(event.occurred_at, member.timezone)
    for streak in programme.streaks:
        if streak.event_type != event.event_type:
            continue
        where = and_(StreakState.member_id == member.id, StreakState.streak_id == streak.id)
        row = session.scalar(lock_for_update(select(StreakState).where(where)))
        if row is None:
            new = maths.streak_step(None, month)
            assert new is not None
            made = insert_ignore(
                session,
                StreakState,
                {
                    "member_id": member.id,
                    "streak_id": streak.id,
                    "started_month": new.started,
                    "last_month": new.last,
                    "length": new.length,
                    "best": new.best,
                    "updated_at": now,
                },
                conflict=["member_id", "streak_id"],
            )
            if made is not None:
                reached += _rungs(session, programme, member, streak, 0, new, event, now)
                continue
            row = session.scalar(lock_for_update(select(StreakState).where(where)))
            assert row is not None
        before = streak_value(row)
        step = maths.streak_step(before, month)
        if step is None or before is None:
            continue
        row.started_month, row.last_month = step.started, step.last
        row.length, row.best, row.updated_at = step.length, step.best, now
        session.flush()
        prior = before.length if step.started == before.started else 0
        reached += _rungs(session, programme, member, streak, prior, step, event, now)
    return reached


def _rungs(
    session: Session,
    programme: Programme,
    member: Member,
    streak: Streak,
    prior: int,
    state: maths.StreakState,
    event: Happened,
    now: datetime,
) -> list[tuple[str, int]]:
    out = []
    for rung in maths.rungs_reached(streak.ladder, prior, state.length):
        points = 0 if event.backfill else rung.points
        row_id = insert_ignore(
            session,
            StreakRung,
            {
                "member_id": member.id,
                "streak_id": streak.id,
                "started_month": state.started,
                "months": rung.months,
                "points": points,
                "ledger_entry_id": None,
                "awarded_at": now,
            },
            conflict=["member_id", "streak_id", "started_month", "months"],
        )
        if row_id is None:
            continue
        if points > 0:
            result = ledger_ops.award(
                session, member.external_id, points=points,
                reason=f"Streak: {name_in(streak.name, 'en')} ({rung.months})"[:200],
                actor="gamification", source_type="streak",
                source_ref=f"{streak.id}:{maths.month_label(state.started)}:{rung.months}",
                now=now, programme=programme,
            )  # fmt: skip
            session.execute(
                update(StreakRung)
                .where(StreakRung.id == row_id)
                .values(ledger_entry_id=result.entry.id)
            )
        outbox.emit(
            session,
            StreakRewarded(streak_id=streak.id, months=rung.months, points=points, at=now),
            member_id=member.id,
            now=now,
            backfill=event.backfill,
        )
        out.append((streak.id, rung.months))
    return out


def streaks_of(session: Session, member_id: int) -> dict[str, StreakState]:
    rows = session.scalars(select(StreakState).where(StreakState.member_id == member_id))
    return {r.streak_id: r for r in rows}


def rungs_of(session: Session, member_id: int) -> list[StreakRung]:
    return list(
        session.scalars(
            select(StreakRung).where(StreakRung.member_id == member_id).order_by(StreakRung.id)
        )
    )


# --- one event, everything ----------------------------------------------------------------


def process(
    session: Session, programme: Programme, member_id: int, event: Happened, *, now: datetime
) -> None:
    """Everything one processed event moves: challenges, streaks, then badges."""
    member = session.get(Member, member_id)
    if member is None:
        return
    advance_challenges(session, programme, member, event, now=now)
    advance_streaks(session, programme, member, event, now=now)
    evaluate_badges(session, programme, member, now=now, backfill=event.backfill)


# --- leaderboards -------------------------------------------------------------------------


def opted_in(session: Session, member_id: int) -> bool:
    granted = session.scalar(
        select(Consent.granted)
        .where(Consent.member_id == member_id, Consent.purpose == CONSENT_PURPOSE)
        .order_by(Consent.id.desc())
        .limit(1)
    )
    return bool(granted)


def profile(session: Session, member_id: int) -> LeaderboardProfile | None:
    return session.get(LeaderboardProfile, member_id)


def set_leaderboard(
    session: Session, member: Member, *, display_name: str, join: bool, now: datetime
) -> None:
    """Save the member's leaderboard name and choice (consent ``leaderboard``, appended to
    the consent log when it changes). Refused: an empty, long, e-mail-like or odd name
    (``display_name_invalid``, ``details.problem``), or one another member uses
    (``display_name_taken``)."""
    name, problem = maths.clean_display_name(display_name)
    if name is None:
        if join or display_name.strip():
            raise DisplayNameInvalid(
                "Choose another display name.", details={"problem": problem or "empty"}
            )
    else:
        key = maths.display_key(name)
        other = session.scalar(
            select(LeaderboardProfile.member_id).where(
                LeaderboardProfile.display_key == key, LeaderboardProfile.member_id != member.id
            )
        )
        if other is not None:
            raise DisplayNameTaken("Another member already uses this name.")
        mine = session.get(LeaderboardProfile, member.id)
        if mine is None:
            table = LeaderboardProfile.__table__
            made = session.execute(
                insert_ignoring(session, table)  # type: ignore[arg-type]
                .values(member_id=member.id, display_name=name, display_key=key, updated_at=now)
                .returning(table.c.member_id)
            ).scalar_one_or_none()
            if made is None:
                raise DisplayNameTaken("Another member already uses this name.")
        else:
            mine.display_name, mine.display_key, mine.updated_at = name, key, now
            session.flush()
    if opted_in(session, member.id) != join:
        session.add(
            Consent(
                member_id=member.id,
                purpose=CONSENT_PURPOSE,
                granted=join,
                source="cockpit",
                recorded_at=now,
            )
        )
        session.flush()


@dataclass(frozen=True, slots=True)
class Standing:
    member_id: int
    display_name: str
    score: int
    rank: int


def board(programme: Programme, board_id: str) -> Leaderboard:
    found = next((b for b in programme.leaderboards if b.id == board_id), None)
    if found is None:
        raise LeaderboardNotFound(f"No leaderboard has the id {board_id!r}.")
    return found


def _opted_in_members() -> Select[Any]:
    latest = (
        select(Consent.member_id, func.max(Consent.id).label("last_id"))
        .where(Consent.purpose == CONSENT_PURPOSE)
        .group_by(Consent.member_id)
        .subquery()
    )
    return (
        select(Consent.member_id)
        .join(latest, latest.c.last_id == Consent.id)
        .where(Consent.granted.is_(True))
    )


def _scores(programme: Programme, leaderboard: Leaderboard, now: datetime) -> Any:
    if leaderboard.metric == "challenge":
        challenge = next(c for c in programme.challenges if c.id == leaderboard.challenge)
        period = maths.period_key(challenge.period, now, programme.timezone)
        return select(
            ChallengeProgress.member_id.label("member_id"),
            ChallengeProgress.value.label("score"),
        ).where(ChallengeProgress.challenge_id == challenge.id, ChallengeProgress.period == period)
    start, end = maths.period_bounds(leaderboard.period, now, programme.timezone)
    earned: ColumnElement[bool] = (LedgerEntry.entry_type.in_(("earn", "reverse"))) | (
        (LedgerEntry.entry_type == "adjust")
        & LedgerEntry.source_type.in_(("badge", "challenge", "streak", "survey", "referral"))
    )
    stmt = select(
        LedgerEntry.member_id.label("member_id"), func.sum(LedgerEntry.points).label("score")
    ).where(earned)
    if start is not None and end is not None:
        stmt = stmt.where(LedgerEntry.occurred_at >= start, LedgerEntry.occurred_at < end)
    return stmt.group_by(LedgerEntry.member_id)


def standings(
    session: Session,
    programme: Programme,
    leaderboard: Leaderboard,
    *,
    now: datetime,
    member_id: int | None = None,
) -> tuple[list[Standing], Standing | None]:
    """The top ``size`` opted-in members with a name and a positive score (``RANK()``: ties
    share a rank, the next rank skips), and ``member_id``'s own standing if ranked."""
    scores = _scores(programme, leaderboard, now).subquery()
    ranked = (
        select(
            scores.c.member_id,
            LeaderboardProfile.display_name,
            scores.c.score,
            func.rank().over(order_by=scores.c.score.desc()).label("rank"),
        )
        .join(LeaderboardProfile, LeaderboardProfile.member_id == scores.c.member_id)
        .where(scores.c.member_id.in_(_opted_in_members()), scores.c.score > 0)
        .subquery()
    )
    top = [
        Standing(int(m), str(n), int(s), int(r))
        for m, n, s, r in session.execute(
            select(ranked).order_by(ranked.c.rank, ranked.c.display_name).limit(leaderboard.size)
        )
    ]
    mine = None
    if member_id is not None:
        row = session.execute(select(ranked).where(ranked.c.member_id == member_id)).first()
        if row is not None:
            mine = Standing(int(row[0]), str(row[1]), int(row[2]), int(row[3]))
    return top, mine
