"""The rewards catalogue and redemption. Every function takes the caller's session; none
commits.

A redemption is one transaction under the member's account lock: eligibility, the points
debit (soonest-expiring lots first), a unit of stock taken with a conditional ``UPDATE``
(``issued < stock``) and the coupon or fulfilment record. The same function that explains
why a reward is locked in the catalogue decides whether a redemption may go ahead, so the
list and the button never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, false, func, select, true, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lealta.coupons import service as coupons
from lealta.engine import core as engine
from lealta.engine.state import MemberState
from lealta.events import store
from lealta.events.service import no_crossings, run_loading
from lealta.kit.db import insert_returning
from lealta.kit.errors import Conflict, InvalidInput, NotFound
from lealta.kit.money import exponent, from_minor
from lealta.ledger import service as ledger
from lealta.members.service import AccountView, MemberNotFound
from lealta.models import (
    Coupon,
    LedgerEntry,
    Member,
    Redemption,
    RewardCounter,
)
from lealta.outbox.events import RedemptionRolledBack, RewardRedeemed
from lealta.outbox.service import emit
from lealta.programme import service as programmes
from lealta.programme.schema import CouponSpec, Programme, Reward
from lealta.rewards.schemas import CouponTermsOut, LockedReasonOut, RedemptionOut, RewardOut
from lealta.rules.engine import EventFacts, MemberSnapshot, activation, compiled_for
from lealta.segments import service as segments

# The order in which a refused redemption reports its reason (the first that applies).
LOCK_ORDER = (
    "not_redeemable",
    "not_available_yet",
    "no_longer_available",
    "tier_required",
    "segment_required",
    "not_eligible",
    "limit_reached",
    "out_of_stock",
    "insufficient_points",
)


class RewardNotFound(NotFound):
    code = "reward_not_found"


class RedemptionNotFound(NotFound):
    code = "redemption_not_found"


class RewardLocked(Conflict):
    """The member may not redeem this reward now; ``code`` is the locked reason's code."""

    def __init__(self, lock: LockedReason) -> None:
        super().__init__(lock.message, code=lock.code, details=dict(lock.details))


class OutOfStock(Conflict):
    code = "out_of_stock"


class AlreadyRolledBack(Conflict):
    code = "already_rolled_back"


@dataclass(frozen=True, slots=True)
class LockedReason:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Redeemed:
    """What :func:`redeem` did: the redemption, its coupon (if any) and the member's points
    available after it."""

    redemption: Redemption
    coupon: Coupon | None
    points_available: int


@dataclass(frozen=True, slots=True)
class RewardState:
    """One reward as this member sees it now."""

    reward: Reward
    locked: tuple[LockedReason, ...]
    stock_left: int | None
    redeemed_by_member: int

    @property
    def redeemable(self) -> bool:
        return not self.locked


# --- reading ------------------------------------------------------------------------------


class Holder(Protocol):
    """The member as eligibility expressions see it: a ``Member``, a row of a member read,
    or a redemption's loaded state."""

    @property
    def id(self) -> int: ...
    @property
    def external_id(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, Any] | None: ...
    @property
    def tags(self) -> Sequence[str] | None: ...
    @property
    def timezone(self) -> str: ...
    @property
    def language(self) -> str: ...


def effective_tier(programme: Programme, account: AccountView) -> str | None:
    """The tier the member holds; the first tier when none was recorded yet."""
    tier = programme.tier(account.tier_id)
    if tier is None and programme.tiers is not None:
        tier = programme.tiers.levels[0]
    return tier.id if tier else None


def snapshot(
    programme: Programme,
    member: Holder,
    account: AccountView,
    segments: tuple[str, ...] = (),
) -> MemberSnapshot:
    """What eligibility expressions may know of the member."""
    return MemberSnapshot(
        member_id=member.id,
        external_id=member.external_id,
        tier=effective_tier(programme, account),
        attributes=dict(member.attributes or {}),
        tags=tuple(member.tags or ()),
        qualifying_spend_minor=account.qualifying_spend_minor,
        orders_count=account.orders_count,
        timezone=member.timezone,
        language=member.language,
        segments=segments,
    )


