"""The member cockpit: sign-in by emailed link, then the member's own pages under ``/me``.

The member is whoever the session's ``member_id`` names; no page or form takes a member id,
so nothing a visitor types can reach another member's data. Forms post back with the
session's CSRF token and redirect (post/redirect/get); a redemption also carries a one-time
idempotency key so a double submit redeems once.
"""

from __future__ import annotations

import io
import json
import secrets
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Annotated, Any
from zoneinfo import available_timezones

import segno
from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from lealta.coupons import service as coupons
from lealta.kit.db import Database
from lealta.kit.errors import Forbidden, LealtaError, NotFound
from lealta.kit.http import ClockDep, DbDep, SettingsDep, get_db
from lealta.kit.idempotency import check_key, run_once
from lealta.kit.logging import get_logger
from lealta.kit.money import from_minor
from lealta.ledger import service as ledger
from lealta.members import avatars, data_export, login_links
from lealta.members import service as members
from lealta.members.schemas import ConsentIn, MemberFields
from lealta.models import Account, Coupon, Member, Redemption
from lealta.notify import email as mailer
from lealta.programme import service as programmes
from lealta.rewards import service as rewards
from lealta.tiers import service as tiers
from lealta.web import describe, i18n
from lealta.web.cockpit import present
from lealta.web.security import check_csrf
from lealta.web.templating import render

log = get_logger("lealta.cockpit")
router = APIRouter(prefix="/me", include_in_schema=False)

SESSION_KEY = "member_id"
GENERATION_KEY = "member_session_generation"
NEXT_KEY = "member_next"
FLASH_KEY = "member_flash"
HISTORY_PAGE = 20
_ZONES: list[str] = []


# --- plumbing -------------------------------------------------------------------------------


def get_member(request: Request, db: Annotated[Database, Depends(get_db)]) -> Member:
    """The signed-in member; without one, pages redirect to ``/me/login``.

    The cookie counts only while the session generation it carries is the member's current
    one: signing out raises it, so a copy of the cookie taken before stops working.
    """
    member_id = request.session.get(SESSION_KEY)
    generation = request.session.get(GENERATION_KEY)
    member = None
    if isinstance(member_id, int):
        with db.unit_of_work(write=False) as session:
            member = session.get(Member, member_id)
    if member is None or not isinstance(generation, int) or generation != member.session_generation:
        if member_id is not None:
            request.session.pop(SESSION_KEY, None)
            request.session.pop(GENERATION_KEY, None)
        raise login_links.NotSignedIn("Sign in to see your loyalty space.")
    return member


MemberDep = Annotated[Member, Depends(get_member)]


def language(request: Request, member: Member | None) -> str:
    return i18n.negotiate(request, member.language if member is not None else None)


def gettext(request: Request, member: Member | None) -> present.Gettext:
    return i18n.gettext_for(language(request, member))


