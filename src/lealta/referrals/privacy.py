"""Referrals in the GDPR documents: the member's code, the friends they referred (masked, as
in the cockpit: another person's data is not theirs to export), who referred them and the
rewards; on erasure the code is deleted (the link stops working) while the referral rows stay,
naming members only by id, so the ledger's history keeps its reasons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from lealta.models import Member, Referral, ReferralCode, ReferralReward
from lealta.privacy import registry
from lealta.referrals.maths import mask_name


@registry.eraser("referrals.code")
def erase_code(session: Session, member_id: int, now: datetime) -> None:
    session.execute(delete(ReferralCode).where(ReferralCode.member_id == member_id))


@registry.exporter("referrals")
def export_referrals(session: Session, member_id: int) -> dict[str, Any]:
    code = session.scalar(select(ReferralCode).where(ReferralCode.member_id == member_id))
    rows = session.execute(
        select(Referral, Member.name, Member.email)
        .join(Member, Member.id == Referral.friend_id)
        .where(or_(Referral.referrer_id == member_id, Referral.friend_id == member_id))
        .order_by(Referral.id)
    ).all()
    rewards = session.scalars(
        select(ReferralReward)
        .where(ReferralReward.member_id == member_id)
        .order_by(ReferralReward.id)
    ).all()
    return {
        "code": code.code if code is not None else None,
        "link_visits": code.visits if code is not None else 0,
        "friends": [
            {
                "friend": mask_name(name, email),
                "status": r.status,
                "referred_at": r.created_at.isoformat(),
            }
            for r, name, email in rows
            if r.referrer_id == member_id
        ],
        "referred_by_code": next((r.code for r, _, _ in rows if r.friend_id == member_id), None),
        "rewards": [
            {
                "referral_id": w.referral_id,
                "role": w.role,
                "points": w.points,
                "coupon_code": w.coupon_code,
                "rewarded_at": w.created_at.isoformat(),
                "reversed_at": w.reversed_at.isoformat() if w.reversed_at else None,
            }
            for w in rewards
        ],
    }