def issued_counts(session: Session) -> dict[str, int]:
    """Units handed out (and not rolled back) per reward id, from the redemptions."""
    return {
        reward_id: int(count)
        for reward_id, count in session.execute(
            select(Redemption.reward_id, func.count())
            .where(Redemption.status != "rolled_back")
            .group_by(Redemption.reward_id)
        )
    }


_counters = cast(Table, RewardCounter.__table__)
_redemptions = cast(Table, Redemption.__table__)

_COUNTS = union_all(
    select(_counters.c.reward_id, _counters.c.issued.label("count"), false().label("mine")),
    select(_redemptions.c.reward_id, func.count(), true())
    .where(
        _redemptions.c.member_id == bindparam("member_id"),
        _redemptions.c.status != "rolled_back",
    )
    .group_by(_redemptions.c.reward_id),
)
"""Units out per reward (stock counters) and the member's live redemptions per reward, in
one Core statement (``member_id``)."""


def catalogue(
    session: Session,
    programme: Programme,
    member: Holder,
    account: AccountView,
    *,
    now: datetime,
) -> list[RewardState]:
    """Every reward of the programme with whether this member can redeem it now and why not
    (one Core statement for the stock counters and the member's redemptions)."""
    issued: dict[str, int] = {}
    mine: dict[str, int] = {}
    for reward_id, count, member_s in session.connection().execute(
        _COUNTS, {"member_id": member.id}
    ):
        (mine if member_s else issued)[reward_id] = int(count)
    env = _env(session, programme, member, account, now)
    return [
        _state(
            programme, reward, account, env, issued.get(reward.id, 0), mine.get(reward.id, 0), now
        )
        for reward in programme.rewards
    ]


def _state(
    programme: Programme,
    reward: Reward,
    account: AccountView,
    env: dict[str, Any],
    issued: int,
    redeemed_by_member: int,
    now: datetime,
) -> RewardState:
    stock_left = max(0, reward.stock - issued) if reward.stock is not None else None
    locks = locked_reasons(
        programme,
        reward,
        tier=effective_tier(programme, account),
        points_available=account.points_available,
        eligible=_eligible(programme, reward, env),
        stock_left=stock_left,
        redeemed_by_member=redeemed_by_member,
        now=now,
        segments=env["member"]["segments"],
    )
    return RewardState(reward, tuple(locks), stock_left, redeemed_by_member)


def locked_reasons(
    programme: Programme,
    reward: Reward,
    *,
    tier: str | None,
    points_available: int,
    eligible: bool,
    stock_left: int | None,
    redeemed_by_member: int,
    now: datetime,
    segments: Sequence[str] = (),
) -> list[LockedReason]:
    """Pure: every reason the member cannot redeem ``reward`` now, in :data:`LOCK_ORDER`.

    A cost-0 reward that a spend threshold hands out is only ever issued by that rule, so it
    reports ``not_redeemable`` alone.
    """
    if reward.cost == 0 and any(t.reward == reward.id for t in programme.thresholds):
        return [
            LockedReason(
                "not_redeemable",
                "This reward is issued automatically when you reach a spending threshold.",
            )
        ]
    locks: list[LockedReason] = []
    if reward.available_from is not None and now < reward.available_from:
        locks.append(
            LockedReason(
                "not_available_yet",
                f"Available from {reward.available_from.isoformat()}.",
                {"available_from": reward.available_from.isoformat()},
            )
        )
    if reward.available_until is not None and now >= reward.available_until:
        locks.append(
            LockedReason(
                "no_longer_available",
                f"Available until {reward.available_until.isoformat()}.",
                {"available_until": reward.available_until.isoformat()},
            )
        )
    if reward.tiers is not None and tier not in reward.tiers:
        names = [t.name.get("en") for t in (programme.tier(i) for i in reward.tiers) if t]
        locks.append(
            LockedReason(
                "tier_required",
                f"Only for members in tier {' or '.join(names)}.",
                {"tiers": list(reward.tiers), "tier": tier},
            )
        )
    if reward.segments is not None and set(reward.segments).isdisjoint(segments):
        locks.append(
            LockedReason(
                "segment_required",
                "Only for members of a particular group.",
                {"segments": list(reward.segments)},
            )
        )
    if not eligible:
        locks.append(LockedReason("not_eligible", "You do not meet this reward's conditions."))
    if reward.per_member_limit is not None and redeemed_by_member >= reward.per_member_limit:
        locks.append(
            LockedReason(
                "limit_reached",
                f"Limited to {reward.per_member_limit} per member.",
                {"limit": reward.per_member_limit, "redeemed": redeemed_by_member},
            )
        )
    if stock_left is not None and stock_left <= 0:
        locks.append(LockedReason("out_of_stock", "This reward is out of stock."))
    if reward.cost > points_available:
        needed = reward.cost - points_available
        locks.append(
            LockedReason(
                "insufficient_points",
                f"You need {needed} more points.",
                {"points_needed": needed, "cost": reward.cost, "available": points_available},
            )
        )
    return locks


