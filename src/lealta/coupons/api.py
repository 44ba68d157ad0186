from __future__ import annotations

import hashlib

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lealta.apikeys.deps import Reader, Writer
from lealta.coupons import service
from lealta.coupons.schemas import (
    CouponOut,
    RedeemIn,
    RedeemOut,
    RollbackIn,
    RollbackOut,
    ValidateIn,
    ValidationOut,
    WalletOut,
)
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    IdempotencyKey,
    RequiredIdempotencyKey,
    replayable,
    respond,
)
from lealta.kit.idempotency import check_key, run_maybe_once, run_once
from lealta.kit.ids import ExternalId
from lealta.members import service as members
from lealta.models.coupon import normalise

router = APIRouter(prefix="/v1", tags=["coupons"], responses=ERROR_RESPONSES)


@router.post("/coupons/validate", response_model=ValidationOut, summary="Check a coupon")
def validate_coupon(
    data: ValidateIn, principal: Reader, db: DbDep, clock: ClockDep
) -> ValidationOut:
    """Whether the code applies to this cart and the discount it gives, without using it.

    Always 200 for a well-formed cart: `valid` says yes or no and `reason_code` says why not
    (`unknown`, `expired`, `not_yet_valid`, `used_up`, `wrong_member`, `minimum_order`,
    `no_eligible_items`, `currency_mismatch`, `void`)."""
    with db.unit_of_work(write=False) as session:
        cart = service.cart_from(data.cart)
        coupon, result = service.validate(
            session, data.code, cart, customer_id=data.customer_id, now=clock.now()
        )
        return service.validation_out(data.code, coupon, result, cart)


@router.post(
    "/coupons/{code}/redeem",
    status_code=201,
    response_model=RedeemOut,
    summary="Use a coupon",
    responses=replayable(RedeemOut),
)
def redeem_coupon(
    code: str,
    data: RedeemIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Apply the coupon to an order. Requires an `Idempotency-Key`. Concurrent tills cannot
    exceed the coupon's uses: `409 coupon_used_up` for the late ones; other refusals are
    `409 coupon_<reason_code>`; an unknown code is `404 coupon_not_found`."""
    key = check_key(idempotency_key)
    with db.unit_of_work() as session:
        now = clock.now()

        def effect() -> tuple[int, dict[str, object]]:
            cart = service.cart_from(data.cart)
            coupon, use, result = service.redeem(
                session,
                code,
                order_id=data.order_id,
                cart=cart,
                customer_id=data.customer_id,
                now=now,
            )
            out = RedeemOut(
                coupon=service.to_out(
                    coupon, now=now, customer_id=service.customer_of(session, coupon)
                ),
                use=service.use_out(use, coupon.currency),
                free_shipping=result.free_shipping,
            )
            return 201, out.model_dump(mode="json")

        outcome = run_once(
            session,
            scope=_scope("coupon-redeem", code),
            key=key,
            payload=data.model_dump(mode="json"),
            now=now,
            effect=effect,
        )
    return respond(outcome)


@router.post(
    "/coupons/{code}/rollback",
    response_model=RollbackOut,
    summary="Undo a coupon's use",
    responses=replayable(RollbackOut),
)
def rollback_coupon(
    code: str,
    data: RollbackIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Undo the coupon's use on `order_id` (order cancelled) so it can be used again while
    valid. `404 coupon_use_not_found` if it was not used there; `409 already_rolled_back` if
    that use was already undone. An `Idempotency-Key` is optional."""
    with db.unit_of_work() as session:
        now = clock.now()

        def effect() -> tuple[int, dict[str, object]]:
            coupon, use = service.rollback_use(session, code, order_id=data.order_id, now=now)
            out = RollbackOut(
                coupon=service.to_out(
                    coupon, now=now, customer_id=service.customer_of(session, coupon)
                ),
                use=service.use_out(use, coupon.currency),
            )
            return 200, out.model_dump(mode="json")

        outcome = run_maybe_once(
            session,
            scope=_scope("coupon-rollback", code),
            key=idempotency_key,
            payload=data.model_dump(mode="json"),
            now=now,
            effect=effect,
        )
    return respond(outcome)


@router.get("/coupons/{code}", response_model=CouponOut, summary="A coupon")
def get_coupon(code: str, principal: Reader, db: DbDep, clock: ClockDep) -> CouponOut:
    """The coupon's terms, validity, uses and status (an expired coupon reads `expired` as
    soon as its `valid_until` passes)."""
    with db.unit_of_work(write=False) as session:
        coupon = service.get(session, code)
        return service.to_out(
            coupon, now=clock.now(), customer_id=service.customer_of(session, coupon)
        )


@router.get(
    "/members/{external_id}/coupons", response_model=WalletOut, summary="The member's coupons"
)
def member_coupons(
    external_id: ExternalId, principal: Reader, db: DbDep, clock: ClockDep
) -> WalletOut:
    """The coupon wallet: usable coupons first (soonest to expire first), then used, expired
    and cancelled ones, newest first."""
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        return WalletOut(
            customer_id=external_id,
            items=[
                service.to_out(c, now=now, customer_id=external_id)
                for c in service.wallet(session, member.id, now=now)
            ],
        )


def _scope(kind: str, code: str) -> str:
    """Keys are per coupon; the code is hashed so any code fits the scope column."""
    return f"{kind}:{hashlib.sha256(normalise(code).encode()).hexdigest()[:40]}"
