"""``/v1/members/{id}/referral``: a member's referral code, link, figures and friends; and
``/v1/referrals`` for the console's queue (list, approve, reject)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from lealta.apikeys.deps import Reader, Writer
from lealta.kit.http import ERROR_RESPONSES, ClockDep, DbDep, SettingsDep
from lealta.kit.ids import ExternalId
from lealta.members import service as members
from lealta.programme import service as programmes
from lealta.referrals import service

router = APIRouter(tags=["referrals"], responses=ERROR_RESPONSES)

Status = Literal[
    "pending", "waiting", "rewarded", "flagged", "refused", "rejected", "reversed", "void"
]
ReferralId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The referral's id.")]


class FriendOut(BaseModel):
    referral_id: int
    friend: str
    status: str
    referred_at: datetime
    points_earned: int


class OfferOut(BaseModel):
    title: str
    friend_text: str
    referrer_points: int
    friend_points: int
    friend_reward_id: str | None
    friend_rewarded_at: str
    minimum_order: Decimal
    currency: str
    return_window_days: int


class ReferralStatsOut(BaseModel):
    invited: int
    waiting: int
    rewarded: int
    points_earned: int


class MemberReferralOut(BaseModel):
    code: str
    link: str
    signup_url: str | None
    stats: ReferralStatsOut
    friends: list[FriendOut]
    referred: bool
    offer: OfferOut | None


class ReferralOut(BaseModel):
    id: int
    referrer: str
    friend: str
    code: str
    channel: str
    status: str
    flags: list[str]
    order_id: str | None
    order_at: datetime | None
    created_at: datetime
    rewarded_at: datetime | None
    reviewed_by: str | None


class ReferralList(BaseModel):
    items: list[ReferralOut]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=500)] | None = None


@router.get(
    "/v1/members/{external_id}/referral",
    response_model=MemberReferralOut,
    summary="A member's referral code, link and friends",
)
def member_referral(
    external_id: ExternalId, principal: Reader, db: DbDep, clock: ClockDep, settings: SettingsDep
) -> MemberReferralOut:
    """The code is made on first read. Friends are named masked (``Ana G.``)."""
    with db.unit_of_work() as session:
        now = clock.now()
        member = members.get(session, external_id)
        programme = programmes.current(session, now=now)
        view = service.for_member(
            session,
            member,
            programme=programme,
            now=now,
            base_url=settings.public_url,
            language=member.language,
        )
        offer = view.offer
        return MemberReferralOut(
            code=view.code,
            link=view.link,
            signup_url=view.signup_url,
            stats=ReferralStatsOut(
                invited=view.invited,
                waiting=view.waiting,
                rewarded=view.rewarded,
                points_earned=view.points_earned,
            ),
            friends=[
                FriendOut(
                    referral_id=f.referral_id,
                    friend=f.masked_name,
                    status=f.status,
                    referred_at=f.joined_at,
                    points_earned=f.points_earned,
                )
                for f in view.friends
            ],
            referred=view.referred_by is not None,
            offer=None
            if offer is None
            else OfferOut(
                title=offer.title,
                friend_text=offer.friend_text,
                referrer_points=offer.referrer_points,
                friend_points=offer.friend_points,
                friend_reward_id=offer.friend_reward_id,
                friend_rewarded_at=offer.friend_rewarded_at,
                minimum_order=offer.minimum_order,
                currency=offer.currency,
                return_window_days=offer.return_window_days,
            ),
        )


def referral_out(row: service.Row) -> ReferralOut:
    r = row.referral
    return ReferralOut(
        id=r.id,
        referrer=row.referrer,
        friend=row.friend,
        code=r.code,
        channel=r.channel,
        status=r.status,
        flags=list(r.flags or []),
        order_id=r.order_external_id,
        order_at=r.order_at,
        created_at=r.created_at,
        rewarded_at=r.rewarded_at,
        reviewed_by=r.reviewed_by,
    )


@router.get("/v1/referrals", response_model=ReferralList, summary="List referrals")
def list_referrals(
    principal: Reader,
    db: DbDep,
    status: Annotated[Status | None, Query(description="Only this status.")] = None,
) -> ReferralList:
    """Newest first (at most 200); ``status=flagged`` is the review queue."""
    with db.unit_of_work(write=False) as session:
        rows = service.list_referrals(session, status=service.check_status(status))
        return ReferralList(items=[referral_out(r) for r in rows])


def _one(session: Session, referral_id: int) -> ReferralOut:
    return referral_out(service.list_referrals(session, ids=[referral_id], limit=1)[0])


@router.post(
    "/v1/referrals/{referral_id}/approve", response_model=ReferralOut, summary="Approve a referral"
)
def approve_referral(
    referral_id: ReferralId,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    data: ReviewIn | None = None,
) -> ReferralOut:
    """A flagged referral goes on (``409 referral_state_conflict`` if it is not flagged)."""
    with db.unit_of_work() as session:
        now = clock.now()
        service.approve(
            session,
            referral_id,
            actor=principal.actor,
            programme=programmes.current(session, now=now),
            now=now,
        )
        return _one(session, referral_id)


@router.post(
    "/v1/referrals/{referral_id}/reject", response_model=ReferralOut, summary="Reject a referral"
)
def reject_referral(
    referral_id: ReferralId,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    data: ReviewIn | None = None,
) -> ReferralOut:
    """Stop a referral; rewards already given for its qualification are reversed."""
    with db.unit_of_work() as session:
        now = clock.now()
        service.reject(
            session,
            referral_id,
            actor=principal.actor,
            programme=programmes.current(session, now=now),
            now=now,
            reason=data.reason if data else None,
        )
        return _one(session, referral_id)
