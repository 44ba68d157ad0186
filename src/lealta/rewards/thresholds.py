"""Seed 003: a reward issued each time cumulative spend crosses a multiple of a threshold."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from lealta.coupons import service as coupons
from lealta.models import Member
from lealta.outbox.events import ThresholdReached
from lealta.outbox.service import emit
from lealta.programme.schema import CouponSpec, Programme


def threshold_reached(
    session: Session,
    programme: Programme,
    member: Member,
    *,
    rule_id: str,
    reward_id: str,
    crossed: Decimal,
    at: datetime,
    now: datetime,
    order_id: str,
    backfill: bool = False,
) -> None:
    """Issue the member a unique coupon for ``reward_id``, free of points, and record the
    crossing as a domain event carrying the code (workflows send it, remind, ask feedback).

    Called by ingestion with the member's account already locked. The coupon is valid from
    the order's time for the reward's ``valid_days``, so a replayed history issues the same
    windows it would have issued live. A reward without coupon terms (a product, say) is
    only announced; fulfilment follows from the outbox message.
    """
    reward = programme.reward(reward_id)
    code: str | None = None
    if reward is not None and (reward.coupon is not None or reward.type == "free_shipping"):
        coupon = coupons.issue(
            session,
            reward.coupon or CouponSpec(free_shipping=True),
            reward_id=reward_id,
            member_id=member.id,
            source="threshold",
            currency=programme.currency,
            valid_from=at,
            now=now,
        )
        code = coupon.code
    emit(
        session,
        ThresholdReached(
            rule_id=rule_id,
            reward_id=reward_id,
            crossed=crossed,
            order_id=order_id,
            at=at,
            coupon_code=code,
        ),
        member_id=member.id,
        now=now,
        backfill=backfill,
    )
