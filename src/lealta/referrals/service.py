"""Referrals at the database edge: codes, claims with the fraud checks, qualification after
the return window, rewards once per (referral, role), reversal on refund and the review queue.

Every function takes the caller's session and never commits. The rules without a database
(codes, caps, traits, the offer in words) are in :mod:`lealta.referrals.maths`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.coupons import service as coupons
from lealta.kit.errors import Conflict, InvalidInput, LealtaError, NotFound
from lealta.kit.money import to_minor
from lealta.ledger import operations as ledger_ops
from lealta.ledger.schemas import AdjustmentIn
from lealta.models import Account, Event, Member, Order, Referral, ReferralCode, ReferralReward
from lealta.outbox import service as outbox
from lealta.outbox.events import ReferralRewarded
from lealta.programme.schema import Programme
from lealta.referrals import maths
from lealta.referrals.maths import ReferralOffer, offer_for
from lealta.referrals.schema import Referrals

__all__ = ["ReferralOffer", "offer_for"]

ACTOR = "referrals"
CODE_ATTEMPTS = 8
LIST_LIMIT = 200
OPEN = ("pending", "waiting")
"""Referrals still on their way to a reward."""


class ReferralsDisabled(Conflict):
    code = "referrals_disabled"


class ReferralCodeUnknown(LealtaError):
    status_code = 422
    code = "referral_code_unknown"


class ReferralNotFound(NotFound):
    code = "referral_not_found"


class ReferralStateConflict(Conflict):
    code = "referral_state_conflict"


# --- codes --------------------------------------------------------------------------------


def code_of(session: Session, member_id: int) -> str | None:
    return session.scalar(select(ReferralCode.code).where(ReferralCode.member_id == member_id))


def code_for(session: Session, member_id: int, *, now: datetime) -> str:
    """The member's referral code, made on first use. Two first reads at once make one code:
    the loser's insert fails on the member's key and it reads the winner's."""
    found = code_of(session, member_id)
    if found is not None:
        return found
    for _ in range(CODE_ATTEMPTS):
        code = maths.new_code()
        try:
            with session.begin_nested():
                session.add(ReferralCode(member_id=member_id, code=code, visits=0, created_at=now))
                session.flush()
        except IntegrityError:
            found = code_of(session, member_id)
            if found is not None:
                return found
            continue  # the drawn code was taken: draw again
        return code
    raise Conflict("Could not draw a free referral code; try again.", code="referral_code_busy")