def _env(
    session: Session,
    programme: Programme,
    member: Holder,
    account: AccountView,
    now: datetime,
) -> dict[str, Any]:
    facts = EventFacts(event_type="reward.check", occurred_at=now, properties={})
    # ``member.segments`` costs a lookup: made only when an eligibility expression reads it.
    reads = any(r.segments for r in programme.rewards) or any(
        "segments" in e.source for e in compiled_for(programme).eligibility.values()
    )
    keys = tuple(segments.segment_keys_of(session, member.id)) if reads else ()
    return activation(snapshot(programme, member, account, keys), facts, programme.currency)


def _eligible(programme: Programme, reward: Reward, env: dict[str, Any]) -> bool:
    expr = compiled_for(programme).eligibility.get(reward.id)
    return expr is None or expr.test(env)


def history(session: Session, member_id: int, *, limit: int = 100) -> list[Redemption]:
    """The member's redemptions, newest first."""
    return list(
        session.scalars(
            select(Redemption)
            .where(Redemption.member_id == member_id)
            .order_by(Redemption.id.desc())
            .limit(limit)
        )
    )


# --- redeeming ----------------------------------------------------------------------------


def redeem(
    session: Session,
    programme: Programme,
    member: Member,
    reward_id: str,
    *,
    now: datetime,
    actor: str,
    points: int | None = None,
) -> Redeemed:
    """Redeem ``reward_id`` for the member, all or nothing.

    ``404 reward_not_found``; ``409`` with the first locked reason's code (``tier_required``,
    ``not_eligible``, ``limit_reached``, …); ``409 insufficient_points`` from the ledger;
    ``409 out_of_stock`` when the last unit went to someone else first.
    """
    locked = store.lock_and_load(session, None, now, member_id=member.id).state
    if locked is None:
        raise MemberNotFound(
            "The member has no points account.", details={"external_id": member.external_id}
        )
    return _redeem(session, programme, locked, reward_id, now=now, actor=actor, points=points)


def redeem_for(
    session: Session,
    external_id: str,
    reward_id: str,
    *,
    now: datetime,
    actor: str,
    points: int | None = None,
) -> Redeemed:
    """:func:`redeem` for the shop's ``external_id`` under the programme in force at ``now``:
    the member, its locked state, the programme's digest and the debit's ids come from one
    statement (the API's path); its open lots from the next, read once the lock is held (the
    locking statement's other rows are those of its snapshot, which a concurrent spend may
    have changed before the lock was granted); ``404 member_not_found``."""
    loaded = store.lock_and_load(session, external_id, now, programme_at=now, reserve=_SPEND)
    if loaded.state is None:
        raise MemberNotFound(
            f"No member with external id '{external_id}'.", details={"external_id": external_id}
        )
    programme = programmes.by_digest(session, loaded.digest)
    return _redeem(
        session,
        programme,
        loaded.state,
        reward_id,
        now=now,
        actor=actor,
        points=points,
        reserved=loaded.reserved,
    )


