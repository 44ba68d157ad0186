"""Console pages for members: search and the member 360 with audited points adjustments."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Annotated, Any

from babel.dates import format_date
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from lealta.coupons import service as coupons
from lealta.kit.clock import Clock
from lealta.kit.errors import LealtaError, NotFound
from lealta.kit.http import ClockDep, DbDep
from lealta.kit.idempotency import MAX_KEY_LENGTH, run_once
from lealta.kit.money import from_minor
from lealta.ledger import operations
from lealta.ledger import service as ledger
from lealta.ledger.schemas import MAX_POINTS, AdjustmentIn
from lealta.members import service as members
from lealta.models import Account, Member
from lealta.programme import service as programmes
from lealta.reporting import queries
from lealta.rewards import service as rewards
from lealta.staff.service import require
from lealta.tiers import service as tiers
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import done, member_url, show
from lealta.web.security import check_csrf

router = APIRouter(prefix="/admin", include_in_schema=False)

LEDGER_PAGE = 25
MIN_REASON = 3
MAX_REASON = 500


@router.get("/members")
def member_search(
    request: Request, db: DbDep, clock: ClockDep, staff: StaffDep, q: str = "", page: str = "1"
) -> Response:
    require(staff, "view")
    language = i18n.negotiate(request)
    with db.unit_of_work(write=False) as session:
        result = queries.search_members(session, q[:200], page=queries.clamp_page(page))
        names = _tier_names(programmes.current(session, now=clock.now()), language)
    return show(
        request,
        staff,
        "admin/members.html",
        {
            "q": q[:200],
            "result": result,
            "tier_names": names,
            "first_tier": next(iter(names.values()), None),
        },
    )


@router.get("/members/{external_id}")
def member_360(
    request: Request,
    external_id: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    cursor: str | None = None,
) -> Response:
    require(staff, "view")
    language = i18n.negotiate(request)
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        context = _member_context(session, member, clock, language, cursor=cursor)
    context["form"] = {"idempotency_key": _new_key(), "points": "", "reason": ""}
    return show(request, staff, "admin/member.html", context)


@router.post("/members/{external_id}/adjustments")
def adjust_points(
    request: Request,
    external_id: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    idempotency_key: Annotated[str, Form()] = "",
    points: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Credit or debit by hand through the ledger's own ``adjust``; the hidden key makes a
    double submit a single adjustment."""
    check_csrf(request, csrf_token)
    require(staff, "support")
    language = i18n.negotiate(request)
    _ = i18n.gettext_for(language)
    form = {"idempotency_key": idempotency_key.strip(), "points": points, "reason": reason}
    error, data = _parse_adjustment(points, reason, _)
    key = idempotency_key.strip()
    if error is None and (not key or len(key) > MAX_KEY_LENGTH):
        error = _("The form expired; it has been reloaded. Check the values and send it again.")
        form["idempotency_key"] = _new_key()
    replayed = False
    if error is None and data is not None:
        try:
            with db.unit_of_work() as session:
                now = clock.now()
                programme = programmes.current(session, now=now)
                outcome = run_once(
                    session,
                    scope=_scope(external_id),
                    key=key,
                    payload=data.model_dump(mode="json"),
                    now=now,
                    effect=lambda: (
                        201,
                        operations.adjust(
                            session,
                            external_id,
                            data,
                            actor=staff.actor,
                            now=now,
                            programme=programme,
                        ).model_dump(mode="json"),
                    ),
                )
                replayed = outcome.replayed
        except NotFound:
            raise
        except LealtaError as exc:
            error = _adjustment_error(exc, _)
            if exc.code == "idempotency_key_reused":
                form["idempotency_key"] = _new_key()
    if error is not None or data is None:
        with db.unit_of_work(write=False) as session:
            member = members.get(session, external_id)
            context = _member_context(session, member, clock, language, cursor=None)
        context.update(form=form, adjust_error=error)
        return show(request, staff, "admin/member.html", context, status_code=422)
    url = f"{member_url(external_id)}#ledger"
    if replayed:
        return done(request, url, "This adjustment was already recorded; it was not repeated.")
    return done(
        request,
        url,
        "Adjustment of %(points)s points recorded for %(member)s.",
        points=f"{data.points:+d}",
        member=external_id,
    )


