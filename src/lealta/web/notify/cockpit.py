"""The cockpit inbox (``/me/inbox``) and the unsubscribe link (``/me/unsubscribe/<token>``).

The inbox shows the signed-in member's in-app messages; opening it does not mark anything
read, a button does (one message or all). The unsubscribe link works without signing in:
its signed token names the member and the channel. ``GET`` shows a confirmation form (mail
scanners follow links; they must not unsubscribe anyone), ``POST`` records the withdrawal —
also the one-click ``List-Unsubscribe-Post`` of mail clients (RFC 8058).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.models import Member
from lealta.notify import service
from lealta.web import i18n
from lealta.web.cockpit.routes import SESSION_KEY, MemberDep, csrf, flash, gettext, page
from lealta.web.templating import render, templates

router = APIRouter(prefix="/me", include_in_schema=False)

CHANNEL_LABELS = {"email": "e-mail", "sms": "SMS", "push": "push notifications", "inapp": "inbox"}


def inbox_unread(request: Request, member: Member | None) -> int:
    """The unread count for the cockpit's navigation badge (0 when it cannot be read)."""
    if member is None:
        return 0
    db = getattr(request.app.state, "db", None)
    if not isinstance(db, Database):
        return 0
    try:
        with db.unit_of_work(write=False) as session:
            return service.unread_count(session, member.id)
    except Exception:  # the badge must never break a page
        return 0


templates.env.globals["inbox_unread"] = inbox_unread


@router.get("/inbox")
def inbox_page(request: Request, member: MemberDep, db: DbDep) -> Response:
    with db.unit_of_work(write=False) as session:
        rows = service.inbox(session, member.id)
        unread = service.unread_count(session, member.id)
    return page(
        request, "cockpit/inbox.html", member, {"here": "inbox", "messages": rows, "unread": unread}
    )


@router.post("/inbox/read")
def mark_read(
    request: Request,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form()] = "",
    message: Annotated[str, Form()] = "",
) -> Response:
    csrf(request, csrf_token, member)
    _ = gettext(request, member)
    chosen = int(message) if message.isdigit() and 0 < int(message) < 2**63 else None
    if message and chosen is None:
        flash(request, _("This message is not in your inbox."), "error")
        return RedirectResponse("/me/inbox", status_code=303)
    try:
        with db.unit_of_work() as session:
            service.mark_read(session, member.id, chosen, now=clock.now())
    except service.MessageNotFound:
        flash(request, _("This message is not in your inbox."), "error")
        return RedirectResponse("/me/inbox", status_code=303)
    flash(request, _("Marked as read.") if chosen else _("All messages marked as read."))
    return RedirectResponse("/me/inbox", status_code=303)


def _unsubscribe_page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    signed_in = request.session.get(SESSION_KEY)
    lang = i18n.negotiate(request, context.get("member_language"))
    ctx: dict[str, Any] = {"member": None, "signed_in": bool(signed_in), **context}
    return render(request, name, ctx, language=lang, status_code=status_code)


@router.get("/unsubscribe/{token}")
def unsubscribe_form(request: Request, token: str, db: DbDep, settings: SettingsDep) -> Response:
    try:
        member_id, channel = service.read_unsubscribe(settings, token[:500])
    except LealtaError:
        return _unsubscribe_page(request, "cockpit/unsubscribe.html", {"invalid": True}, 400)
    with db.unit_of_work(write=False) as session:
        member = session.get(Member, member_id)
    if member is None:
        return _unsubscribe_page(request, "cockpit/unsubscribe.html", {"invalid": True}, 400)
    return _unsubscribe_page(
        request,
        "cockpit/unsubscribe.html",
        {
            "token": token,
            "channel_label": CHANNEL_LABELS[channel],
            "member_language": member.language,
            "done": False,
        },
    )


@router.post("/unsubscribe/{token}")
def unsubscribe(
    request: Request, token: str, db: DbDep, clock: ClockDep, settings: SettingsDep
) -> Response:
    """No CSRF token: the signed link is the authority, and mail clients post here directly
    (``List-Unsubscribe=One-Click``)."""
    try:
        with db.unit_of_work() as session:
            member, channel = service.unsubscribe(session, settings, token[:500], now=clock.now())
            language = member.language
    except LealtaError:
        return _unsubscribe_page(request, "cockpit/unsubscribe.html", {"invalid": True}, 400)
    return _unsubscribe_page(
        request,
        "cockpit/unsubscribe.html",
        {
            "token": token,
            "channel_label": CHANNEL_LABELS[channel],
            "member_language": language,
            "done": True,
        },
    )
