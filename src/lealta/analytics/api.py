"""Predicted CLV over the API: one member, and the whole programme.

Both read the fit stored by the ``analytics.fit_clv`` job (:mod:`lealta.analytics.clv_store`):
no model is fitted during a request. ``model.fitted_at`` says when the fit was made.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from lealta.analytics import clv_data, clv_store
from lealta.analytics.schemas import (
    BgNbdOut,
    ClvAggregateOut,
    ClvBucketOut,
    ClvModelOut,
    GammaGammaOut,
    MemberClvOut,
)
from lealta.apikeys.deps import Reader
from lealta.kit.db import Database
from lealta.kit.http import ERROR_RESPONSES, ClockDep, DbDep
from lealta.kit.ids import ExternalId
from lealta.members import service as members
from lealta.programme import service as programmes

router = APIRouter(tags=["analytics"], responses=ERROR_RESPONSES)

_CONFLICTS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "No fit stored yet (clv_not_fitted), the last fit found too little"
        " purchase history (clv_insufficient_data, clv_fit_failed) or, for one member, no"
        " purchase when the model was fitted (clv_no_purchase_history)",
        "model": ERROR_RESPONSES[409]["model"],
    }
}

Horizon = Annotated[
    int, Query(ge=1, le=120, description="Months of future revenue counted in the CLV.")
]
Discount = Annotated[float, Query(ge=0, le=1, description="Annual discount rate (0.10 = 10 %).")]


def model_out(model: clv_data.FittedModel) -> ClvModelOut:
    bg, gg = model.bgnbd.params, model.gamma_gamma.params
    return ClvModelOut(
        fitted_at=model.fitted_at,
        customers=model.customers,
        log_likelihood=model.bgnbd.log_likelihood,
        bg_nbd=BgNbdOut(r=bg.r, alpha=bg.alpha, a=bg.a, b=bg.b),
        gamma_gamma=GammaGammaOut(p=gg.p, q=gg.q, gamma=gg.gamma),
    )


def member_clv_out(external_id: str, c: clv_data.MemberClv) -> MemberClvOut:
    return MemberClvOut(
        external_id=external_id,
        currency=c.currency,
        transactions=c.transactions,
        first_purchase=c.first_purchase,
        last_purchase=c.last_purchase,
        average_repeat_value=(
            str(c.average_repeat_value) if c.average_repeat_value is not None else None
        ),
        expected_purchases_90d=round(c.expected_purchases_90d, 6),
        expected_purchases_365d=round(c.expected_purchases_365d, 6),
        probability_alive=round(c.probability_alive, 6),
        expected_order_value=str(c.expected_order_value),
        predicted_clv=str(c.predicted_clv),
        horizon_months=c.horizon_months,
        annual_discount_rate=c.annual_discount_rate,
        model=model_out(c.model),
    )


@router.get(
    "/v1/members/{external_id}/clv",
    response_model=MemberClvOut,
    summary="Predicted CLV of a member",
    responses=_CONFLICTS,
)
async def get_member_clv(
    external_id: ExternalId,
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    horizon_months: Horizon = clv_data.DEFAULT_MONTHS,
    discount_rate: Discount = clv_data.DEFAULT_DISCOUNT_RATE,
) -> MemberClvOut:
    """Expected purchases in the next 90 and 365 days, probability of being still active, and
    the discounted revenue expected over `horizon_months`, from the stored BG/NBD +
    Gamma-Gamma fit of every member's order history (net of refunds, one purchase per day),
    as of the fit's `model.fitted_at` (nightly, or `lealta analytics fit-clv`)."""

    def work(database: Database) -> MemberClvOut:
        with database.unit_of_work(write=False) as session:
            now = clock.now()
            member = members.get(session, external_id)
            currency = programmes.current(session, now=now).currency
            result = clv_store.member_clv(
                session,
                member.id,
                currency=currency,
                months=horizon_months,
                annual_discount_rate=discount_rate,
            )
        return member_clv_out(external_id, result)

    return await run_in_threadpool(work, db)


@router.get(
    "/v1/analytics/clv",
    response_model=ClvAggregateOut,
    summary="Predicted CLV of the programme",
    responses=_CONFLICTS,
)
async def get_clv(
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    horizon_months: Horizon = clv_data.DEFAULT_MONTHS,
    discount_rate: Discount = clv_data.DEFAULT_DISCOUNT_RATE,
) -> ClvAggregateOut:
    """Total, average and median predicted CLV of the members with a purchase, quantiles and a
    distribution in currency buckets. Lealta's orders all belong to members, so there is no
    non-member comparison here."""

    def work(database: Database) -> ClvAggregateOut:
        with database.unit_of_work(write=False) as session:
            now = clock.now()
            currency = programmes.current(session, now=now).currency
            a = clv_store.aggregate_clv(
                session,
                currency=currency,
                months=horizon_months,
                annual_discount_rate=discount_rate,
            )
        return ClvAggregateOut(
            currency=a.currency,
            population=a.population,
            members=a.members,
            members_with_purchases=a.members_with_purchases,
            total_clv=str(a.total_clv),
            average_clv=str(a.average_clv),
            median_clv=str(a.median_clv),
            expected_purchases_365d=round(a.expected_purchases_365d, 4),
            average_probability_alive=round(a.average_probability_alive, 6),
            quantiles={k: str(v) for k, v in a.quantiles.items()},
            buckets=[
                ClvBucketOut(
                    lower=str(b.lower),
                    upper=str(b.upper) if b.upper is not None else None,
                    members=b.members,
                    clv=str(b.clv),
                )
                for b in a.buckets
            ],
            horizon_months=a.horizon_months,
            annual_discount_rate=a.annual_discount_rate,
            model=model_out(a.model),
        )

    return await run_in_threadpool(work, db)
