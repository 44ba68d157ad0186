"""``/v1/plans``: the programme's paid plans, a member's subscription, and the payment
provider's signed webhooks."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lealta.apikeys.deps import Reader, Writer
from lealta.kit.errors import NotFound, PayloadTooLarge
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    IdempotencyKey,
    SettingsDep,
    replayable,
    respond,
)
from lealta.kit.idempotency import run_maybe_once
from lealta.kit.ids import ExternalId
from lealta.kit.money import exponent
from lealta.members import service as members
from lealta.models import PlanSubscription
from lealta.plans import service
from lealta.plans.provider import provider_for
from lealta.plans.schemas import (
    CancelIn,
    MemberPlanOut,
    PlanList,
    SubscribeIn,
    SubscriptionOut,
    WebhookAck,
)
from lealta.programme import service as programmes

router = APIRouter(tags=["plans"], responses=ERROR_RESPONSES)

MAX_WEBHOOK_BYTES = 64 * 1024


def subscription_out(sub: PlanSubscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=sub.id,
        plan=sub.plan_id,
        status=sub.status,
        fee=Decimal(sub.fee_minor).scaleb(-exponent(sub.currency)),
        currency=sub.currency,
        period=sub.period,
        started_at=sub.started_at,
        trial_ends_at=sub.trial_ends_at,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        benefits_until=sub.benefits_until,
        cancel_at_period_end=sub.cancel_at_period_end,
        canceled_at=sub.canceled_at,
        ended_at=sub.ended_at,
        checkout_url=sub.checkout_url if sub.status == "incomplete" else None,
    )


@router.get("/v1/plans", response_model=PlanList, summary="List the paid plans")
def list_plans(principal: Reader, db: DbDep, clock: ClockDep) -> PlanList:
    """The plans of the programme in force: fee per period, trial, grace and benefits."""
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=clock.now())
    return PlanList(currency=programme.currency, items=list(programme.plans))


@router.get(
    "/v1/members/{customer_id}/plan",
    response_model=MemberPlanOut,
    summary="A member's plan and past subscriptions",
)
def member_plan(
    customer_id: ExternalId, principal: Reader, db: DbDep, clock: ClockDep
) -> MemberPlanOut:
    with db.unit_of_work(write=False) as session:
        member = members.get(session, customer_id)
        current = service.live(session, member.id)
        past = service.history(session, member.id)
        return MemberPlanOut(
            customer_id=customer_id,
            current=subscription_out(current) if current else None,
            history=[subscription_out(s) for s in past],
        )


@router.post(
    "/v1/members/{customer_id}/plan",
    status_code=201,
    response_model=SubscriptionOut,
    summary="Subscribe a member to a plan",
    responses=replayable(SubscriptionOut),
)
def subscribe(
    customer_id: ExternalId,
    data: SubscribeIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Opens the subscription at the payment provider: with a trial the benefits start now
    (`trialing`); otherwise it is `incomplete` until the first payment, and `checkout_url`
    is where the member pays. A member holds one plan at a time (`409 plan_already_active`);
    without a provider configured: `409 payments_not_configured`."""
    provider = provider_for(settings)
    with db.unit_of_work() as session:
        now = clock.now()
        programme = programmes.current(session, now=now)

        def effect() -> tuple[int, dict[str, object]]:
            sub = service.subscribe(
                session, provider, programme, external_id=customer_id, plan_id=data.plan,
                actor=principal.actor, now=now,
            )  # fmt: skip
            return 201, subscription_out(sub).model_dump(mode="json")

        outcome = run_maybe_once(
            session, scope=f"plan.subscribe:{customer_id}", key=idempotency_key,
            payload=data.model_dump(mode="json"), now=now, effect=effect,
        )  # fmt: skip
    return respond(outcome)


@router.post(
    "/v1/members/{customer_id}/plan/cancel",
    response_model=SubscriptionOut,
    summary="Cancel a member's plan",
    responses=replayable(SubscriptionOut),
)
def cancel(
    customer_id: ExternalId,
    data: CancelIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """At the end of the paid period by default (benefits kept until then), or at once.
    No live plan: `404 no_plan`."""
    provider = provider_for(settings)
    with db.unit_of_work() as session:
        now = clock.now()
        programme = programmes.current(session, now=now)

        def effect() -> tuple[int, dict[str, object]]:
            sub = service.cancel(
                session, provider, programme, external_id=customer_id,
                at_period_end=data.at_period_end, actor=principal.actor, now=now,
            )  # fmt: skip
            return 200, subscription_out(sub).model_dump(mode="json")

        outcome = run_maybe_once(
            session, scope=f"plan.cancel:{customer_id}", key=idempotency_key,
            payload=data.model_dump(mode="json"), now=now, effect=effect,
        )  # fmt: skip
    return respond(outcome)


@router.post(
    "/v1/plans/webhooks/{provider}",
    response_model=WebhookAck,
    summary="Receive a payment provider's signed webhook",
)
async def payment_webhook(
    provider: str, request: Request, db: DbDep, clock: ClockDep, settings: SettingsDep
) -> WebhookAck:
    """Signed with `Lealta-Payments-Signature` (see the README's "Paid plans"). Each event id
    is applied once; a replay answers `duplicate`. A bad or stale signature is
    `401 invalid_signature`; an unknown subscription `409 unknown_subscription` (retry)."""
    if provider != "http":
        raise NotFound(f"No payment provider is called '{provider[:40]}'.", code="unknown_provider")
    adapter = provider_for(settings, provider)
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLarge("A payment webhook is at most 64 KiB.")
    event = adapter.read(dict(request.headers), body, now=clock.now())

    def work() -> WebhookAck:
        with db.unit_of_work() as session:
            now = clock.now()
            programme = programmes.current(session, now=now)
            handled = service.handle(session, programme, provider, event, now=now)
        return WebhookAck(received=True, outcome=handled.outcome)

    return await run_in_threadpool(work)
