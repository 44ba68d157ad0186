from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from lealta.apikeys.deps import Reader, Writer
from lealta.kit.db import Database
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    RequiredIdempotencyKey,
    replayable,
    respond,
)
from lealta.kit.idempotency import check_key, run_once
from lealta.kit.ids import ExternalId
from lealta.members import service as members
from lealta.models import Account, Member, Redemption
from lealta.programme import service as programmes
from lealta.rewards import service
from lealta.rewards.schemas import (
    MemberRewardsOut,
    RedemptionIn,
    RedemptionOut,
    RedemptionPage,
)

router = APIRouter(prefix="/v1", tags=["rewards"], responses=ERROR_RESPONSES)


@router.get(
    "/members/{external_id}/rewards",
    response_model=MemberRewardsOut,
    summary="Rewards the member can choose",
)
async def member_rewards(
    external_id: ExternalId, principal: Reader, db: DbDep, clock: ClockDep
) -> MemberRewardsOut:
    """Every reward with `redeemable` and, when locked, each reason with a message:
    `insufficient_points` (with `points_needed`), `tier_required`, `segment_required`,
    `not_eligible`, `out_of_stock`, `not_available_yet`, `no_longer_available`, `limit_reached`,
    `not_redeemable` (issued only by a spending threshold)."""
    # A coroutine, so that FastAPI checks and serialises the answer on the event loop: a
    # plain ``def`` endpoint costs a second trip through the thread pool for that.
    return await run_in_threadpool(_member_rewards, db, external_id, clock.now())


def _member_rewards(db: Database, external_id: str, now: datetime) -> MemberRewardsOut:
    """Two Core statements, no transaction: the member, its account and the programme in
    force; the stock counters with the member's redemptions."""
    with db.unit_of_work(write=False, autocommit=True) as session:
        row = members.read_member(session, external_id, programme_at=datetime.now(UTC))
        programme = programmes.by_digest(session, row.digest)
        states = service.catalogue(session, programme, row, row, now=now)
    return MemberRewardsOut(
        customer_id=external_id,
        points_available=row.points_available,
        tier=service.effective_tier(programme, row),
        currency=programme.currency,
        items=[service.reward_out(s, row.language, programme.currency) for s in states],
    )


@router.post(
    "/members/{external_id}/redemptions",
    status_code=201,
    response_model=RedemptionOut,
    summary="Redeem a reward",
    responses=replayable(RedemptionOut),
)
def redeem_reward(
    external_id: ExternalId,
    data: RedemptionIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """One click, one transaction: points debited, a unit of stock taken, and a unique coupon
    issued (coupon rewards) or a fulfilment record created (products, experiences); pay with
    points returns the currency value. Requires an `Idempotency-Key`. Refusals are `409` with
    the locked reason's code, e.g. `insufficient_points`, `out_of_stock`, `limit_reached`."""
    key = check_key(idempotency_key)
    with db.unit_of_work() as session:
        now = clock.now()

        def effect() -> tuple[int, dict[str, object]]:
            done = service.redeem_for(
                session,
                external_id,
                data.reward_id,
                now=now,
                actor=principal.actor,
                points=data.points,
            )
            out = service.redemption_out(
                session,
                done.redemption,
                customer_id=external_id,
                now=now,
                points_available=done.points_available,
                coupon=done.coupon,
            )
            return 201, out.model_dump(mode="json")

        outcome = run_once(
            session,
            scope=_scope("redeem", external_id),
            key=key,
            payload=data.model_dump(mode="json"),
            now=now,
            effect=effect,
        )
    return respond(outcome)


@router.get(
    "/members/{external_id}/redemptions",
    response_model=RedemptionPage,
    summary="The member's redemptions",
)
def member_redemptions(
    external_id: ExternalId,
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RedemptionPage:
    """Newest first, rolled-back ones included."""
    now = clock.now()
    with db.unit_of_work(write=False, autocommit=True) as session:
        member = members.get(session, external_id)
        rows = service.history(session, member.id, limit=limit)
        return RedemptionPage(
            items=service.redemptions_out(session, rows, customer_id=external_id, now=now)
        )


@router.post(
    "/redemptions/{redemption_id}/rollback",
    response_model=RedemptionOut,
    summary="Roll back a redemption",
    responses=replayable(RedemptionOut),
)
def rollback_redemption(
    redemption_id: int,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Give the points back to the very lots they came from, return the unit to stock and void
    the coupon. Requires an `Idempotency-Key`. `409 coupon_already_used` if the coupon was
    used at checkout; `409 already_rolled_back` the second time."""
    key = check_key(idempotency_key)
    with db.unit_of_work() as session:
        now = clock.now()

        def effect() -> tuple[int, dict[str, object]]:
            redemption = service.rollback(session, redemption_id, now=now, actor=principal.actor)
            member = session.get(Member, redemption.member_id)
            assert member is not None
            return 200, _out(session, redemption, member, now).model_dump(mode="json")

        outcome = run_once(
            session,
            scope=f"redemption-rollback:{redemption_id}",
            key=key,
            payload={"redemption_id": redemption_id},
            now=now,
            effect=effect,
        )
    return respond(outcome)


def _out(session: Session, redemption: Redemption, member: Member, now: datetime) -> RedemptionOut:
    account = session.get(Account, member.id)
    return service.redemption_out(
        session,
        redemption,
        customer_id=member.external_id,
        now=now,
        points_available=account.points_available if account is not None else None,
    )


def _scope(kind: str, external_id: str) -> str:
    """Keys are per member; the id is hashed because it may be longer than the scope column."""
    return f"{kind}:{hashlib.sha256(external_id.encode()).hexdigest()[:40]}"
