"""Coupon operations. Every function takes the caller's session; none commits.

Discount maths is pure (:func:`check`) over the coupon row and a :class:`Cart` in integer
minor units. Usage limits hold under concurrency because a use is only recorded after a
conditional ``UPDATE coupons SET uses = uses + 1 WHERE uses < uses_allowed AND status =
'active'`` touched the row: concurrent tills queue on that row and re-check the condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lealta.coupons import codes
from lealta.coupons.schemas import CartIn, CouponOut, CouponUseOut, ValidationOut
from lealta.events import store
from lealta.kit.db import insert_returning, lock_for_update
from lealta.kit.errors import Conflict, NotFound
from lealta.kit.money import from_minor, normalise_currency, to_minor
from lealta.models import Coupon, CouponUse, Member
from lealta.models.coupon import normalise
from lealta.outbox.events import CouponIssued, CouponUsed
from lealta.outbox.service import emit, emit_many
from lealta.programme.schema import CouponSpec

MAX_CODE_ATTEMPTS = 8

REASONS: dict[str, str] = {
    "unknown": "No coupon has this code.",
    "void": "This coupon was cancelled.",
    "wrong_member": "This coupon belongs to another customer.",
    "not_yet_valid": "This coupon is not valid yet.",
    "expired": "This coupon has expired.",
    "used_up": "This coupon has already been used.",
    "currency_mismatch": "The cart is in a different currency from the coupon.",
    "minimum_order": "The cart is below the coupon's minimum order.",
    "no_eligible_items": "No item in the cart is covered by this coupon.",
}


class CouponNotFound(NotFound):
    code = "coupon_not_found"


class CouponNotApplicable(Conflict):
    """The coupon cannot be used on this cart now; ``code`` is ``coupon_<reason_code>``."""

    def __init__(self, result: Check) -> None:
        assert result.reason_code is not None
        super().__init__(
            result.reason or REASONS[result.reason_code],
            code=f"coupon_{result.reason_code}",
            details={"reason_code": result.reason_code},
        )


class CouponAlreadyUsedForOrder(Conflict):
    code = "coupon_already_used_for_order"


class CouponUseNotFound(NotFound):
    code = "coupon_use_not_found"


class CouponUseAlreadyRolledBack(Conflict):
    code = "already_rolled_back"


class CouponAlreadyUsed(Conflict):
    code = "coupon_already_used"


class CodeSpaceExhausted(Conflict):
    code = "coupon_code_collision"


# --- pure maths ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CartLine:
    sku: str
    category: str | None
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True, slots=True)
class Cart:
    total_minor: int
    currency: str
    lines: tuple[CartLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of checking a coupon against a cart."""

    valid: bool
    discount_minor: int = 0
    eligible_minor: int = 0
    free_shipping: bool = False
    reason_code: str | None = None
    reason: str | None = None


def cart_from(data: CartIn) -> Cart:
    """The cart in minor units; bad currency or sub-unit amounts are ``422``."""
    currency = normalise_currency(data.currency)
    return Cart(
        total_minor=to_minor(data.total, currency, field="cart.total"),
        currency=currency,
        lines=tuple(
            CartLine(
                sku=item.sku,
                category=item.category,
                quantity=item.quantity,
                unit_price_minor=to_minor(
                    item.unit_price, currency, field=f"cart.items.{i}.unit_price"
                ),
            )
            for i, item in enumerate(data.items)
        ),
    )


def effective_status(coupon: Coupon, now: datetime) -> str:
    """The status as of ``now``: an active coupon past ``valid_until`` reads as expired even
    before the expiry job stamps it."""
    if coupon.status == "active" and now >= coupon.valid_until:
        return "expired"
    return coupon.status


