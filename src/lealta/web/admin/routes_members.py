"""Console pages for members: search and the member 360 with audited points adjustments."""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.dates import format_date
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from lealta.analytics import clv_data
from lealta.audit import service as audit
from lealta.coupons import service as coupons
from lealta.kit.clock import Clock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError, NotFound
from lealta.kit.http import ClockDep, DbDep
from lealta.kit.idempotency import MAX_KEY_LENGTH, run_once
from lealta.kit.money import from_minor
from lealta.ledger import operations
from lealta.ledger import service as ledger
from lealta.ledger.schemas import MAX_POINTS, AdjustmentIn
from lealta.members import listing
from lealta.members import service as members
from lealta.models import Account, Member, Segment
from lealta.plans import service as plans
from lealta.programme import service as programmes
from lealta.referrals import service as referrals
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
LIST_PAGE = 25
COUNT_CAP = 10_000
CONSOLE_PARAMS = ("lang", "page")
MIN_REASON = 3
MAX_REASON = 500


@router.get("/members")
def member_search(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    """The member list: the API's filters, sort and keyset pages (``listing``), and a link to
    export the filtered list as CSV. A coupon code typed in the search box finds its owner."""
    require(staff, "view")
    language = i18n.negotiate(request)
    _ = i18n.gettext_for(language)
    params = request.query_params.multi_items()
    secret = request.app.state.settings.secret_key
    error: tuple[str, str] | None = None
    notice = None
    result: listing.Page | None = None
    total = 0
    with db.unit_of_work(write=False, autocommit=True) as session:
        programme = programmes.current(session, now=clock.now())
        names = _tier_names(programme, language)
        segment_keys = list(session.scalars(select(Segment.key).order_by(Segment.key).limit(200)))
        try:
            query = _console_query(session, params, programme, secret)
        except LealtaError as exc:
            if exc.code != "invalid_cursor":
                error = (_param_of(exc), _filter_error(exc, programme, _))
                query = None
            else:  # an old or edited page link: start again from the first page
                notice = _("That page link no longer applies; showing the first page.")
                kept = [(k, v) for k, v in params if k != "cursor"]
                query = _console_query(session, kept, programme, secret)
        if query is not None:
            result = listing.page(session, query, secret=secret)
            total = listing.count(session, query, cap=COUNT_CAP)
    form = _form_values(params)
    filters = [(k, v) for k, v in params if k not in ("cursor", "page", "lang") and v.strip()]
    return show(
        request,
        staff,
        "admin/members.html",
        {
            "q": form["q"],
            "form": form,
            "result": result,
            "total": total,
            "count_cap": COUNT_CAP,
            "filter_error": error,
            "notice": notice,
            "tier_names": names,
            "levels": [level.id for level in programme.tiers.levels] if programme.tiers else [],
            "segment_keys": segment_keys,
            "declared": dict(programme.attributes),
            "sorts": listing.SORTS,
            "filters_query": urlencode(filters),
            "next_query": urlencode(
                [*filters, ("cursor", result.next_cursor)]
                if result is not None and result.next_cursor
                else []
            ),
            "has_filters": bool(filters),
            "paged": any(k == "cursor" and v for k, v in params),
        },
        status_code=422 if error else 200,
    )


@router.get("/members/export.csv")
def member_export(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    """The filtered member list as CSV, streamed a page at a time (bounded memory); audited,
    as it carries personal data."""
    require(staff, "view")
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    secret = request.app.state.settings.secret_key
    with db.unit_of_work(write=False, autocommit=True) as session:
        programme = programmes.current(session, now=clock.now())
        try:
            query = _console_query(session, params, programme, secret)
        except LealtaError:
            return RedirectResponse(f"/admin/members?{urlencode(params)}", status_code=303)
    with db.unit_of_work() as session:
        audit.record(
            session,
            actor=staff.actor,
            action="members.export",
            target_type="members",
            target_id="list",
            now=clock.now(),
            details={"filters": [[k, v[:200]] for k, v in params if v.strip()][:50]},
        )
    stamp = clock.now().strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        _csv_rows(db, query, secret),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="members-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


EXPORT_COLUMNS = (
    "external_id",
    "name",
    "email",
    "phone",
    "tier",
    "tags",
    "points_available",
    "points_pending",
    "lifetime_earned",
    "orders_count",
    "last_order_at",
    "enrolled_at",
)


def _csv_rows(db: Database, query: listing.ListQuery, secret: str) -> Iterator[bytes]:
    """CSV lines, 500 members a statement, each page read on its own (no long transaction)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    with db.unit_of_work(write=False, autocommit=True) as session:
        for n, row in enumerate(listing.stream(session, query, secret=secret, chunk=500), 1):
            writer.writerow(
                (
                    _cell(row.external_id),
                    _cell(row.name or ""),
                    _cell(row.email or ""),
                    _cell(row.phone or ""),
                    row.tier or "",
                    _cell(";".join(row.tags)),
                    row.points_available,
                    row.points_pending,
                    row.lifetime_earned,
                    row.orders_count,
                    _iso(row.last_order_at),
                    _iso(row.enrolled_at),
                )
            )
            if n % 500 == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode()


def _cell(value: str) -> str:
    """A spreadsheet must not run a cell as a formula (CSV injection)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _iso(at: datetime | None) -> str:
    return "" if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _console_query(
    session: Session, params: list[tuple[str, str]], programme: Any, secret: str
) -> listing.ListQuery:
    """The API's query, 25 a page, widened to the owner of a coupon code typed as ``q``."""
    cursor = next((v.strip() for k, v in reversed(params) if k == "cursor" and v.strip()), None)
    rest = [(k, v) for k, v in params if k != "cursor"]
    query = listing.parse(rest, programme=programme, secret=secret, ignore=CONSOLE_PARAMS)
    owners: tuple[int, ...] = ()
    if query.q:
        coupon = coupons.find(session, query.q)
        if coupon is not None and coupon.member_id is not None:
            owners = (coupon.member_id,)
    query = replace(query, limit=LIST_PAGE, member_ids=owners)
    if cursor:
        query = listing.with_cursor(query, cursor, secret=secret)
    return query


def _param_of(exc: LealtaError) -> str:
    details = exc.details if isinstance(exc.details, dict) else {}
    return str(details.get("param", ""))


def _filter_error(exc: LealtaError, programme: Any, _: Any) -> str:
    """The console's words for a refused filter (the API's message is for developers)."""
    param = _param_of(exc)
    if param.startswith("attr."):
        name = param[5:]
        kind = dict(programme.attributes).get(name)
        if kind is None:
            return str(_("The programme declares no attribute called %(name)s.", name=name))
        return str(
            _(
                "%(name)s: enter a value of type %(kind)s.",
                name=name,
                kind=_(_ATTR_KINDS.get(kind, kind)),
            )
        )
    if param.startswith(("points_", "lifetime_earned_")):
        return str(
            _(
                "Points must be whole numbers, 0 or more, and the minimum cannot be"
                " greater than the maximum."
            )
        )
    if param.startswith(("enrolled_", "last_order_")):
        return str(_("Enter valid dates; a range cannot start after it ends."))
    if param == "tier":
        return str(_("Choose tiers from the list."))
    if param == "tag":
        return str(_("Up to 20 tags, each of at most 64 characters."))
    if param == "segment":
        return str(_("Choose segments from the list."))
    if param == "q":
        return str(_("The search text is too long (200 characters at most)."))
    return str(_("A filter has a value that is not valid; check the form."))


_ATTR_KINDS = {
    "string": "text",
    "int": "whole number",
    "float": "number",
    "bool": "true / false",
    "date": "date (YYYY-MM-DD)",
}


def _form_values(params: list[tuple[str, str]]) -> dict[str, Any]:
    """What the form shows again: every single value as sent, and the chosen tiers."""
    form: dict[str, Any] = {name: "" for name in listing.PARAMETERS}
    form["tier"] = []
    form["segment"] = []
    form["attr"] = {}
    for key, value in params:
        if key in ("tier", "segment"):
            form[key] += [v.strip() for v in value.split(",") if v.strip()]
        elif key.startswith("attr."):
            form["attr"][key[5:]] = value[:200]
        elif key in form and not form[key]:
            form[key] = value[:200]
    return form


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
        context["clv"] = clv_data.member_clv_view(session, member.id, now=clock.now())
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
    subscription = plans.live(session, member.id)
    plan = programme.plan(subscription.plan_id) if subscription is not None else None
    return {
        "plan": (
            {
                "name": plan.name.get(language) if plan else subscription.plan_id,
                "status": subscription.status,
                "until": subscription.benefits_until,
                "cancelling": subscription.cancel_at_period_end,
            }
            if subscription is not None
            else None
        ),
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
        "member_referrals": referrals.list_referrals(session, member_id=member.id, limit=50),
    }


def _tier_names(programme: Any, language: str) -> dict[str, str]:
    if programme.tiers is None:
        return {}
    return {t.id: t.name.get(language) for t in programme.tiers.levels}


def _reward_names(programme: Any, language: str) -> dict[str, str]:
    return {r.id: r.name.get(language) for r in programme.rewards}