_SPEND = {"entries": 2}
"""Ids reserved with the state on PostgreSQL: the debit's entry and one more (a release or an
expiry caught up on the way); a spend that needs more reserves the rest when it writes."""


@dataclass(frozen=True, slots=True)
class _Holder:
    """The member as eligibility sees it, from its loaded state."""

    id: int
    external_id: str
    attributes: Mapping[str, Any]
    tags: tuple[str, ...]
    timezone: str
    language: str


def _redeem(
    session: Session,
    programme: Programme,
    locked: MemberState,
    reward_id: str,
    *,
    now: datetime,
    actor: str,
    points: int | None,
    reserved: Mapping[str, list[int]] | None = None,
) -> Redeemed:
    profile = locked.profile
    member = _Holder(
        locked.member_id,
        profile.external_id,
        profile.attributes,
        profile.tags,
        profile.timezone,
        profile.language,
    )
    account = locked.figures
    reward = programme.reward(reward_id)
    if reward is None:
        raise RewardNotFound(
            f"No reward '{reward_id}' in the programme.", details={"reward_id": reward_id}
        )
    cost = _cost(reward, points)
    # The units issued and the member's redemptions so far matter only to a stock and to a
    # per-member limit (the catalogue reads them for every reward; here they cost a
    # statement each only where the reward has one).
    issued = (
        session.scalar(select(RewardCounter.issued).where(RewardCounter.reward_id == reward.id))
        if reward.stock is not None
        else None
    )
    mine = _redeemed_by(session, member.id, reward.id) if reward.per_member_limit is not None else 0
    state = _state(
        programme,
        reward,
        account,
        _env(session, programme, member, account, now),
        issued or 0,
        mine,
        now,
    )
    for lock in state.locked:
        if lock.code != "insufficient_points":  # the ledger refuses that with exact figures
            raise RewardLocked(lock)
    entry_id: int | None = None
    points_available = account.points_available
    if cost > 0:
        outcome = run_loading(
            session,
            programme,
            locked,
            lambda s: engine.spend(
                programme,
                s,
                points=cost,
                reason=f"Reward: {reward.name.get('en')}",
                actor=actor,
                at=now,
                source_type="redemption",
                source_ref=f"reward:{reward.id}",
                details={"reward_id": reward.id},
            ),
            at=now,
        )
        written = store.write_all(
            session,
            [(member.id, outcome)],
            now=now,
            backfill=False,
            on_crossing=no_crossings,
            reserved=reserved,
        )
        entry_id = written.id(member.id, outcome.postings[0])
        points_available = outcome.state.figures.points_available
    _take_stock(session, reward)
    coupon: Coupon | None = None
    value_minor: int | None = None
    fulfilment: dict[str, Any] = {"type": reward.type}
    status = "issued"
    if reward.type in ("coupon", "free_shipping"):
        coupon = coupons.issue(
            session,
            reward.coupon or CouponSpec(free_shipping=True),
            reward_id=reward.id,
            member_id=member.id,
            source="redemption",
            currency=programme.currency,
            valid_from=now,
            now=now,
        )
        fulfilment["coupon_code"] = coupon.code
    elif reward.type == "pay_with_points":
        assert reward.value_per_point is not None
        exact = (Decimal(cost) * reward.value_per_point).scaleb(exponent(programme.currency))
        value_minor = int(exact.to_integral_value(rounding=ROUND_DOWN))
        fulfilment["value"] = str(from_minor(value_minor, programme.currency))
        status = "fulfilled"
    else:
        fulfilment["state"] = "awaiting_fulfilment"
    redemption = insert_returning(
        session,
        Redemption,
        {
            "member_id": member.id,
            "reward_id": reward.id,
            "reward_type": reward.type,
            "points": cost,
            "status": status,
            "entry_id": entry_id,
            "coupon_id": coupon.id if coupon is not None else None,
            "value_minor": value_minor,
            "currency": programme.currency,
            "fulfilment": fulfilment,
            "created_at": now,
            "rolled_back_at": None,
        },
    )
    assert redemption is not None
    emit(
        session,
        RewardRedeemed(
            redemption_id=redemption.id,
            reward_id=reward.id,
            reward_type=reward.type,
            points=cost,
            coupon_code=coupon.code if coupon is not None else None,
        ),
        member_id=member.id,
        now=now,
        backfill=False,
    )
    return Redeemed(redemption, coupon, points_available)