def check(coupon: Coupon, cart: Cart, *, member_id: int | None, now: datetime) -> Check:
    """Whether ``coupon`` applies to ``cart`` for this customer at ``now``, and its discount.

    Scope: with ``skus`` or ``categories`` the discount applies to the matching items (never
    more than the cart total); without, to the cart total. Percentages round half up to the
    currency's minor unit; a fixed amount is capped at the eligible total.
    """
    if coupon.status == "void":
        return _refuse("void")
    if coupon.member_id is not None and member_id != coupon.member_id:
        return _refuse("wrong_member")
    if now < coupon.valid_from:
        return _refuse("not_yet_valid")
    status = effective_status(coupon, now)
    if status == "expired":
        return _refuse("expired")
    if status == "redeemed" or coupon.uses >= coupon.uses_allowed:
        return _refuse("used_up")
    if cart.currency != coupon.currency:
        return _refuse(
            "currency_mismatch",
            f"The coupon is in {coupon.currency}; the cart is in {cart.currency}.",
        )
    if cart.total_minor < coupon.minimum_order_minor:
        minimum = from_minor(coupon.minimum_order_minor, coupon.currency)
        return _refuse(
            "minimum_order", f"The coupon needs an order of at least {minimum} {coupon.currency}."
        )
    if coupon.skus or coupon.categories:
        skus = set(coupon.skus or ())
        categories = set(coupon.categories or ())
        in_scope = sum(
            line.unit_price_minor * line.quantity
            for line in cart.lines
            if line.sku in skus or (line.category is not None and line.category in categories)
        )
        eligible = min(in_scope, cart.total_minor)
        if eligible <= 0:
            return _refuse("no_eligible_items")
    else:
        eligible = cart.total_minor
    discount = 0
    if coupon.percent_off is not None:
        exact = Decimal(eligible) * Decimal(coupon.percent_off) / 100
        discount = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    elif coupon.amount_off_minor is not None:
        discount = coupon.amount_off_minor
    return Check(
        valid=True,
        discount_minor=min(discount, eligible),
        eligible_minor=eligible,
        free_shipping=coupon.free_shipping,
    )


def _refuse(reason_code: str, reason: str | None = None) -> Check:
    return Check(valid=False, reason_code=reason_code, reason=reason or REASONS[reason_code])


# --- issuing ------------------------------------------------------------------------------


def issue(
    session: Session,
    spec: CouponSpec,
    *,
    reward_id: str,
    member_id: int | None,
    source: str,
    currency: str,
    valid_from: datetime,
    now: datetime,
    backfill: bool = False,
) -> Coupon:
    """Create a coupon with a fresh unique code from ``spec.code_pattern``; a member's coupon
    is announced as ``coupon.issued`` in the outbox.

    Each attempt is one ``INSERT … ON CONFLICT DO NOTHING``: a clash with an existing code
    (either unique index) inserts nothing and draws again. The coupon returned is in the
    session as if loaded (no statement reads it back).
    """
    wanted = Issue(spec, reward_id, member_id, source, currency, valid_from)
    for _ in range(MAX_CODE_ATTEMPTS):
        values = _values(wanted, codes.generate(spec.code_pattern), now)
        values["code_key"] = normalise(values["code"])
        coupon = insert_returning(session, Coupon, values, ignore_conflicts=True)
        if coupon is None:
            continue
        if member_id is not None:
            emit(session, _issued(coupon.id, coupon.code, wanted, coupon.valid_until),
                 member_id=member_id, now=now, backfill=backfill)  # fmt: skip
        return coupon
    raise _exhausted(spec)


@dataclass(frozen=True, slots=True)
class Issue:
    """One coupon to issue with :func:`issue_many`."""

    spec: CouponSpec
    reward_id: str
    member_id: int | None
    source: str
    currency: str
    valid_from: datetime


def _issued(coupon_id: int, code: str, wanted: Issue, valid_until: datetime) -> CouponIssued:
    return CouponIssued(
        coupon_id=coupon_id,
        code=code,
        reward_id=wanted.reward_id,
        source=wanted.source,
        valid_until=valid_until,
    )


