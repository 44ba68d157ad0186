"""The console's Templates page: every message template (shipped and the team's), an editor
per variant with a preview for a chosen member, and the messages in the member 360.

Viewing needs ``view``; saving and reverting need ``marketing`` (audited). A template that
does not compile comes back in the form with the error and a ``422``; nothing is saved.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from lealta.audit import service as audit
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError, NotFound
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.members import service as members
from lealta.models import CHANNELS, Message
from lealta.notify import service
from lealta.staff.service import Staff, require
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import done, show
from lealta.web.admin.routes_ops_common import translator
from lealta.web.security import check_csrf
from lealta.web.templating import templates

router = APIRouter(prefix="/admin/templates", include_in_schema=False)

KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Source strings (English) shown on the pages.
CHANNEL_LABELS = {"email": "E-mail", "sms": "SMS", "push": "Push", "inapp": "Inbox"}
STATUS_LABELS = {
    "queued": "queued",
    "delayed": "delayed (quiet hours)",
    "sent": "sent",
    "failed": "failed to send",
    "capped": "dropped (frequency cap)",
    "no_consent": "not sent (no consent)",
}
LANGUAGE_LABELS = {"es": "Spanish version", "en": "English version"}
MAX_MEMBER_MESSAGES = 20


def member_messages(request: Request, member_id: int) -> list[Message]:
    """The newest messages of a member, for the member 360."""
    db = getattr(request.app.state, "db", None)
    if not isinstance(db, Database):
        return []
    with db.unit_of_work(write=False) as session:
        rows = service.member_messages(session, member_id, limit=MAX_MEMBER_MESSAGES)
        session.expunge_all()
    return rows


templates.env.globals.update(
    member_messages=member_messages,
    channel_labels=CHANNEL_LABELS,
    status_labels=STATUS_LABELS,
)


def _variant(key: str, channel: str, language: str) -> tuple[str, str, str]:
    if not KEY.match(key) or channel not in CHANNELS or language not in service.LANGUAGES:
        raise NotFound("No such template.", code="template_not_found")
    return key, channel, language


def _url(key: str, channel: str, language: str) -> str:
    return f"/admin/templates/{quote(key, safe='')}/{channel}/{language}"


@router.get("")
def templates_page(request: Request, db: DbDep, staff: StaffDep) -> Response:
    require(staff, "view")
    with db.unit_of_work(write=False) as session:
        rows = service.list_templates(session)
    return show(
        request,
        staff,
        "admin/templates.html",
        {
            "rows": rows,
            "channels": CHANNELS,
            "languages": service.LANGUAGES,
            "channel_labels": CHANNEL_LABELS,
            "language_labels": LANGUAGE_LABELS,
            "new_error": None,
            "new_key": "",
        },
    )


@router.get("/new")
def new_template(
    request: Request,
    db: DbDep,
    staff: StaffDep,
    key: str = "",
    channel: str = "email",
    language: str = "es",
) -> Response:
    """The "new template" form lands here and goes on to the editor of that variant."""
    require(staff, "view")
    key = key.strip().lower()[:64]
    if not KEY.match(key) or channel not in CHANNELS or language not in service.LANGUAGES:
        _ = translator(request)
        with db.unit_of_work(write=False) as session:
            rows = service.list_templates(session)
        return show(
            request,
            staff,
            "admin/templates.html",
            {
                "rows": rows,
                "channels": CHANNELS,
                "languages": service.LANGUAGES,
                "channel_labels": CHANNEL_LABELS,
                "language_labels": LANGUAGE_LABELS,
                "new_error": _(
                    "A key has lowercase letters, digits, dots, dashes or underscores (up to 64)."
                ),
                "new_key": key,
            },
            status_code=422,
        )
    return RedirectResponse(_url(key, channel, language), status_code=303)


def _editor(
    request: Request,
    db: Database,
    settings: Any,
    clock: Any,
    staff: Staff,
    key: str,
    channel: str,
    language: str,
    *,
    form: dict[str, Any] | None = None,
    member: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    _ = translator(request)
    preview: dict[str, Any] | None = None
    preview_error: str | None = None
    with db.unit_of_work(write=False) as session:
        try:
            source: service.TemplateSource | None = service.find_template(
                session, key, channel, language
            )
        except service.TemplateNotFound:
            source = None
        if source is not None and source.language != language:
            source = None  # another language's text: start this one empty
        if member and error is None:
            try:
                found = members.get(session, member.strip()[:128])
                rendered, used = service.render_for(
                    session,
                    found,
                    settings,
                    key=key,
                    channel=channel,
                    extra=service.sample_context(clock.now(), found.language),
                    now=clock.now(),
                )
                preview = {"rendered": rendered, "language": used, "member": found}
            except LealtaError as exc:
                preview_error = (
                    _("No member with this customer id.")
                    if exc.code == "member_not_found"
                    else exc.message
                )
    if form is None:
        form = {
            "subject": source.subject if source else "",
            "body_text": source.body_text if source else "",
            "body_html": (source.body_html or "") if source else "",
        }
    return show(
        request,
        staff,
        "admin/template_edit.html",
        {
            "key": key,
            "channel": channel,
            "language": language,
            "channel_labels": CHANNEL_LABELS,
            "language_labels": LANGUAGE_LABELS,
            "builtin": source.builtin if source else False,
            "exists": source is not None,
            "form": form,
            "member": member,
            "preview": preview,
            "preview_error": preview_error,
            "error": error,
            "action": _url(key, channel, language),
            "page_url": _url(key, channel, language),
        },
        status_code=status_code,
    )


@router.get("/{key}/{channel}/{language}")
def edit_template(
    request: Request,
    key: str,
    channel: str,
    language: str,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    staff: StaffDep,
    member: str = "",
) -> Response:
    require(staff, "view")
    _variant(key, channel, language)
    return _editor(request, db, settings, clock, staff, key, channel, language, member=member)


@router.post("/{key}/{channel}/{language}")
def save_template(
    request: Request,
    key: str,
    channel: str,
    language: str,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    subject: Annotated[str, Form(max_length=300)] = "",
    body_text: Annotated[str, Form(max_length=50_000)] = "",
    body_html: Annotated[str, Form(max_length=100_000)] = "",
    member: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, "marketing")
    _variant(key, channel, language)
    _ = translator(request)
    form = {"subject": subject, "body_text": body_text, "body_html": body_html}
    if not body_text.strip():
        return _editor(
            request, db, settings, clock, staff, key, channel, language,
            form=form, member=member, error=_("The text body is required."), status_code=422,
        )  # fmt: skip
    try:
        with db.unit_of_work() as session:
            now = clock.now()
            service.save_template(
                session,
                key=key,
                channel=channel,
                language=language,
                subject=subject,
                body_text=body_text,
                body_html=body_html if channel == "email" else None,
                now=now,
            )
            audit.record(
                session,
                actor=staff.actor,
                action="template.save",
                target_type="template",
                target_id=f"{key}/{channel}/{language}",
                now=now,
            )
    except LealtaError as exc:
        return _editor(
            request, db, settings, clock, staff, key, channel, language,
            form=form, member=member,
            error=_("The template has an error: %(error)s", error=exc.message),
            status_code=exc.status_code,
        )  # fmt: skip
    target = _url(key, channel, language) + (f"?member={quote(member)}" if member else "")
    return done(request, target, "Template saved.")


@router.post("/{key}/{channel}/{language}/revert")
def revert_template(
    request: Request,
    key: str,
    channel: str,
    language: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, "marketing")
    _variant(key, channel, language)
    with db.unit_of_work() as session:
        now = clock.now()
        if service.delete_template(session, key=key, channel=channel, language=language):
            audit.record(
                session,
                actor=staff.actor,
                action="template.delete",
                target_type="template",
                target_id=f"{key}/{channel}/{language}",
                now=now,
            )
    return done(request, "/admin/templates", "Template reverted.")