def rollback(session: Session, redemption_id: int, *, now: datetime, actor: str) -> Redemption:
    """Undo a redemption: the exact lots get their points back, the unit returns to stock and
    the coupon is voided.

    ``404 redemption_not_found``; ``409 already_rolled_back``; ``409 coupon_already_used``
    when the coupon was used at checkout (roll that use back first).
    """
    member_id = session.scalar(select(Redemption.member_id).where(Redemption.id == redemption_id))
    if member_id is None:
        raise RedemptionNotFound(
            f"No redemption {redemption_id}.", details={"redemption_id": redemption_id}
        )
    account = ledger.lock_account(session, member_id)
    # Re-read under the lock: a concurrent rollback may have finished while we waited.
    redemption = session.get(Redemption, redemption_id, populate_existing=True)
    assert redemption is not None
    if redemption.status == "rolled_back":
        raise AlreadyRolledBack(
            f"Redemption {redemption_id} was already rolled back.",
            details={"redemption_id": redemption_id},
        )
    if redemption.coupon_id is not None:
        coupons.void(session, redemption.coupon_id)
    if redemption.entry_id is not None:
        original = session.get(LedgerEntry, redemption.entry_id)
        assert original is not None
        ledger.restore(
            session,
            account,
            original,
            reason=f"Redemption {redemption.id} rolled back",
            source=ledger.Source("redemption", f"redemption:{redemption.id}", actor),
            occurred_at=now,
            now=now,
        )
    session.execute(
        update(RewardCounter)
        .where(RewardCounter.reward_id == redemption.reward_id, RewardCounter.issued > 0)
        .values(issued=RewardCounter.issued - 1)
    )
    redemption.status = "rolled_back"
    redemption.rolled_back_at = now
    emit(
        session,
        RedemptionRolledBack(redemption_id=redemption.id, reward_id=redemption.reward_id),
        member_id=member_id,
        now=now,
        backfill=False,
    )
    session.flush()
    return redemption


def _cost(reward: Reward, points: int | None) -> int:
    if points is None:
        return reward.cost
    if reward.type != "pay_with_points":
        raise InvalidInput(
            "'points' applies only to pay_with_points rewards.",
            code="points_not_applicable",
            details={"reward_id": reward.id},
        )
    if points < reward.cost:
        raise InvalidInput(
            f"Pay with points takes at least {reward.cost} points.",
            code="points_below_minimum",
            details={"minimum": reward.cost, "points": points},
        )
    return points


def _redeemed_by(session: Session, member_id: int, reward_id: str) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Redemption.member_id == member_id,
                Redemption.reward_id == reward_id,
                Redemption.status != "rolled_back",
            )
        )
        or 0
    )


def _take_stock(session: Session, reward: Reward) -> None:
    """Count one unit out; with a stock, only while ``issued < stock`` (a conditional update,
    so concurrent redemptions by different members can never take more than there is)."""
    if _count_one(session, reward):
        return
    if reward.stock is None:
        # No counter row: unlimited from the start, so redemptions of a popular reward do
        # not all queue on one row. Should a stock be set later, the counter starts from
        # the redemptions made until then (below).
        return
    exists = session.scalar(
        select(RewardCounter.reward_id).where(RewardCounter.reward_id == reward.id)
    )
    if exists is None:
        live = session.scalar(
            select(func.count())
            .select_from(Redemption)
            .where(Redemption.reward_id == reward.id, Redemption.status != "rolled_back")
        )
        try:
            with session.begin_nested():
                session.add(RewardCounter(reward_id=reward.id, issued=int(live or 0)))
                session.flush()
        except IntegrityError:
            pass  # created by a concurrent redemption; the update below sees it
        if _count_one(session, reward):
            return
    raise OutOfStock(f"Reward '{reward.id}' is out of stock.", details={"reward_id": reward.id})