def referrer_of_code(session: Session, raw: str | None, *, lock: bool = False) -> int | None:
    code = maths.normalise_code(raw)
    if code is None:
        return None
    stmt = select(ReferralCode.member_id).where(ReferralCode.code == code)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def record_visit(session: Session, raw: str) -> bool:
    """Count one landing-page view of the code; False for an unknown code."""
    code = maths.normalise_code(raw)
    if code is None:
        return False
    result = session.execute(
        update(ReferralCode)
        .where(ReferralCode.code == code)
        .values(visits=ReferralCode.visits + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def link_path(code: str) -> str:
    return f"/r/{code}"


# --- claims --------------------------------------------------------------------------------


def _traits(member: Member, extra: Iterable[Mapping[str, Any]] = ()) -> maths.Traits:
    return maths.traits(
        email=member.email, phone=member.phone, attributes=member.attributes, extra=extra
    )


def _counts(session: Session, referrer_id: int, now: datetime) -> tuple[int, int]:
    counted = Referral.status.not_in(("refused", "rejected"))
    total = session.scalar(select(func.count()).where(Referral.referrer_id == referrer_id, counted))
    month = session.scalar(
        select(func.count()).where(
            Referral.referrer_id == referrer_id,
            counted,
            Referral.created_at >= maths.month_start(now),
        )
    )
    return int(month or 0), int(total or 0)


def by_friend(session: Session, friend_id: int) -> Referral | None:
    return session.scalar(select(Referral).where(Referral.friend_id == friend_id))


def claim(
    session: Session,
    friend: Member,
    raw_code: str,
    *,
    channel: str,
    now: datetime,
    programme: Programme,
    extra_traits: Sequence[Mapping[str, Any]] = (),
    order_at: datetime | None = None,
    backfill: bool = False,
) -> Referral:
    """Record that ``friend`` came with ``raw_code``; returns the referral (the existing one
    when the friend was referred before: one referral per friend, also when claims race).

    Refused claims are kept (status ``refused``, the reasons in ``flags``) so the console
    shows them: the friend sharing the referrer's email, phone, address, payment or device
    (``on_self_referral``), a cap reached (``on_cap``) or a customer who had ordered before
    (``not_new``). With the policy ``flag``, the referral waits in the review queue instead.
    """
    section = programme.referrals
    if not section.enabled:
        raise ReferralsDisabled("The programme has no referral offer.")
    existing = by_friend(session, friend.id)
    if existing is not None:
        return existing
    referrer_id = referrer_of_code(session, raw_code, lock=True)
    if referrer_id is None:
        raise ReferralCodeUnknown(f"No member has the referral code {raw_code!r}.")
    code = maths.normalise_code(raw_code) or raw_code
    refusals: list[str] = []
    flags: list[str] = []
    if referrer_id == friend.id:
        refusals.append("self")
    else:
        referrer = session.get(Member, referrer_id)
        assert referrer is not None
        shared = maths.shared_traits(_traits(referrer), _traits(friend, extra_traits))
        target = refusals if section.on_self_referral == "refuse" else flags
        target.extend(f"same_{kind}" for kind in shared)
        month, total = _counts(session, referrer_id, now)
        caps = maths.cap_breaches(section, this_month=month, total=total)
        (refusals if section.on_cap == "refuse" else flags).extend(caps)
        if _ordered_before(session, friend.id, order_at if order_at is not None else now):
            refusals.append("not_new")
    status = "refused" if refusals else "flagged" if flags else "pending"
    referral = Referral(
        referrer_id=referrer_id,
        friend_id=friend.id,
        code=code,
        channel=channel,
        status=status,
        flags=refusals + flags,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(referral)
            session.flush()
    except IntegrityError:  # another claim for this friend won the race
        winner = by_friend(session, friend.id)
        assert winner is not None
        return winner
    if status == "pending" and section.friend_rewarded_at == "signup":
        _reward_friend(session, referral, programme, now=now, at="signup", backfill=backfill)
    if status == "pending":  # the order may have been recorded before the claim
        attach_orders(session, programme, friend_ids=[friend.id])
        session.refresh(referral)
    return referral


def _ordered_before(session: Session, member_id: int, at: datetime) -> bool:
    """Whether the member had paid an order before ``at`` (then they are no new customer)."""
    found = session.scalar(
        select(Order.id).where(Order.member_id == member_id, Order.occurred_at < at).limit(1)
    )
    return found is not None


# --- rewards -------------------------------------------------------------------------------


def _reward(
    session: Session,
    referral: Referral,
    *,
    role: str,
    member_id: int,
    points: int,
    reward_id: str | None,
    programme: Programme,
    now: datetime,
    at: str,
    backfill: bool = False,
) -> ReferralReward | None:
    """Credit one side once: the (referral, role) row is inserted first, in a savepoint; a
    second attempt (a retry, a race) fails on its key and credits nothing."""
    row = ReferralReward(
        referral_id=referral.id,
        member_id=member_id,
        role=role,
        points=points,
        details={"at": at, "reward_id": reward_id},
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None
    member = session.get(Member, member_id)
    assert member is not None
    if points > 0:
        result = ledger_ops.award(
            session,
            member.external_id,
            points=points,
            reason=("Referral: friend joined" if role == "referrer" else "Referral: welcome"),
            actor=ACTOR,
            source_type="referral",
            source_ref=f"{referral.id}:{role}",
            now=now,
            programme=programme,
        )
        row.ledger_entry_id = result.entry.id
    reward = programme.reward(reward_id) if reward_id else None
    if reward is not None and reward.coupon is not None:
        coupon = coupons.issue(
            session,
            reward.coupon,
            reward_id=reward.id,
            member_id=member_id,
            source="referral",
            currency=programme.currency,
            valid_from=now,
            now=now,
        )
        row.coupon_code = coupon.code
    session.flush()
    outbox.emit(
        session,
        ReferralRewarded(referral_id=referral.id, role=role, points=points, at=now),
        member_id=member_id,
        now=now,
        backfill=backfill,
    )
    return row


def _reward_friend(
    session: Session,
    referral: Referral,
    programme: Programme,
    *,
    now: datetime,
    at: str,
    backfill: bool = False,
) -> None:
    section = programme.referrals
    if section.friend_points <= 0 and section.friend_reward is None:
        return
    _reward(
        session,
        referral,
        role="friend",
        member_id=referral.friend_id,
        points=section.friend_points,
        reward_id=section.friend_reward,
        programme=programme,
        now=now,
        at=at,
        backfill=backfill,
    )


def _minimum_minor(section: Referrals, currency: str) -> int:
    return to_minor(section.minimum_order, currency, field="minimum_order")


def still_qualifies(total_minor: int, refunded_minor: int, minimum_minor: int) -> bool:
    """An order qualifies while what is left of it after refunds reaches the minimum (and is
    more than nothing)."""
    net = total_minor - refunded_minor
    return net > 0 and net >= minimum_minor


_net = Order.total_minor - Order.refunded_minor
"""What is left of an order after its refunds."""


def attach_orders(
    session: Session, programme: Programme, *, friend_ids: Sequence[int] | None = None
) -> int:
    """Give each pending referral its friend's first qualifying order (status ``waiting``):
    the first whose amount left after refunds reaches the minimum, in one read over the
    pending referrals' friends; returns how many were attached."""
    minimum = _minimum_minor(programme.referrals, programme.currency)
    friends = select(Referral.friend_id).where(Referral.status == "pending")
    if friend_ids is not None:
        friends = friends.where(Referral.friend_id.in_(list(friend_ids)))
    first = (
        select(Order.member_id, func.min(Order.occurred_at).label("at"))
        .where(_net >= max(minimum, 1), Order.member_id.in_(friends))
        .group_by(Order.member_id)
        .subquery()
    )
    stmt = (
        select(Referral.id, Order.external_id, Order.occurred_at, Order.total_minor)
        .join(first, first.c.member_id == Referral.friend_id)
        .join(
            Order,
            (Order.member_id == Referral.friend_id)
            & (Order.occurred_at == first.c.at)
            & (_net >= max(minimum, 1)),
        )
        .where(Referral.status == "pending")
        .order_by(Referral.id, Order.id)
    )
    if friend_ids is not None:
        stmt = stmt.where(Referral.friend_id.in_(list(friend_ids)))
    done: set[int] = set()
    for referral_id, order_id, order_at, total in session.execute(stmt).all():
        if referral_id in done:
            continue
        done.add(referral_id)
        session.execute(
            update(Referral)
            .where(Referral.id == referral_id, Referral.status == "pending")
            .values(
                status="waiting",
                order_external_id=order_id,
                order_at=order_at,
                order_total_minor=total,
            )
            .execution_options(synchronize_session=False)
        )
    return len(done)


@dataclass(slots=True)
class QualifyReport:
    attached: int = 0
    rewarded: list[int] = field(default_factory=list)
    voided: list[int] = field(default_factory=list)


def qualify_due(session: Session, programme: Programme, *, now: datetime) -> QualifyReport:
    """Reward the referrals whose qualifying order is older than the return window and not
    refunded; void those whose order was refunded. Runs set-wise over the waiting
    referrals (the periodic job ``referrals.qualify``); each reward is taken by a
    conditional update, so two runs at once reward once."""
    report = QualifyReport()
    section = programme.referrals
    if not section.enabled:
        return report
    report.attached = attach_orders(session, programme)
    cutoff = now - timedelta(days=section.return_window_days)
    minimum = _minimum_minor(section, programme.currency)
    rows = session.execute(
        select(Referral.id, Order.total_minor, Order.refunded_minor)
        .join(Order, Order.external_id == Referral.order_external_id)
        .where(Referral.status == "waiting", Referral.order_at <= cutoff)
        .order_by(Referral.id)
    ).all()
    for referral_id, total, refunded in rows:
        qualifies = still_qualifies(int(total), int(refunded or 0), minimum)
        target = "rewarded" if qualifies else "void"
        taken = session.execute(
            update(Referral)
            .where(Referral.id == referral_id, Referral.status == "waiting")
            .values(status=target, updated_at=now, rewarded_at=now if qualifies else None)
            .execution_options(synchronize_session=False)
        )
        if not getattr(taken, "rowcount", 0):
            continue
        if not qualifies:
            report.voided.append(referral_id)
            continue
        referral = session.get(Referral, referral_id)
        assert referral is not None
        session.refresh(referral)
        tier = session.scalar(
            select(Account.tier_id).where(Account.member_id == referral.referrer_id)
        )
        _reward(
            session,
            referral,
            role="referrer",
            member_id=referral.referrer_id,
            points=section.referrer_points_for(tier),
            reward_id=None,
            programme=programme,
            now=now,
            at="qualified",
        )
        if section.friend_rewarded_at == "qualified":
            _reward_friend(session, referral, programme, now=now, at="qualified")
        report.rewarded.append(referral_id)
    return report


# --- refunds -------------------------------------------------------------------------------


def on_refund(
    session: Session, order_external_id: str, programme: Programme, *, now: datetime
) -> str | None:
    """A refund of ``order_external_id``: a referral waiting on it is void; one already
    rewarded for it is reversed (the rewards given at qualification are debited, once).
    Returns the referral's new status, or None when the order qualifies no referral or
    still qualifies after the refund."""
    referral = session.scalar(
        select(Referral).where(Referral.order_external_id == order_external_id)
    )
    if referral is None or referral.status not in ("waiting", "rewarded"):
        return None
    order = session.scalar(select(Order).where(Order.external_id == order_external_id))
    minimum = _minimum_minor(programme.referrals, programme.currency)
    if order is not None and still_qualifies(order.total_minor, order.refunded_minor, minimum):
        return None
    was = referral.status
    target = "void" if was == "waiting" else "reversed"
    taken = session.execute(
        update(Referral)
        .where(Referral.id == referral.id, Referral.status == was)
        .values(status=target, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(taken, "rowcount", 0):
        return None
    if target == "reversed":
        reverse_rewards(session, referral.id, programme, now=now, reason="refund")
    return target


def reverse_rewards(
    session: Session, referral_id: int, programme: Programme, *, now: datetime, reason: str
) -> int:
    """Debit the points given at qualification for ``referral_id`` and void their coupons;
    each reward row is taken by a conditional update, so a repeat reverses nothing."""
    rows = session.scalars(
        select(ReferralReward).where(
            ReferralReward.referral_id == referral_id, ReferralReward.reversed_at.is_(None)
        )
    ).all()
    reversed_points = 0
    for row in rows:
        if (row.details or {}).get("at") != "qualified":
            continue  # a welcome given at sign-up stays the friend's
        taken = session.execute(
            update(ReferralReward)
            .where(ReferralReward.id == row.id, ReferralReward.reversed_at.is_(None))
            .values(reversed_at=now)
            .execution_options(synchronize_session=False)
        )
        if not getattr(taken, "rowcount", 0):
            continue
        member = session.get(Member, row.member_id)
        assert member is not None
        if row.points > 0:
            result = ledger_ops.adjust(
                session,
                member.external_id,
                AdjustmentIn(
                    points=-row.points, reason=f"Referral {referral_id} reversed: {reason}"
                ),
                actor=ACTOR,
                now=now,
                programme=programme,
            )
            session.execute(
                update(ReferralReward)
                .where(ReferralReward.id == row.id)
                .values(reversal_entry_id=result.entry.id)
                .execution_options(synchronize_session=False)
            )
            reversed_points += row.points
        if row.coupon_code:
            coupon = coupons.find(session, row.coupon_code)
            if coupon is not None and coupon.status == "active":
                with contextlib.suppress(Conflict):  # used at a till: the discount was had
                    coupons.void(session, coupon.id)
    return reversed_points


# --- event payloads (subscribers) ----------------------------------------------------------


def stored_payload(session: Session, event_key: str) -> dict[str, Any] | None:
    """The ingested event as the shop sent it, by the key the engine names it with."""
    return session.scalar(select(Event.payload).where(Event.idempotency_key == event_key))


def claim_from_order(
    session: Session,
    member: Member,
    payload: Mapping[str, Any],
    programme: Programme,
    *,
    now: datetime,
) -> Referral | None:
    """An ``order.paid`` that carries ``properties.referral_code`` refers its customer (the
    order's other properties feed the fraud checks); then the customer's pending referral
    gets its qualifying order."""
    properties = payload.get("properties") or {}
    raw = properties.get("referral_code") if isinstance(properties, Mapping) else None
    referral: Referral | None = None
    if isinstance(raw, str) and raw.strip() and programme.referrals.enabled:
        order_at_raw = payload.get("occurred_at")
        order_at = datetime.fromisoformat(order_at_raw) if isinstance(order_at_raw, str) else now
        referral = claim(
            session,
            member,
            raw,
            channel="order",
            now=now,
            programme=programme,
            extra_traits=[properties],
            order_at=order_at,
        )
    if programme.referrals.enabled:
        attach_orders(session, programme, friend_ids=[member.id])
    return referral


# --- the review queue ----------------------------------------------------------------------


def get(session: Session, referral_id: int) -> Referral:
    referral = session.get(Referral, referral_id)
    if referral is None:
        raise ReferralNotFound(f"No referral {referral_id}.")
    return referral


def approve(
    session: Session, referral_id: int, *, actor: str, programme: Programme, now: datetime
) -> Referral:
    """A reviewer lets a flagged referral go on (its friend's welcome follows if due)."""
    referral = get(session, referral_id)
    if referral.status != "flagged":
        raise ReferralStateConflict(f"Referral {referral_id} is {referral.status}, not flagged.")
    referral.status = "pending"
    referral.reviewed_by = actor
    referral.reviewed_at = now
    referral.updated_at = now
    session.flush()
    audit.record(
        session, actor=actor, action="referral.approve", target_type="referral",
        target_id=str(referral_id), now=now, details={"flags": list(referral.flags or [])},
    )  # fmt: skip
    if programme.referrals.friend_rewarded_at == "signup":
        _reward_friend(session, referral, programme, now=now, at="signup")
    attach_orders(session, programme, friend_ids=[referral.friend_id])
    session.refresh(referral)
    return referral


def reject(
    session: Session,
    referral_id: int,
    *,
    actor: str,
    programme: Programme,
    now: datetime,
    reason: str | None = None,
) -> Referral:
    """A reviewer stops a referral (flagged or on its way); rewards already given for its
    qualification are reversed."""
    referral = get(session, referral_id)
    if referral.status not in ("flagged", "pending", "waiting", "rewarded"):
        raise ReferralStateConflict(f"Referral {referral_id} is {referral.status}.")
    was = referral.status
    referral.status = "rejected"
    referral.reviewed_by = actor
    referral.reviewed_at = now
    referral.updated_at = now
    session.flush()
    if was == "rewarded":
        reverse_rewards(session, referral.id, programme, now=now, reason="rejected")
    audit.record(
        session, actor=actor, action="referral.reject", target_type="referral",
        target_id=str(referral_id), now=now, reason=reason, details={"was": was},
    )  # fmt: skip
    return referral


# --- reads ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Funnel:
    links: int
    visits: int
    signups: int
    waiting: int
    qualified: int
    rewarded: int
    flagged: int
    refused: int
    rejected: int
    reversed: int


def funnel(session: Session, *, since: datetime | None = None) -> Funnel:
    """The referral funnel in two ``GROUP BY`` reads: links handed out and their visits,
    referred sign-ups and how far they got."""
    links, visits = session.execute(
        select(func.count(), func.coalesce(func.sum(ReferralCode.visits), 0))
    ).one()
    stmt = select(Referral.status, func.count()).group_by(Referral.status)
    if since is not None:
        stmt = stmt.where(Referral.created_at >= since)
    counts = {str(s): int(n) for s, n in session.execute(stmt)}
    considered = sum(n for s, n in counts.items() if s != "refused")
    return Funnel(
        links=int(links),
        visits=int(visits),
        signups=considered,
        waiting=counts.get("waiting", 0),
        qualified=counts.get("rewarded", 0) + counts.get("reversed", 0),
        rewarded=counts.get("rewarded", 0),
        flagged=counts.get("flagged", 0),
        refused=counts.get("refused", 0),
        rejected=counts.get("rejected", 0),
        reversed=counts.get("reversed", 0),
    )


@dataclass(frozen=True, slots=True)
class Row:
    referral: Referral
    referrer: str
    friend: str
    friend_name: str | None
    friend_email: str | None


def list_referrals(
    session: Session,
    *,
    status: str | None = None,
    limit: int = LIST_LIMIT,
    ids: Sequence[int] | None = None,
    member_id: int | None = None,
) -> list[Row]:
    """Referrals newest first, with both members' external ids."""
    referrer = Member.__table__.alias("referrer")
    friend = Member.__table__.alias("friend")
    stmt = (
        select(
            Referral, referrer.c.external_id, friend.c.external_id, friend.c.name, friend.c.email
        )
        .join(referrer, referrer.c.id == Referral.referrer_id)
        .join(friend, friend.c.id == Referral.friend_id)
        .order_by(Referral.id.desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(Referral.status == status)
    if ids is not None:
        stmt = stmt.where(Referral.id.in_(list(ids)))
    if member_id is not None:
        stmt = stmt.where((Referral.referrer_id == member_id) | (Referral.friend_id == member_id))
    return [Row(r, a, b, n, e) for r, a, b, n, e in session.execute(stmt).all()]


@dataclass(frozen=True, slots=True)
class Friend:
    referral_id: int
    masked_name: str
    status: str
    joined_at: datetime
    points_earned: int


@dataclass(frozen=True, slots=True)
class MemberReferrals:
    code: str
    link: str
    signup_url: str | None
    invited: int
    rewarded: int
    waiting: int
    points_earned: int
    friends: list[Friend]
    referred_by: str | None
    offer: ReferralOffer | None


def for_member(
    session: Session,
    member: Member,
    *,
    programme: Programme,
    now: datetime,
    base_url: str = "",
    language: str = "es",
) -> MemberReferrals:
    """What the member sees about referrals: the code and link, each friend (masked) with
    its status and the points earned for it, and who referred the member."""
    code = code_for(session, member.id, now=now)
    earned = (
        select(ReferralReward.referral_id, func.sum(ReferralReward.points).label("points"))
        .where(ReferralReward.role == "referrer", ReferralReward.reversed_at.is_(None))
        .group_by(ReferralReward.referral_id)
        .subquery()
    )
    rows = session.execute(
        select(Referral, Member.name, Member.email, func.coalesce(earned.c.points, 0))
        .join(Member, Member.id == Referral.friend_id)
        .outerjoin(earned, earned.c.referral_id == Referral.id)
        .where(Referral.referrer_id == member.id)
        .order_by(Referral.created_at.desc(), Referral.id.desc())
        .limit(LIST_LIMIT)
    ).all()
    friends = [
        Friend(
            referral_id=r.id,
            masked_name=maths.mask_name(name, email),
            status=r.status,
            joined_at=r.created_at,
            points_earned=int(points),
        )
        for r, name, email, points in rows
    ]
    mine = by_friend(session, member.id)
    referred_by = None
    if mine is not None:
        referred_by = session.scalar(select(Member.name).where(Member.id == mine.referrer_id))
    tier = session.scalar(select(Account.tier_id).where(Account.member_id == member.id))
    return MemberReferrals(
        code=code,
        link=f"{base_url.rstrip('/')}{link_path(code)}",
        signup_url=maths.signup_link(programme.referrals.signup_url, code),
        invited=sum(1 for f in friends if f.status != "refused"),
        rewarded=sum(1 for f in friends if f.status == "rewarded"),
        waiting=sum(1 for f in friends if f.status in OPEN),
        points_earned=sum(f.points_earned for f in friends),
        friends=friends,
        referred_by=maths.mask_name(referred_by, None) if mine is not None else None,
        offer=offer_for(programme, tier, language),
    )


def check_status(status: str | None) -> str | None:
    if status is not None and status not in maths.STATUSES:
        raise InvalidInput(f"Unknown referral status {status!r}.", code="invalid_status")
    return status
