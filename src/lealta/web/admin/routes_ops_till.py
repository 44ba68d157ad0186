"""Console pages for coupon look-up and in-store redemption (the till).

Every till action carries an idempotency key drawn when the form was rendered, claimed in
the same transaction as the redemption: a double click, or a resubmitted form, is one
redemption, and both submissions land on the same confirmation page. Confirmation pages are
reached by redirect, so reloading them never redeems again.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.coupons import service as coupons
from lealta.kit.errors import InvalidInput, LealtaError, NotFound
from lealta.kit.http import ClockDep, DbDep
from lealta.kit.idempotency import check_key, run_once
from lealta.kit.money import from_minor, to_minor
from lealta.members import service as members
from lealta.models import Account, Coupon, CouponUse, Member, Redemption
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.rewards import service as rewards
from lealta.staff.service import Staff, require
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.routes_ops_common import LOCKED, explain, parse_amount, translator
from lealta.web.security import check_csrf
from lealta.web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)


def _scope(kind: str, external_id: str) -> str:
    return f"{kind}:{hashlib.sha256(external_id.encode()).hexdigest()[:40]}"


def _minor(amount_minor: int | None, currency: str) -> str | None:
    return None if amount_minor is None else str(from_minor(amount_minor, currency))


# --- coupons ------------------------------------------------------------------------------


def _coupon_context(session: Session, code: str, now: datetime) -> dict[str, Any]:
    coupon = coupons.find(session, code)
    if coupon is None:
        return {"code": code, "coupon": None}
    owner = session.get(Member, coupon.member_id) if coupon.member_id is not None else None
    return {
        "code": code,
        "coupon": coupon,
        "status": coupons.effective_status(coupon, now),
        "owner": owner,
        "uses": coupons.uses_of(session, coupon.id),
        "money": lambda minor: _minor(minor, coupon.currency),
    }


@router.get("/coupons")
def coupons_page(
    request: Request,
    staff: StaffDep,
    db: DbDep,
    clock: ClockDep,
    code: str = "",
    rolled_back: str | None = None,
) -> Response:
    require(staff, "view")
    _ = translator(request)
    code = code.strip()[:64]
    context: dict[str, Any] = {"staff": staff, "code": code}
    status_code = 200
    if code:
        with db.unit_of_work(write=False) as session:
            context.update(_coupon_context(session, code, clock.now()))
        if context["coupon"] is None:
            context["error"] = _("No coupon has this code.")
            status_code = 404
    if rolled_back:
        context["flash"] = {
            "kind": "ok",
            "text": _("The use on order %(order)s was rolled back.", order=rolled_back),
        }
    return render(request, "admin/coupons.html", context, status_code=status_code)


@router.post("/coupons/rollback")
def coupon_rollback(
    request: Request,
    staff: StaffDep,
    db: DbDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form()] = "",
    code: Annotated[str, Form(max_length=64)] = "",
    order_ref: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, "support")
    now = clock.now()
    try:
        with db.unit_of_work() as session:
            coupon, use = coupons.rollback_use(session, code, order_id=order_ref, now=now)
            audit.record(
                session,
                actor=staff.actor,
                action="coupon.rollback_use",
                target_type="coupon",
                target_id=coupon.code,
                now=now,
                details={"order_ref": order_ref, "discount_minor": use.discount_minor},
            )
            normalised = coupon.code
    except LealtaError as exc:
        with db.unit_of_work(write=False) as session:
            context = _coupon_context(session, code.strip(), now)
        return render(
            request,
            "admin/coupons.html",
            {"staff": staff, **context, "error": explain(request, exc)},
            status_code=exc.status_code,
        )
    query = urlencode({"code": normalised, "rolled_back": order_ref})
    return RedirectResponse(f"/admin/coupons?{query}", status_code=303)


# --- the till: finding the member ---------------------------------------------------------


def _find(session: Session, query: str) -> tuple[list[Member], str | None]:
    """External id (typed, or scanned from the member card's QR) first, then email, then a
    coupon code (scanned from a coupon's QR): its owner, with the code ready to use."""
    query = query.strip()
    if not query:
        return [], None
    member = members.find(session, query)
    if member is not None:
        return [member], None
    if "@" in query:
        return members.find_by_email(session, query), None
    coupon = coupons.find(session, query)
    if coupon is not None and coupon.member_id is not None:
        owner = session.get(Member, coupon.member_id)
        if owner is not None:
            return [owner], coupon.code
    return [], None


def _panel(session: Session, programme: Programme, member: Member, now: datetime) -> dict[str, Any]:
    """Everything the till shows for one member."""
    account = session.get(Account, member.id)
    assert account is not None
    tier_id = rewards.effective_tier(programme, account)
    tier = programme.tier(tier_id)
    states = rewards.catalogue(session, programme, member, account, now=now)
    wallet = [
        c
        for c in coupons.wallet(session, member.id, now=now)
        if coupons.effective_status(c, now) == "active" and now >= c.valid_from
    ]
    return {
        "member": member,
        "account": account,
        "tier": tier,
        "wallet": wallet,
        "states": states,
        "currency": programme.currency,
        "money": lambda minor, currency=programme.currency: _minor(minor, currency),
        "locked_labels": LOCKED,
        "coupon_key": uuid.uuid4().hex,
        "reward_keys": {s.reward.id: uuid.uuid4().hex for s in states},
    }


@router.get("/till")
def till_page(
    request: Request,
    staff: StaffDep,
    db: DbDep,
    clock: ClockDep,
    q: str = "",
    member: str = "",
    code: str = "",
) -> Response:
    require(staff, "support")
    return _till(
        request, staff, db, clock.now(), query=q, external_id=member, form={"code": code[:64]}
    )


def _till(
    request: Request,
    staff: Staff,
    db: DbDep,
    now: datetime,
    *,
    query: str = "",
    external_id: str = "",
    error: str | None = None,
    status_code: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    _ = translator(request)
    query = query.strip()[:320]
    context: dict[str, Any] = {"staff": staff, "q": query, "form": form or {}, "error": error}
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        found: list[Member] = []
        if external_id:
            one = members.find(session, external_id)
            found = [one] if one is not None else []
        elif query:
            found, scanned_code = _find(session, query)
            if scanned_code and not context["form"].get("code"):
                context["form"] = {**context["form"], "code": scanned_code}
        if (query or external_id) and not found:
            context["error"] = error or _("No member matches “%(q)s”.", q=query or external_id)
            status_code = status_code if error else 404
        elif len(found) > 1:
            context["matches"] = found
        elif found:
            context.update(_panel(session, programme, found[0], now))
        return render(request, "admin/till.html", context, status_code=status_code)


# --- the till: redeeming ------------------------------------------------------------------


@router.post("/till/coupon")
def till_redeem_coupon(
    request: Request,
    staff: StaffDep,
    db: DbDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form()] = "",
    member: Annotated[str, Form(max_length=128)] = "",
    code: Annotated[str, Form(max_length=64)] = "",
    order_ref: Annotated[str, Form(max_length=128)] = "",
    amount: Annotated[str, Form(max_length=32)] = "",
    idempotency_key: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Use a coupon on an in-store order for this member."""
    check_csrf(request, csrf_token)
    require(staff, "support")
    now = clock.now()
    form = {"code": code, "order_ref": order_ref, "amount": amount}
    try:
        key = check_key(idempotency_key)
        if not order_ref.strip():
            raise InvalidInput("Give the order reference.", code="missing_order_ref")
        total = parse_amount(amount)
        with db.unit_of_work() as session:
            customer = members.get(session, member)
            programme = programmes.current(session, now=now)

            def effect() -> tuple[int, dict[str, Any]]:
                cart = coupons.Cart(
                    total_minor=to_minor(total, programme.currency, field="amount"),
                    currency=programme.currency,
                )
                coupon, use, _ = coupons.redeem(
                    session,
                    code,
                    order_id=order_ref.strip(),
                    cart=cart,
                    customer_id=customer.external_id,
                    now=now,
                )
                audit.record(
                    session,
                    actor=staff.actor,
                    action="coupon.redeem",
                    target_type="coupon",
                    target_id=coupon.code,
                    now=now,
                    details={
                        "order_ref": use.order_ref,
                        "discount_minor": use.discount_minor,
                        "member": customer.external_id,
                        "channel": "till",
                    },
                )
                return 201, {"use_id": use.id}

            outcome = run_once(
                session,
                scope=_scope("till-coupon", customer.external_id),
                key=key,
                payload={"code": code.strip().upper(), "order_ref": order_ref, "amount": amount},
                now=now,
                effect=effect,
            )
    except LealtaError as exc:
        return _till(
            request,
            staff,
            db,
            now,
            external_id=member,
            error=explain(request, exc),
            status_code=exc.status_code,
            form=form,
        )
    return RedirectResponse(f"/admin/till/coupon-uses/{outcome.body['use_id']}", status_code=303)


@router.post("/till/reward")
def till_redeem_reward(
    request: Request,
    staff: StaffDep,
    db: DbDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form()] = "",
    member: Annotated[str, Form(max_length=128)] = "",
    reward_id: Annotated[str, Form(max_length=64)] = "",
    points: Annotated[str, Form(max_length=12)] = "",
    idempotency_key: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Redeem a catalogue reward for this member (points debited, coupon or fulfilment)."""
    check_csrf(request, csrf_token)
    require(staff, "support")
    now = clock.now()
    try:
        key = check_key(idempotency_key)
        chosen: int | None = None
        if points.strip():
            if not points.strip().isdigit():
                raise InvalidInput("Points are a whole number.", code="invalid_points")
            chosen = int(points.strip())
        with db.unit_of_work() as session:
            customer = members.get(session, member)
            programme = programmes.current(session, now=now)

            def effect() -> tuple[int, dict[str, Any]]:
                redemption = rewards.redeem(
                    session,
                    programme,
                    customer,
                    reward_id,
                    now=now,
                    actor=staff.actor,
                    points=chosen,
                ).redemption
                audit.record(
                    session,
                    actor=staff.actor,
                    action="reward.redeem",
                    target_type="member",
                    target_id=customer.external_id,
                    now=now,
                    details={
                        "reward_id": reward_id,
                        "redemption_id": redemption.id,
                        "points": redemption.points,
                        "channel": "till",
                    },
                )
                return 201, {"redemption_id": redemption.id}

            outcome = run_once(
                session,
                scope=_scope("till-reward", customer.external_id),
                key=key,
                payload={"reward_id": reward_id, "points": chosen},
                now=now,
                effect=effect,
            )
    except LealtaError as exc:
        return _till(
            request,
            staff,
            db,
            now,
            external_id=member,
            error=explain(request, exc),
            status_code=exc.status_code,
        )
    return RedirectResponse(
        f"/admin/till/redemptions/{outcome.body['redemption_id']}", status_code=303
    )


# --- the till: confirmations --------------------------------------------------------------


@router.get("/till/redemptions/{redemption_id}")
def till_redemption_done(
    request: Request, redemption_id: int, staff: StaffDep, db: DbDep, clock: ClockDep
) -> Response:
    require(staff, "support")
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        redemption = session.get(Redemption, redemption_id)
        if redemption is None:
            raise rewards.RedemptionNotFound(f"No redemption {redemption_id}.")
        customer = session.get(Member, redemption.member_id)
        account = session.get(Account, redemption.member_id)
        assert customer is not None and account is not None
        coupon = session.get(Coupon, redemption.coupon_id) if redemption.coupon_id else None
        programme = programmes.current(session, now=now)
        reward = programme.reward(redemption.reward_id)
        return render(
            request,
            "admin/till_confirmation.html",
            {
                "staff": staff,
                "kind": "reward",
                "redemption": redemption,
                "reward": reward,
                "member": customer,
                "account": account,
                "coupon": coupon,
                "value": _minor(redemption.value_minor, redemption.currency),
                "currency": redemption.currency,
            },
        )


@router.get("/till/coupon-uses/{use_id}")
def till_coupon_done(
    request: Request, use_id: int, staff: StaffDep, db: DbDep, clock: ClockDep
) -> Response:
    require(staff, "support")
    with db.unit_of_work(write=False) as session:
        use = session.get(CouponUse, use_id)
        coupon = session.get(Coupon, use.coupon_id) if use is not None else None
        if use is None or coupon is None:
            raise NotFound(f"No coupon use {use_id}.", code="coupon_use_not_found")
        customer = session.get(Member, coupon.member_id) if coupon.member_id else None
        account = session.get(Account, coupon.member_id) if coupon.member_id else None
        return render(
            request,
            "admin/till_confirmation.html",
            {
                "staff": staff,
                "kind": "coupon",
                "use": use,
                "coupon": coupon,
                "member": customer,
                "account": account,
                "discount": _minor(use.discount_minor, coupon.currency),
                "currency": coupon.currency,
            },
        )