_counters = cast(Table, RewardCounter.__table__)
_COUNT_ONE = (
    update(_counters)
    .where(_counters.c.reward_id == bindparam("reward"))
    .values(issued=_counters.c.issued + 1)
)
_COUNT_ONE_IN_STOCK = _COUNT_ONE.where(_counters.c.issued < bindparam("stock"))


def _count_one(session: Session, reward: Reward) -> bool:
    """One more unit on the reward's counter row, if it has one (and, with a stock, one is
    left): False when no row was updated. A Core statement of the table, built once."""
    if reward.stock is None:
        taken = session.execute(_COUNT_ONE, {"reward": reward.id})
    else:
        taken = session.execute(_COUNT_ONE_IN_STOCK, {"reward": reward.id, "stock": reward.stock})
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


# --- output -------------------------------------------------------------------------------


def reward_out(state: RewardState, language: str, currency: str) -> RewardOut:
    reward = state.reward
    spec = reward.coupon
    return RewardOut(
        id=reward.id,
        type=reward.type,
        name=reward.name.get(language),
        description=reward.description.get(language) if reward.description else None,
        cost=reward.cost,
        redeemable=state.redeemable,
        locked_reasons=[
            LockedReasonOut(code=lock.code, message=lock.message, details=lock.details)
            for lock in state.locked
        ],
        stock_left=state.stock_left,
        per_member_limit=reward.per_member_limit,
        redeemed_by_member=state.redeemed_by_member,
        available_from=reward.available_from,
        available_until=reward.available_until,
        tiers=list(reward.tiers) if reward.tiers is not None else None,
        coupon=(
            CouponTermsOut(
                percent_off=str(spec.percent_off) if spec.percent_off is not None else None,
                amount_off=str(spec.amount_off) if spec.amount_off is not None else None,
                free_shipping=spec.free_shipping,
                minimum_order=str(spec.minimum_order),
                skus=list(spec.skus) if spec.skus else None,
                categories=list(spec.categories) if spec.categories else None,
                valid_days=spec.valid_days,
            )
            if spec is not None
            else None
        ),
        value_per_point=str(reward.value_per_point) if reward.value_per_point is not None else None,
    )


def redemption_out(
    session: Session,
    redemption: Redemption,
    *,
    customer_id: str,
    now: datetime,
    points_available: int | None = None,
    coupon: Coupon | None = None,
) -> RedemptionOut:
    """The redemption as the API shows it (``coupon``: its coupon, when at hand; else read)."""
    if coupon is None and redemption.coupon_id is not None:
        coupon = session.get(Coupon, redemption.coupon_id)
    return RedemptionOut(
        id=redemption.id,
        customer_id=customer_id,
        reward_id=redemption.reward_id,
        reward_type=redemption.reward_type,
        points=redemption.points,
        status=redemption.status,
        coupon=(
            coupons.to_out(coupon, now=now, customer_id=customer_id) if coupon is not None else None
        ),
        value=(
            str(from_minor(redemption.value_minor, redemption.currency))
            if redemption.value_minor is not None
            else None
        ),
        currency=redemption.currency,
        fulfilment=dict(redemption.fulfilment or {}),
        created_at=redemption.created_at,
        rolled_back_at=redemption.rolled_back_at,
        points_available=points_available,
    )


def redemptions_out(
    session: Session, rows: Sequence[Redemption], *, customer_id: str, now: datetime
) -> list[RedemptionOut]:
    return [redemption_out(session, r, customer_id=customer_id, now=now) for r in rows]