# --- helpers -------------------------------------------------------------------------------


def _new_key() -> str:
    return f"console-{secrets.token_urlsafe(18)}"


def _scope(external_id: str) -> str:
    """Console keys live apart from API keys; the id is hashed to fit the scope column."""
    return f"console-adjust:{hashlib.sha256(external_id.encode()).hexdigest()[:40]}"


def _parse_adjustment(points: str, reason: str, _: Any) -> tuple[str | None, AdjustmentIn | None]:
    raw = points.strip().replace(" ", "").replace("\u00a0", "")
    try:
        amount = int(raw)
    except ValueError:
        return _("Points must be a whole number, such as 250 or -100."), None
    if amount == 0:
        return _("An adjustment of 0 points changes nothing."), None
    if abs(amount) > MAX_POINTS:
        return _("Adjustments are limited to %(max)s points.", max=f"{MAX_POINTS:,}"), None
    text = reason.strip()
    if len(text) < MIN_REASON:
        return _("Give a reason for the adjustment (at least 3 characters)."), None
    if len(text) > MAX_REASON:
        return _("The reason is too long (500 characters at most)."), None
    if "\x00" in text:
        return _("The reason contains characters that cannot be stored."), None
    return None, AdjustmentIn(points=amount, reason=text)


def _adjustment_error(exc: LealtaError, _: Any) -> str:
    if exc.code == "insufficient_points":
        return str(
            _(
                "The member does not have enough points for this debit;"
                " the balance cannot go below zero."
            )
        )
    if exc.code == "idempotency_key_reused":
        return str(
            _(
                "This form was already sent with other values. It has been reloaded:"
                " check the ledger before sending it again."
            )
        )
    if exc.code == "zero_points":
        return str(_("An adjustment of 0 points changes nothing."))
    return str(_(exc.message))


def _member_context(
    session: Session, member: Member, clock: Clock, language: str, *, cursor: str | None
) -> dict[str, Any]:
    now: datetime = clock.now()
    programme = programmes.current(session, now=now)
    account = session.get(Account, member.id)
    if account is None:  # pragma: no cover - every member is created with an account
        raise members.MemberNotFound("The member has no points account.")
    try:
        entries, next_cursor = ledger.history(
            session, member.id, limit=LEDGER_PAGE, cursor=cursor or None
        )
    except LealtaError:
        entries, next_cursor = ledger.history(session, member.id, limit=LEDGER_PAGE, cursor=None)
        cursor = None
    status = tiers.status(session, programme, member, account, now=now)
    redemptions = rewards.history(session, member.id, limit=50)
    wallet = coupons.wallet(session, member.id, now=now)
    return {
        "member": member,
        "currency": programme.currency,
        "consents": members.current_consents(session, member.id),
        "balance": members.balance(session, member, programme.currency, now=now),
        "tier": status,
        "tier_name": _tier_names(programme, language),
        "entries": entries,
        "next_cursor": next_cursor,
        "cursor": cursor,
        "orders": queries.orders_of(session, member.id),
        "coupons": [(c, coupons.effective_status(c, now)) for c in wallet],
        "redemptions": redemptions,
        "redemption_codes": queries.coupon_codes(
            session, [r.coupon_id for r in redemptions if r.coupon_id is not None]
        ),
        "reward_name": _reward_names(programme, language),
        "member_url": member_url(member.external_id),
        "page_url": member_url(member.external_id),
        "programme": programme,
        "from_minor": from_minor,
        "fmt_day": lambda d: format_date(d, "d MMM y", locale=language) if d else "",
    }


def _tier_names(programme: Any, language: str) -> dict[str, str]:
    if programme.tiers is None:
        return {}
    return {t.id: t.name.get(language) for t in programme.tiers.levels}


def _reward_names(programme: Any, language: str) -> dict[str, str]:
    return {r.id: r.name.get(language) for r in programme.rewards}
