"""The cockpit's privacy pages: what Lealta stores and why, and erasure on request.

A signed-in member asks for erasure; Lealta emails a signed link to the member's address
(so whoever holds a stolen session cannot erase the account without the mailbox). The link
opens a one-button confirmation page; confirming erases the member and ends every session.
The link names the member and an HMAC of their current customer id, is valid for
:data:`LINK_HOURS`, and stops working once the member is erased.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeSerializer

from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.kit.logging import get_logger
from lealta.models import Member
from lealta.notify import email as mailer
from lealta.privacy import service as privacy
from lealta.web import i18n
from lealta.web.cockpit.routes import MemberDep, csrf, flash, gettext, page

log = get_logger("lealta.cockpit.privacy")
router = APIRouter(prefix="/me", include_in_schema=False)

LINK_HOURS = 24
_SALT = "lealta.cockpit.erasure"


class ErasureLinkInvalid(LealtaError):
    status_code = 400
    code = "erasure_link_invalid"


def _signer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_SALT)


def erasure_token(secret: str, member: Member, now: datetime) -> str:
    """A signed token naming ``member``, their current customer id (as an HMAC) and when it
    was issued (by the application's clock, so tests can move time)."""
    return str(
        _signer(secret).dumps(
            {
                "m": member.id,
                "s": privacy.subject_hash(secret, member.external_id),
                "t": int(now.timestamp()),
            }
        )
    )


def _member_of(db: Database, secret: str, token: str, now: datetime) -> Member:
    """The member a valid, unexpired token names; :class:`ErasureLinkInvalid` otherwise."""
    try:
        data = _signer(secret).loads(token[:500])
    except BadSignature:
        raise ErasureLinkInvalid("This link is not valid.") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("m"), int)
        or not isinstance(data.get("t"), int)
    ):
        raise ErasureLinkInvalid("This link is not valid.")
    if now.timestamp() - data["t"] > LINK_HOURS * 3600:
        raise ErasureLinkInvalid("This link has expired.", code="erasure_link_expired")
    with db.unit_of_work(write=False) as session:
        member = session.get(Member, data["m"])
        if member is None or privacy.is_erased(session, member.id):
            raise ErasureLinkInvalid("This account was already erased.", code="erasure_link_used")
        if privacy.subject_hash(secret, member.external_id) != data.get("s"):
            raise ErasureLinkInvalid("This link is not valid.")
        session.expunge(member)
    return member


@router.get("/privacy/data")
def transparency(request: Request, member: MemberDep) -> Response:
    """What is stored about the member, why, for how long, and who can see it."""
    return page(request, "cockpit/privacy_data.html", member, {"here": "privacy"})


@router.get("/privacy/erase")
def erase_form(request: Request, member: MemberDep) -> Response:
    return page(
        request,
        "cockpit/privacy_erase.html",
        member,
        {"here": "privacy", "hours": LINK_HOURS},
    )


@router.post("/privacy/erase")
def request_erasure(
    request: Request,
    member: MemberDep,
    settings: SettingsDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Email the member a link that confirms the erasure."""
    csrf(request, csrf_token, member)
    _ = gettext(request, member)
    if not member.email:
        return page(
            request,
            "cockpit/privacy_erase.html",
            member,
            {
                "here": "privacy",
                "hours": LINK_HOURS,
                "error": _(
                    "We have no email address for you, so we cannot confirm the request."
                    " Ask the shop to erase your data."
                ),
            },
            status_code=409,
        )
    lang = member.language if member.language in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
    mail_ = i18n.gettext_for(lang)
    link = (
        f"{settings.public_url.rstrip('/')}/me/privacy/erase/"
        f"{erasure_token(settings.secret_key, member, clock.now())}"
    )
    text = "\n\n".join(
        [
            mail_("Hello,"),
            mail_(
                "You asked us to erase your personal data from the loyalty programme."
                " Open this link to confirm; it expires in %(hours)s hours:",
                hours=LINK_HOURS,
            ),
            link,
            mail_("If you did not ask for it, ignore this email: nothing will be erased."),
        ]
    )
    try:
        mailer.send(
            settings,
            to=member.email,
            subject=mail_("Confirm the erasure of your data"),
            text=text + "\n",
        )
    except mailer.EmailNotSent:
        log.warning("erasure_email_not_sent", member_id=member.id)
        return page(
            request,
            "cockpit/privacy_erase.html",
            member,
            {
                "here": "privacy",
                "hours": LINK_HOURS,
                "error": _("We could not send the email just now. Please try again later."),
            },
            status_code=503,
        )
    flash(
        request,
        _("We sent a confirmation link to your email address. Open it to erase your data."),
    )
    return RedirectResponse("/me/privacy", status_code=303)


def _invalid(request: Request, exc: ErasureLinkInvalid) -> Response:
    _ = gettext(request, None)
    message = {
        "erasure_link_expired": _(
            "This link has expired. Ask for a new one from your privacy page."
        ),
        "erasure_link_used": _("This account was already erased."),
    }.get(exc.code, _("This link is not valid."))
    return page(
        request,
        "cockpit/privacy_erase_invalid.html",
        None,
        {"message": message, "code": exc.code},
        status_code=exc.status_code,
    )


@router.get("/privacy/erase/{token}")
def confirm_form(
    request: Request, token: str, db: DbDep, clock: ClockDep, settings: SettingsDep
) -> Response:
    """A one-button page: a mail scanner following the link erases nothing."""
    try:
        member = _member_of(db, settings.secret_key, token, clock.now())
    except ErasureLinkInvalid as exc:
        return _invalid(request, exc)
    return page(request, "cockpit/privacy_erase_confirm.html", member, {"token": token})


@router.post("/privacy/erase/{token}")
def confirm(
    request: Request,
    token: str,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    csrf(request, csrf_token, None)
    try:
        member = _member_of(db, settings.secret_key, token, clock.now())
    except ErasureLinkInvalid as exc:
        return _invalid(request, exc)
    with db.unit_of_work() as session:
        target = session.get(Member, member.id)
        assert target is not None
        privacy.request_erasure(
            session,
            target,
            secret=settings.secret_key,
            channel="cockpit",
            actor="member:cockpit",
            now=clock.now(),
            data_dir=settings.data_dir,
        )
    request.session.clear()
    return page(request, "cockpit/privacy_erased.html", None)
