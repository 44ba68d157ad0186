from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from lealta.apikeys.deps import Reader
from lealta.kit.db import Database
from lealta.kit.errors import NotFound
from lealta.kit.http import ERROR_RESPONSES, ClockDep, DbDep
from lealta.kit.ids import ExternalId
from lealta.members import service as members
from lealta.programme import service as programmes
from lealta.programme.schema import Benefits, Tier
from lealta.tiers import service
from lealta.tiers.schemas import BenefitsOut, MemberBenefitsOut, TierOut, TierRef

router = APIRouter(prefix="/v1/members", tags=["tiers"], responses=ERROR_RESPONSES)


class NoTiers(NotFound):
    code = "programme_has_no_tiers"


def _ref(tier: Tier, language: str) -> TierRef:
    return TierRef(
        id=tier.id,
        name=tier.name.get(language),
        threshold=str(tier.threshold),
        multiplier=str(tier.multiplier),
    )


def benefits_out(benefits: Benefits) -> BenefitsOut:
    return BenefitsOut(
        discount_percent=str(benefits.discount_percent),
        birthday_discount_percent=str(benefits.birthday_discount_percent),
        free_shipping=benefits.free_shipping,
        flags=list(benefits.flags),
    )


@router.get("/{external_id}/tier", response_model=TierOut, summary="Tier and progress")
async def get_tier(
    external_id: ExternalId, principal: Reader, db: DbDep, clock: ClockDep
) -> TierOut:
    """Current tier, qualifying value, next tier, progress %, amount needed and an estimated
    date to reach it from the member's own spending rate."""
    # Coroutines, so that FastAPI checks and serialises the answer on the event loop: a plain
    # ``def`` endpoint costs a second trip through the thread pool for that.
    return await run_in_threadpool(_tier, db, external_id, clock.now())


def _tier(db: Database, external_id: str, now: datetime) -> TierOut:
    """Two Core statements, no transaction: the member, its account and the programme in
    force; the qualifying figures with the tier history."""
    with db.unit_of_work(write=False, autocommit=True) as session:
        row = members.read_member(session, external_id, programme_at=datetime.now(UTC))
        programme = programmes.by_digest(session, row.digest)
        status = service.status(session, programme, row, row, now=now)
    if status is None:
        raise NoTiers("The programme in force has no tiers.")
    p = status.progress
    return TierOut(
        external_id=external_id,
        basis=status.tiers.basis,
        period=status.tiers.period,
        tier=_ref(p.current, row.language),
        benefits=benefits_out(p.current.benefits),
        since=status.since,
        held_until=status.held_until,
        qualifying_value=str(p.value),
        next_tier=_ref(p.next, row.language) if p.next else None,
        progress_percent=str(p.percent) if p.percent is not None else None,
        amount_needed=str(p.needed) if p.needed is not None else None,
        estimated_date=p.estimated_date,
        history=status.history,
    )


@router.get(
    "/{external_id}/benefits", response_model=MemberBenefitsOut, summary="Benefits for checkout"
)
async def get_benefits(external_id: ExternalId, principal: Reader, db: DbDep) -> MemberBenefitsOut:
    """The member's tier benefits as data (discount %, free shipping, flags) for checkout."""
    return await run_in_threadpool(_benefits, db, external_id)


def _benefits(db: Database, external_id: str) -> MemberBenefitsOut:
    """One Core statement, no transaction: the member's account and the programme in force."""
    with db.unit_of_work(write=False, autocommit=True) as session:
        row = members.read_member(session, external_id, programme_at=datetime.now(UTC))
        programme = programmes.by_digest(session, row.digest)
    tier = programme.tier(row.tier_id) or (programme.tiers.levels[0] if programme.tiers else None)
    return MemberBenefitsOut(
        external_id=external_id,
        tier=tier.id if tier else None,
        benefits=benefits_out(tier.benefits if tier else Benefits()),
    )