def issue_many(
    session: Session, wanted: Sequence[Issue], *, now: datetime, backfill: bool = False
) -> list[str]:
    """Issue one coupon per ``wanted`` item with one insert per attempt; returns the codes in
    order. A drawn code that clashes (with a stored code or another of this call) is drawn
    again in the next attempt. Members' coupons are announced (``coupon.issued``) with one
    more statement."""
    table = cast(Table, Coupon.__table__)
    issued: list[str | None] = [None] * len(wanted)
    ids: dict[str, int] = {}
    pending = list(range(len(wanted)))
    for _ in range(MAX_CODE_ATTEMPTS):
        drawn: dict[int, tuple[str, str]] = {}
        keys: set[str] = set()
        for i in pending:
            code = codes.generate(wanted[i].spec.code_pattern)
            key = normalise(code)
            if key not in keys:  # a clash within this call: draw it next time
                keys.add(key)
                drawn[i] = code, key
        rows = [
            {**_values(wanted[i], code, now), "code_key": key} for i, (code, key) in drawn.items()
        ]
        inserted = dict(store.insert_new(session, table, rows, ("code", "id")))
        ids.update(inserted)
        for i, (code, _) in drawn.items():
            if code in inserted:
                issued[i] = code
        pending = [i for i in pending if issued[i] is None]
        if not pending:
            done = [code for code in issued if code is not None]
            emit_many(
                session,
                [
                    (_issued(ids[code], code, w, w.valid_from + timedelta(days=w.spec.valid_days)),
                     w.member_id)
                    for code, w in zip(done, wanted, strict=True)
                    if w.member_id is not None
                ],
                now=now,
                backfill=backfill,
            )  # fmt: skip
            return done
    raise _exhausted(wanted[pending[0]].spec)


def _values(wanted: Issue, code: str, now: datetime) -> dict[str, Any]:
    spec, currency = wanted.spec, wanted.currency
    return {
        "code": code,
        "member_id": wanted.member_id,
        "reward_id": wanted.reward_id,
        "source": wanted.source,
        "currency": currency,
        "percent_off": str(spec.percent_off) if spec.percent_off is not None else None,
        "amount_off_minor": (
            to_minor(spec.amount_off, currency, field="amount_off")
            if spec.amount_off is not None
            else None
        ),
        "free_shipping": spec.free_shipping,
        "minimum_order_minor": to_minor(spec.minimum_order, currency, field="minimum_order"),
        "skus": list(spec.skus) if spec.skus else None,
        "categories": list(spec.categories) if spec.categories else None,
        "valid_from": wanted.valid_from,
        "valid_until": wanted.valid_from + timedelta(days=spec.valid_days),
        "uses_allowed": spec.uses_per_coupon,
        "uses": 0,
        "status": "active",
        "created_at": now,
    }


def _exhausted(spec: CouponSpec) -> CodeSpaceExhausted:
    return CodeSpaceExhausted(
        f"Could not draw an unused code for pattern '{spec.code_pattern}'; use a longer pattern.",
        details={"pattern": spec.code_pattern},
    )


# --- reading ------------------------------------------------------------------------------


def find(session: Session, code: str) -> Coupon | None:
    """The coupon with this code (any case, spaces and dashes ignored), if any."""
    where, order = _by_code(code)
    return session.scalars(select(Coupon).where(where).order_by(order)).first()


def _by_code(code: str) -> tuple[ColumnElement[bool], ColumnElement[int]]:
    """Where and order clauses matching a typed code on its normalised key (any case, dashes
    and spaces ignored); a code stored before keys existed that clashed with another is still
    found by its exact form, first."""
    exact = code.strip().upper()
    return (
        or_(Coupon.code_key == normalise(code), Coupon.code == exact),
        case((Coupon.code == exact, 0), else_=1),
    )


def get(session: Session, code: str) -> Coupon:
    """The coupon with this code, or ``404 coupon_not_found``."""
    coupon = find(session, code)
    if coupon is None:
        raise CouponNotFound(f"No coupon with code '{code}'.", details={"code": code})
    return coupon


def wallet(session: Session, member_id: int, *, now: datetime) -> list[Coupon]:
    """The member's coupons: usable ones first (soonest to expire first), then the rest,
    newest first."""
    rows = list(
        session.scalars(
            select(Coupon).where(Coupon.member_id == member_id).order_by(Coupon.id.desc())
        )
    )
    usable = sorted(
        (c for c in rows if effective_status(c, now) == "active"), key=lambda c: c.valid_until
    )
    rest = [c for c in rows if effective_status(c, now) != "active"]
    return usable + rest


def uses_of(session: Session, coupon_id: int) -> list[CouponUse]:
    return list(
        session.scalars(
            select(CouponUse).where(CouponUse.coupon_id == coupon_id).order_by(CouponUse.id)
        )
    )