def page(
    request: Request,
    name: str,
    member: Member | None,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    """Render a cockpit page in the member's language (the language switch overrides it)."""
    lang = language(request, member)
    ctx: dict[str, Any] = {
        "member": member,
        "tz": member.timezone if member is not None else "UTC",
        "fmt_day": lambda d: present.day(d, lang),
        "flash": request.session.pop(FLASH_KEY, None),
    }
    ctx.update(context or {})
    return render(request, name, ctx, language=lang, status_code=status_code)


def flash(request: Request, text: str, kind: str = "ok") -> None:
    request.session[FLASH_KEY] = {"kind": kind, "text": text}


def csrf(request: Request, token: str, member: Member | None) -> None:
    """The shared CSRF check, with its message in the visitor's language."""
    try:
        check_csrf(request, token)
    except Forbidden:
        _ = gettext(request, member)
        raise Forbidden(
            _("The form expired or did not come from this site; reload the page and try again."),
            code="csrf_failed",
        ) from None


def safe_next(target: str | None) -> str:
    """Only cockpit paths: never redirect off-site."""
    if target and target.startswith("/me") and not target.startswith(("//", "/me/login")):
        return target
    return "/me"


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def zones() -> list[str]:
    if not _ZONES:
        _ZONES.extend(sorted(z for z in available_timezones() if "/" in z and "Etc" not in z))
    return _ZONES


def qr_svg(data: str) -> Response:
    buffer = io.BytesIO()
    segno.make(data, error="m").save(buffer, kind="svg", scale=6, border=2, xmldecl=False)
    return Response(
        buffer.getvalue(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/cockpit.css")
def stylesheet() -> Response:
    css = (files("lealta.web.cockpit") / "cockpit.css").read_text(encoding="utf-8")
    return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


# --- sign-in --------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, db: DbDep, next: str | None = None) -> Response:
    if isinstance(request.session.get(SESSION_KEY), int):
        try:
            get_member(request, db)
            return RedirectResponse(safe_next(next), status_code=303)
        except login_links.NotSignedIn:
            pass  # an ended session: show the form
    if next:
        request.session[NEXT_KEY] = safe_next(next)
    return page(request, "cockpit/login.html", None)


@router.post("/login")
def request_link(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    email: Annotated[str, Form(max_length=400)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Always the same answer whether or not a member has this email (no enumeration).

    The same work, too: the request only records the token and queues the email in the
    outbox; the email is sent after the response, so its timing tells nothing.
    """
    csrf(request, csrf_token, None)
    _ = gettext(request, None)
    address = login_links.normalise_email(email)
    if "@" not in address or len(address) > 320 or " " in address:
        return page(
            request,
            "cockpit/login.html",
            None,
            {"error": _("Enter a valid email address."), "email": email[:320]},
            status_code=422,
        )
    try:
        with db.unit_of_work() as session:
            now = clock.now()
            asked = login_links.request_link(
                session,
                address,
                client_ip=client_ip(request),
                now=now,
                minutes=settings.magic_link_minutes,
            )
            recipient = asked.member
            if recipient is not None and asked.token is not None and recipient.email:
                _queue_link(session, settings, recipient, asked.token, now)
    except login_links.TooManyRequests:
        return page(
            request,
            "cockpit/login.html",
            None,
            {
                "error": _(
                    "Too many sign-in links were requested. Wait a few minutes and try again."
                ),
                "email": email[:320],
            },
            status_code=429,
        )
    # Every accepted request schedules the sender, known address or not (it also picks up
    # any email a crash left unsent).
    background.add_task(send_link_emails, db, settings, clock)
    return RedirectResponse("/me/login/sent", status_code=303)


def _queue_link(session: Session, settings: Any, member: Member, token: str, now: datetime) -> None:
    lang = member.language if member.language in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
    _ = i18n.gettext_for(lang)
    link = f"{settings.public_url.rstrip('/')}/me/login/{token}"
    greeting = _("Hello %(name)s,", name=member.name) if member.name else _("Hello,")
    text = "\n\n".join(
        [
            greeting,
            _(
                "Use this link to sign in to your loyalty space."
                " It works once and expires in %(minutes)s minutes:",
                minutes=settings.magic_link_minutes,
            ),
            link,
            _("If you did not ask for it, you can ignore this email."),
        ]
    )
    assert member.email is not None
    login_links.queue_link_email(
        session,
        member,
        to=member.email,
        subject=_("Your sign-in link"),
        body=text + "\n",
        now=now,
        expires_at=now + timedelta(minutes=settings.magic_link_minutes),
    )


def send_link_emails(db: Database, settings: Any, clock: Any) -> None:
    """Send the queued sign-in emails (run after the response, outside any transaction)."""
    with db.unit_of_work() as session:
        claimed = login_links.claim_link_emails(session, now=clock.now())
    for message in claimed:
        try:
            mailer.send(settings, to=message.to, subject=message.subject, text=message.text)
        except mailer.EmailNotSent:
            # The visitor saw the same answer either way; the failure is in the log.
            log.warning("magic_link_not_sent", member_id=message.member_id)


@router.get("/login/sent")
def link_sent(request: Request) -> Response:
    return page(request, "cockpit/login_sent.html", None)


@router.get("/login/{token}")
def confirm_form(request: Request, token: str, db: DbDep, clock: ClockDep) -> Response:
    """A one-button page: mail scanners that follow links do not use them up."""
    try:
        with db.unit_of_work(write=False) as session:
            login_links.check_link(session, token[:200], now=clock.now())
    except login_links.LinkInvalid as exc:
        return _link_invalid(request, exc)
    return page(request, "cockpit/confirm.html", None, {"token": token})


@router.post("/login/{token}")
def confirm(
    request: Request,
    token: str,
    db: DbDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    csrf(request, csrf_token, None)
    try:
        with db.unit_of_work() as session:
            member_id = login_links.consume_link(session, token[:200], now=clock.now())
            generation = session.scalar(
                select(Member.session_generation).where(Member.id == member_id)
            )
    except login_links.LinkInvalid as exc:
        return _link_invalid(request, exc)
    target = safe_next(request.session.get(NEXT_KEY))
    request.session.clear()
    request.session[SESSION_KEY] = member_id
    request.session[GENERATION_KEY] = generation
    return RedirectResponse(target, status_code=303)


def _link_invalid(request: Request, exc: login_links.LinkInvalid) -> Response:
    _ = gettext(request, None)
    message = {
        "link_used": _("This sign-in link was already used. Links work only once."),
        "link_expired": _("This sign-in link has expired."),
    }.get(exc.code, _("This sign-in link is not valid."))
    return page(
        request,
        "cockpit/link_invalid.html",
        None,
        {"message": message, "code": exc.code},
        status_code=exc.status_code,
    )


@router.post("/logout")
def logout(
    request: Request,
    member: MemberDep,
    db: DbDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Sign out: the member's sessions end on the server, so a copied cookie stops working."""
    csrf(request, csrf_token, member)
    with db.unit_of_work() as session:
        login_links.end_sessions(session, member.id)
    request.session.clear()
    return RedirectResponse("/me/login", status_code=303)


# --- dashboard and history ------------------------------------------------------------------


@router.get("")
def dashboard(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    now = clock.now()
    lang = language(request, member)
    _ = i18n.gettext_for(lang)
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        account = session.get(Account, member.id)
        assert account is not None
        balance = members.balance(
            session, member, programme.currency, now=now, warn_days=programme.expiry.warn_days
        )
        status = tiers.status(session, programme, member, account, now=now)
        states = rewards.catalogue(session, programme, member, account, now=now)
        wallet = [
            c
            for c in coupons.wallet(session, member.id, now=now)
            if coupons.effective_status(c, now) == "active"
        ]
    tier: dict[str, Any] | None = None
    if status is not None:
        p = status.progress
        spend = status.tiers.basis == "spend"

        def amount(value: Any) -> str:
            if spend:
                return present.money(value, programme.currency, lang)
            return _("%(points)s points", points=present.points(value, lang))

        tier = {
            "name": p.current.name.get(lang),
            "next": p.next.name.get(lang) if p.next else None,
            "percent": float(p.percent) if p.percent is not None else 100.0,
            "percent_label": present.points(p.percent, lang) if p.percent is not None else None,
            "value": amount(p.value),
            "needed": amount(p.needed) if p.needed is not None else None,
            "threshold": amount(p.next.threshold) if p.next else None,
            "estimated": present.day(p.estimated_date, lang) if p.estimated_date else None,
            "benefits": present.benefits(_, p.current.benefits, lang),
            "held_until": status.held_until,
        }
    ready = [s for s in states if s.redeemable]
    return page(
        request,
        "cockpit/dashboard.html",
        member,
        {
            "here": "home",
            "balance": balance,
            "tier": tier,
            "ready_rewards": [(s.reward.id, s.reward.name.get(lang), s.reward.cost) for s in ready],
            "coupon_count": len(wallet),
        },
    )


@router.get("/history")
def history(
    request: Request,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    lang = language(request, member)
    _ = i18n.gettext_for(lang)
    try:
        with db.unit_of_work(write=False) as session:
            programme = programmes.current(session, now=clock.now())
            entries, next_cursor = ledger.history(
                session, member.id, limit=HISTORY_PAGE, cursor=cursor or None
            )
    except LealtaError:
        return page(
            request,
            "cockpit/history.html",
            member,
            {
                "here": "history",
                "entries": [],
                "next_cursor": None,
                "error": _("That page of your history does not exist."),
                "first_page": False,
            },
            status_code=422,
        )
    rows = [
        {
            "kind": present.entry_kind(_, e.entry_type),
            "type": e.entry_type,
            "points": e.points,
            "reason": describe.entry_text(_, e, programme, lang),
            "at": e.occurred_at,
            "balance_after": e.balance_after,
        }
        for e in entries
    ]
    return page(
        request,
        "cockpit/history.html",
        member,
        {
            "here": "history",
            "entries": rows,
            "next_cursor": next_cursor,
            "first_page": not cursor,
        },
    )


# --- rewards --------------------------------------------------------------------------------


def _reward_view(
    state: rewards.RewardState, programme: Any, lang: str, _: present.Gettext
) -> dict[str, Any]:
    reward = state.reward
    return {
        "id": reward.id,
        "name": reward.name.get(lang),
        "description": reward.description.get(lang) if reward.description else None,
        "kind": present.reward_kind(_, reward.type),
        "terms": present.reward_terms(_, reward, programme.currency, lang),
        "cost": reward.cost,
        "redeemable": state.redeemable,
        "reasons": [present.lock_text(_, lock, programme, lang) for lock in state.locked],
        "stock_left": state.stock_left,
    }


@router.get("/rewards")
def rewards_page(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    now = clock.now()
    lang = language(request, member)
    _ = i18n.gettext_for(lang)
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        account = session.get(Account, member.id)
        assert account is not None
        states = rewards.catalogue(session, programme, member, account, now=now)
    views = [_reward_view(s, programme, lang, _) for s in states]
    return page(
        request,
        "cockpit/rewards.html",
        member,
        {
            "here": "rewards",
            "available": account.points_available,
            "eligible": [v for v in views if v["redeemable"]],
            "locked": [v for v in views if not v["redeemable"]],
        },
    )


def _confirm_page(
    request: Request,
    member: Member,
    db: Database,
    now: datetime,
    reward_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    lang = language(request, member)
    _ = i18n.gettext_for(lang)
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        account = session.get(Account, member.id)
        assert account is not None
        state = next(
            (
                s
                for s in rewards.catalogue(session, programme, member, account, now=now)
                if s.reward.id == reward_id
            ),
            None,
        )
    if state is None:
        raise NotFound(_("This reward is not in the catalogue."), code="reward_not_found")
    return page(
        request,
        "cockpit/redeem.html",
        member,
        {
            "here": "rewards",
            "reward": _reward_view(state, programme, lang, _),
            "available": account.points_available,
            "after": account.points_available - state.reward.cost,
            "idempotency_key": secrets.token_urlsafe(24),
            "error": error,
            "page_url": f"/me/rewards/{state.reward.id}",
        },
        status_code=status_code,
    )


@router.get("/rewards/{reward_id}")
def redeem_form(
    request: Request, reward_id: str, member: MemberDep, db: DbDep, clock: ClockDep
) -> Response:
    """The confirmation step before a redemption."""
    return _confirm_page(request, member, db, clock.now(), reward_id[:64])


@router.post("/rewards/{reward_id}/redeem")
def redeem(
    request: Request,
    reward_id: str,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    idempotency_key: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    """Redeem for the signed-in member only; a repeated submit of one form redeems once."""
    csrf(request, csrf_token, member)
    now = clock.now()
    lang = language(request, member)
    _ = i18n.gettext_for(lang)
    reward_id = reward_id[:64]
    try:
        key = check_key(idempotency_key)
        with db.unit_of_work() as session:
            programme = programmes.current(session, now=now)
            me = session.get(Member, member.id)
            assert me is not None

            def effect() -> tuple[int, dict[str, Any]]:
                done = rewards.redeem(
                    session, programme, me, reward_id, now=now, actor=f"member:{me.external_id}"
                )
                return 201, {"redemption_id": done.redemption.id, "reward_id": reward_id}

            run_once(
                session,
                scope=f"cockpit.redeem:{member.id}",
                key=key,
                payload={"reward_id": reward_id},
                now=now,
                effect=effect,
            )
    except LealtaError as exc:
        # The unit of work rolled back: nothing was debited or issued.
        with db.unit_of_work(write=False) as session:
            programme = programmes.current(session, now=now)
        if exc.code == "reward_not_found":
            raise NotFound(_("This reward is not in the catalogue."), code=exc.code) from None
        return _confirm_page(
            request,
            member,
            db,
            now,
            reward_id,
            error=present.error_text(_, exc, programme, lang),
            status_code=exc.status_code,
        )
    flash(request, _("Done! Your reward is in your wallet."))
    return RedirectResponse("/me/wallet", status_code=303)


# --- wallet and card ------------------------------------------------------------------------


@router.get("/wallet")
def wallet(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    now = clock.now()
    lang = language(request, member)
    _ = i18n.gettext_for(lang)
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        rows = coupons.wallet(session, member.id, now=now)
        others = list(
            session.scalars(
                select(Redemption)
                .where(Redemption.member_id == member.id, Redemption.coupon_id.is_(None))
                .order_by(Redemption.id.desc())
                .limit(50)
            )
        )

    def reward_name(reward_id: str) -> str:
        reward = programme.reward(reward_id)
        return reward.name.get(lang) if reward is not None else reward_id

    items = []
    for c in rows:
        status = coupons.effective_status(c, now)
        items.append(
            {
                "code": c.code,
                "name": reward_name(c.reward_id),
                "status": status,
                "status_label": present.coupon_status(_, status),
                "terms": _coupon_terms(_, c, lang),
                "valid_until": c.valid_until,
            }
        )
    return page(
        request,
        "cockpit/wallet.html",
        member,
        {
            "here": "wallet",
            "coupons": items,
            "others": [
                {
                    "name": reward_name(r.reward_id),
                    "kind": present.reward_kind(_, r.reward_type),
                    "points": r.points,
                    "at": r.created_at,
                    "status": r.status,
                    "value": (
                        present.money(from_minor(r.value_minor, r.currency), r.currency, lang)
                        if r.value_minor is not None
                        else None
                    ),
                }
                for r in others
            ],
        },
    )


def _coupon_terms(_: present.Gettext, c: Coupon, lang: str) -> str:
    return present.terms(
        _,
        percent_off=c.percent_off,
        amount_off=from_minor(c.amount_off_minor, c.currency)
        if c.amount_off_minor is not None
        else None,
        free_shipping=c.free_shipping,
        minimum_order=from_minor(c.minimum_order_minor, c.currency),
        categories=c.categories,
        currency=c.currency,
        lang=lang,
    )


@router.get("/wallet/{code}/qr.svg")
def coupon_qr(request: Request, code: str, member: MemberDep, db: DbDep) -> Response:
    """The QR of one of the member's own coupons; any other code is simply not found."""
    with db.unit_of_work(write=False) as session:
        coupon = coupons.find(session, code[:64])
    if coupon is None or coupon.member_id != member.id:
        _ = gettext(request, member)
        raise NotFound(_("There is no such coupon in your wallet."), code="coupon_not_found")
    return qr_svg(coupon.code)


@router.get("/card")
def card(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    now = clock.now()
    lang = language(request, member)
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        account = session.get(Account, member.id)
        assert account is not None
    tier_id = rewards.effective_tier(programme, account)
    tier = programme.tier(tier_id)
    return page(
        request,
        "cockpit/card.html",
        member,
        {
            "here": "card",
            "tier_name": tier.name.get(lang) if tier is not None else None,
            "available": account.points_available,
        },
    )


@router.get("/card/qr.svg")
def card_qr(member: MemberDep) -> Response:
    return qr_svg(member.external_id)


# --- profile --------------------------------------------------------------------------------


def _profile_page(
    request: Request,
    member: Member,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "cockpit/profile.html",
        member,
        {
            "here": "profile",
            "zones": zones(),
            "languages": [("es", "Español"), ("en", "English")],
            "form": form
            or {
                "name": member.name or "",
                "language": member.language,
                "timezone": member.timezone,
            },
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/profile")
def profile(request: Request, member: MemberDep) -> Response:
    return _profile_page(request, member)


@router.post("/profile")
def save_profile(
    request: Request,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    language_code: Annotated[str, Form(alias="language", max_length=20)] = "",
    timezone: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    csrf(request, csrf_token, member)
    _ = gettext(request, member)
    form = {"name": name, "language": language_code, "timezone": timezone}
    problem = None
    clean_name = name.strip()
    if len(clean_name) > 200:
        problem = _("Your name can have at most 200 characters.")
    elif any(ord(ch) < 32 for ch in clean_name):
        problem = _("Your name has characters that cannot be stored.")
    elif language_code not in i18n.LANGUAGES:
        problem = _("Choose Spanish or English.")
    elif timezone not in available_timezones():
        problem = _("Choose a time zone from the list.")
    if problem is not None:
        return _profile_page(request, member, error=problem, form=form, status_code=422)
    with db.unit_of_work() as session:
        me = session.get(Member, member.id)
        assert me is not None
        members.update(
            session,
            me,
            MemberFields(name=clean_name or None, language=language_code, timezone=timezone),
            now=clock.now(),
        )
    flash(request, i18n.gettext_for(language_code)("Your profile was saved."))
    response = RedirectResponse("/me/profile", status_code=303)
    # The member chose a language: it now beats any earlier switch on this device.
    response.set_cookie(i18n.COOKIE, language_code, max_age=365 * 24 * 3600, samesite="lax")
    return response


@router.post("/profile/picture")
def upload_picture(
    request: Request,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    picture: Annotated[UploadFile | None, File()] = None,
) -> Response:
    csrf(request, csrf_token, member)
    _ = gettext(request, member)
    data = picture.file.read(settings.upload_max_bytes + 1) if picture is not None else b""
    try:
        name = avatars.save_avatar(
            data, data_dir=settings.data_dir, max_bytes=settings.upload_max_bytes
        )
    except avatars.BadPicture as exc:
        message = {
            "picture_missing": _("Choose a picture to upload."),
            "picture_too_large": _(
                "The picture is too large: the limit is %(size)s.",
                size=f"{settings.upload_max_bytes / (1024 * 1024):.1f} MB",
            ),
        }.get(exc.code, _("Only PNG, JPEG or WebP pictures are accepted."))
        return _profile_page(request, member, error=message, status_code=exc.status_code)
    try:
        with db.unit_of_work() as session:
            me = session.get(Member, member.id)
            assert me is not None
            previous = me.avatar_path
            me.avatar_path = name
            me.updated_at = clock.now()
    except BaseException:
        avatars.remove_avatar_file(name, data_dir=settings.data_dir)
        raise
    avatars.remove_avatar_file(previous, data_dir=settings.data_dir)
    flash(request, _("Your picture was updated."))
    return RedirectResponse("/me/profile", status_code=303)


@router.post("/profile/picture/remove")
def remove_picture(
    request: Request,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    csrf(request, csrf_token, member)
    with db.unit_of_work() as session:
        me = session.get(Member, member.id)
        assert me is not None
        previous = me.avatar_path
        me.avatar_path = None
        me.updated_at = clock.now()
    avatars.remove_avatar_file(previous, data_dir=settings.data_dir)
    flash(request, gettext(request, member)("Your picture was removed."))
    return RedirectResponse("/me/profile", status_code=303)


@router.get("/avatar")
def avatar(request: Request, member: MemberDep, settings: SettingsDep) -> Response:
    """The signed-in member's own picture (there is no way to name another member's)."""
    try:
        path, media_type = avatars.avatar_file(member, data_dir=settings.data_dir)
    except NotFound:
        raise NotFound(
            gettext(request, member)("You have no picture yet."), code="no_picture"
        ) from None
    return FileResponse(
        path,
        media_type=media_type,
        headers={"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"},
    )


# --- privacy --------------------------------------------------------------------------------


@router.get("/privacy")
def privacy(request: Request, member: MemberDep, db: DbDep) -> Response:
    _ = gettext(request, member)
    with db.unit_of_work(write=False) as session:
        current = {c.purpose: c for c in members.current_consents(session, member.id)}
    return page(
        request,
        "cockpit/privacy.html",
        member,
        {
            "here": "privacy",
            "consents": [
                {
                    "purpose": p,
                    "label": present.consent_label(_, p),
                    "granted": bool(current[p].granted) if p in current else False,
                    "recorded_at": current[p].recorded_at if p in current else None,
                }
                for p in present.CONSENT_PURPOSES
            ],
        },
    )


@router.post("/privacy/consents")
def save_consents(
    request: Request,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    marketing_email: Annotated[str | None, Form(max_length=10)] = None,
    marketing_sms: Annotated[str | None, Form(max_length=10)] = None,
    marketing_push: Annotated[str | None, Form(max_length=10)] = None,
    data_processing: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    """Append a consent record for each choice that changed (the log is never edited)."""
    csrf(request, csrf_token, member)
    wanted = {
        "marketing_email": marketing_email is not None,
        "marketing_sms": marketing_sms is not None,
        "marketing_push": marketing_push is not None,
        "data_processing": data_processing is not None,
    }
    now = clock.now()
    with db.unit_of_work() as session:
        me = session.get(Member, member.id)
        assert me is not None
        current = {c.purpose: c.granted for c in members.current_consents(session, me.id)}
        for purpose, granted in wanted.items():
            if current.get(purpose) != granted:
                members.record_consent(
                    session,
                    me,
                    ConsentIn(purpose=purpose, granted=granted, source="cockpit"),
                    now=now,
                )
    flash(request, gettext(request, member)("Your choices were saved."))
    return RedirectResponse("/me/privacy", status_code=303)


@router.get("/export")
def export(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    """Download my data: a JSON file with everything Lealta holds about the member."""
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        me = session.get(Member, member.id)
        assert me is not None
        data = data_export.export(session, me, currency=programme.currency, now=now)
    body = json.dumps(data, ensure_ascii=False, indent=2)
    return Response(
        body,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="my-data-{now.date().isoformat()}.json"',
            "Cache-Control": "no-store",
        },
    )