def validate(
    session: Session, code: str, cart: Cart, *, customer_id: str | None, now: datetime
) -> tuple[Coupon | None, Check]:
    """Check a code against a cart without using it; an unknown code is ``reason_code
    unknown`` rather than an error, so checkout can show the reason inline."""
    coupon = find(session, code)
    if coupon is None:
        return None, _refuse("unknown")
    return coupon, check(coupon, cart, member_id=_member_id(session, customer_id), now=now)


# --- writing ------------------------------------------------------------------------------


def redeem(
    session: Session,
    code: str,
    *,
    order_id: str,
    cart: Cart,
    customer_id: str | None,
    now: datetime,
) -> tuple[Coupon, CouponUse, Check]:
    """Use the coupon on an order: ``404`` for an unknown code, ``409 coupon_<reason>`` when
    it does not apply, ``409 coupon_already_used_for_order`` for a second use on one order."""
    coupon = get(session, code)
    result = check(coupon, cart, member_id=_member_id(session, customer_id), now=now)
    if not result.valid:
        raise CouponNotApplicable(result)
    if _live_use(session, coupon.id, order_id) is not None:
        raise CouponAlreadyUsedForOrder(
            f"Coupon '{coupon.code}' is already applied to order '{order_id}'.",
            details={"code": coupon.code, "order_id": order_id},
        )
    taken = session.execute(
        update(Coupon)
        .where(
            Coupon.id == coupon.id,
            Coupon.status == "active",
            Coupon.uses < Coupon.uses_allowed,
            Coupon.valid_until > now,
        )
        .values(
            uses=Coupon.uses + 1,
            status=case((Coupon.uses + 1 >= Coupon.uses_allowed, "redeemed"), else_="active"),
        )
        .execution_options(synchronize_session=False)
    )
    session.refresh(coupon)
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        # Another till got there first; report the state we now see.
        late = check(coupon, cart, member_id=coupon.member_id, now=now)
        raise CouponNotApplicable(late if not late.valid else _refuse("used_up"))
    use = CouponUse(
        coupon_id=coupon.id,
        order_ref=order_id,
        discount_minor=result.discount_minor,
        used_at=now,
        rolled_back_at=None,
    )
    try:
        with session.begin_nested():
            session.add(use)
            session.flush()
    except IntegrityError:
        raise CouponAlreadyUsedForOrder(
            f"Coupon '{coupon.code}' is already applied to order '{order_id}'.",
            details={"code": coupon.code, "order_id": order_id},
        ) from None
    if coupon.member_id is not None:
        used = CouponUsed(coupon.id, coupon.code, coupon.reward_id, order_id, now)
        emit(session, used, member_id=coupon.member_id, now=now, backfill=False)
    return coupon, use, result


def rollback_use(
    session: Session, code: str, *, order_id: str, now: datetime
) -> tuple[Coupon, CouponUse]:
    """Undo the coupon's use on ``order_id`` (order cancelled): the use is stamped rolled
    back and the coupon can be used again while it is valid."""
    where, order = _by_code(code)
    coupon = session.scalars(lock_for_update(select(Coupon).where(where).order_by(order))).first()
    if coupon is None:
        raise CouponNotFound(f"No coupon with code '{code}'.", details={"code": code})
    use = _live_use(session, coupon.id, order_id)
    if use is None:
        undone = session.scalars(
            select(CouponUse).where(
                CouponUse.coupon_id == coupon.id, CouponUse.order_ref == order_id
            )
        ).first()
        if undone is not None:
            raise CouponUseAlreadyRolledBack(
                f"The use of '{coupon.code}' on order '{order_id}' was already rolled back.",
                details={"code": coupon.code, "order_id": order_id},
            )
        raise CouponUseNotFound(
            f"Coupon '{coupon.code}' was not used on order '{order_id}'.",
            details={"code": coupon.code, "order_id": order_id},
        )
    use.rolled_back_at = now
    coupon.uses -= 1
    if coupon.status == "redeemed":
        coupon.status = "active"
    session.flush()
    return coupon, use


def void(session: Session, coupon_id: int) -> Coupon:
    """Cancel an unused coupon (its redemption is being rolled back).

    ``409 coupon_already_used`` if a till used it, checked by a conditional update so a
    checkout racing the rollback cannot both win.
    """
    done = session.execute(
        update(Coupon)
        .where(Coupon.id == coupon_id, Coupon.uses == 0, Coupon.status.in_(("active", "expired")))
        .values(status="void")
        .execution_options(synchronize_session=False)
    )
    coupon = session.get(Coupon, coupon_id, populate_existing=True)
    assert coupon is not None
    if done.rowcount != 1 and coupon.status != "void":  # type: ignore[attr-defined]
        raise CouponAlreadyUsed(
            f"Coupon '{coupon.code}' was already used at checkout; roll that use back first.",
            details={"code": coupon.code, "uses": coupon.uses},
        )
    return coupon


def expire_coupons(session: Session, now: datetime) -> int:
    """Job: stamp active coupons past ``valid_until`` as expired; returns how many.

    Reads already treat them as expired (:func:`effective_status`); this keeps the stored
    status, reports and wallet queries honest.
    """
    result = session.execute(
        update(Coupon)
        .where(Coupon.status == "active", Coupon.valid_until <= now)
        .values(status="expired")
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _live_use(session: Session, coupon_id: int, order_id: str) -> CouponUse | None:
    return session.scalars(
        select(CouponUse).where(
            CouponUse.coupon_id == coupon_id,
            CouponUse.order_ref == order_id,
            CouponUse.rolled_back_at.is_(None),
        )
    ).first()


def _member_id(session: Session, customer_id: str | None) -> int | None:
    if customer_id is None:
        return None
    return session.scalar(select(Member.id).where(Member.external_id == customer_id))


# --- output -------------------------------------------------------------------------------


def to_out(coupon: Coupon, *, now: datetime, customer_id: str | None) -> CouponOut:
    """The API view of a coupon, with its status as of ``now``."""
    return CouponOut(
        code=coupon.code,
        reward_id=coupon.reward_id,
        source=coupon.source,
        status=effective_status(coupon, now),
        customer_id=customer_id,
        currency=coupon.currency,
        percent_off=coupon.percent_off,
        amount_off=(
            str(from_minor(coupon.amount_off_minor, coupon.currency))
            if coupon.amount_off_minor is not None
            else None
        ),
        free_shipping=coupon.free_shipping,
        minimum_order=str(from_minor(coupon.minimum_order_minor, coupon.currency)),
        skus=coupon.skus,
        categories=coupon.categories,
        valid_from=coupon.valid_from,
        valid_until=coupon.valid_until,
        uses_allowed=coupon.uses_allowed,
        uses=coupon.uses,
        created_at=coupon.created_at,
    )


def use_out(use: CouponUse, currency: str) -> CouponUseOut:
    return CouponUseOut(
        order_id=use.order_ref,
        discount=str(from_minor(use.discount_minor, currency)),
        used_at=use.used_at,
        rolled_back_at=use.rolled_back_at,
    )


def validation_out(code: str, coupon: Coupon | None, result: Check, cart: Cart) -> ValidationOut:
    currency = coupon.currency if coupon is not None else cart.currency
    return ValidationOut(
        code=coupon.code if coupon is not None else code.strip().upper(),
        valid=result.valid,
        discount=str(from_minor(result.discount_minor, currency)),
        currency=currency,
        free_shipping=result.free_shipping,
        eligible_total=str(from_minor(result.eligible_minor, currency)),
        reason_code=result.reason_code,
        reason=result.reason,
    )


def customer_of(session: Session, coupon: Coupon) -> str | None:
    """The external id of the coupon's owner, if it has one."""
    if coupon.member_id is None:
        return None
    return session.scalar(select(Member.external_id).where(Member.id == coupon.member_id))


def discounts_minor(
    session: Session, *, start: datetime, end: datetime, exclude_source: str | None = None
) -> int:
    """Discounts given by coupon uses in ``[start, end)`` that were not rolled back (minor
    units), leaving out coupons of ``exclude_source`` (``redemption``: already paid in points)."""
    stmt = (
        select(func.coalesce(func.sum(CouponUse.discount_minor), 0))
        .join(Coupon, Coupon.id == CouponUse.coupon_id)
        .where(CouponUse.used_at >= start, CouponUse.used_at < end)
        .where(CouponUse.rolled_back_at.is_(None))
    )
    if exclude_source is not None:
        stmt = stmt.where(Coupon.source != exclude_source)
    return int(session.scalar(stmt) or 0)
