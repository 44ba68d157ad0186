"""Notifications: templates, sending (as the ``notify.send`` job), the log and the inbox.

:func:`send_template` is the one way to send: it records a ``queued`` message (unique by
``effect_key``, so a retried caller sends once) and enqueues its job in the caller's
transaction. The job (:func:`deliver`) decides at send time, in this order: consent for the
channel (``no_consent``), the frequency cap (``capped``), quiet hours in the member's timezone
(``delayed``, re-enqueued for their end); then it renders the template in the member's
language with fresh data and hands it to the channel outside any transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from lealta.config import Settings
from lealta.jobs import queue
from lealta.kit.db import Database, insert_ignore, lock_for_update
from lealta.kit.errors import InvalidInput, LealtaError, NotFound
from lealta.kit.logging import get_logger
from lealta.models import CHANNELS, Account, Consent, Member, Message, NotificationTemplate
from lealta.notify import channels, defaults
from lealta.notify.policy import Cap, QuietHours, needs_consent
from lealta.notify.render import Rendered, check, filters, render
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.tiers import service as tiers

log = get_logger("lealta.notify")
_messages = cast(Table, Message.__table__)

LANGUAGES = ("es", "en")
SEND_TASK = "notify.send"
UNSUBSCRIBE_SALT = "lealta.unsubscribe"
MAX_INBOX = 100


class TemplateNotFound(NotFound):
    code = "template_not_found"


class MessageNotFound(NotFound):
    code = "message_not_found"


class UnknownChannel(InvalidInput):
    code = "unknown_channel"


class InvalidUnsubscribeLink(LealtaError):
    status_code = 400
    code = "invalid_unsubscribe_link"


def check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise UnknownChannel(
            f"Unknown channel {channel!r}: use one of {', '.join(CHANNELS)}.",
            details={"channels": list(CHANNELS)},
        )
    return channel


# --- templates -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateSource:
    key: str
    channel: str
    language: str
    subject: str
    body_text: str
    body_html: str | None
    builtin: bool
    updated_at: datetime | None = None


def _from_row(row: NotificationTemplate) -> TemplateSource:
    return TemplateSource(
        row.key,
        row.channel,
        row.language,
        row.subject,
        row.body_text,
        row.body_html,
        builtin=False,
        updated_at=row.updated_at,
    )


def _builtin(key: str, channel: str, language: str) -> TemplateSource | None:
    found = defaults.variant(key, channel, language)
    if found is None:
        return None
    return TemplateSource(key, channel, language, found[0], found[1], found[2], builtin=True)


def find_template(session: Session, key: str, channel: str, language: str) -> TemplateSource:
    """The template for a member's language: the team's row, else the shipped one, else the
    other language's (a key written in one language only still reaches everyone)."""
    rows = {
        r.language: r
        for r in session.scalars(
            select(NotificationTemplate).where(
                NotificationTemplate.key == key, NotificationTemplate.channel == channel
            )
        )
    }
    order = [language] + [lang for lang in LANGUAGES if lang != language]
    for lang in order:
        if lang in rows:
            return _from_row(rows[lang])
        shipped = _builtin(key, channel, lang)
        if shipped is not None:
            return shipped
    raise TemplateNotFound(
        f"No template {key!r} for channel {channel!r}.", details={"key": key, "channel": channel}
    )


def list_templates(session: Session, key: str | None = None) -> list[TemplateSource]:
    """Every template variant: the team's rows and the shipped ones they do not replace."""
    stmt = select(NotificationTemplate).order_by(
        NotificationTemplate.key, NotificationTemplate.channel, NotificationTemplate.language
    )
    if key is not None:
        stmt = stmt.where(NotificationTemplate.key == key)
    found = {(r.key, r.channel, r.language): _from_row(r) for r in session.scalars(stmt)}
    for shipped_key in defaults.KEYS:
        if key is not None and shipped_key != key:
            continue
        for channel in CHANNELS:
            for lang in LANGUAGES:
                if (shipped_key, channel, lang) not in found:
                    shipped = _builtin(shipped_key, channel, lang)
                    if shipped is not None:
                        found[(shipped_key, channel, lang)] = shipped
    return [found[k] for k in sorted(found)]


def save_template(
    session: Session,
    *,
    key: str,
    channel: str,
    language: str,
    subject: str,
    body_text: str,
    body_html: str | None,
    now: datetime,
) -> TemplateSource:
    """Create or replace one variant; every part must compile (``422 invalid_template``)."""
    check_channel(channel)
    if language not in LANGUAGES:
        raise InvalidInput("language: use es or en.", code="unknown_language")
    check(subject, field="subject")
    check(body_text, field="body_text")
    if body_html:
        check(body_html, field="body_html")
    row = session.scalars(
        lock_for_update(
            select(NotificationTemplate).where(
                NotificationTemplate.key == key,
                NotificationTemplate.channel == channel,
                NotificationTemplate.language == language,
            )
        )
    ).one_or_none()
    if row is None:
        row = NotificationTemplate(
            key=key, channel=channel, language=language, created_at=now, body_text=""
        )
        session.add(row)
    row.subject = subject
    row.body_text = body_text
    row.body_html = body_html or None
    row.updated_at = now
    session.flush()
    return _from_row(row)


def delete_template(session: Session, *, key: str, channel: str, language: str) -> bool:
    """Remove the team's variant (a shipped key falls back to its default). True if removed."""
    row = session.scalars(
        select(NotificationTemplate).where(
            NotificationTemplate.key == key,
            NotificationTemplate.channel == channel,
            NotificationTemplate.language == language,
        )
    ).one_or_none()
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


# --- what a template sees ------------------------------------------------------------------


def _programme(session: Session, now: datetime) -> Programme:
    return programmes.current(session, now=now)


def member_context(
    session: Session, member: Member, settings: Settings, *, now: datetime, channel: str
) -> tuple[dict[str, Any], str]:
    """The placeholders every template gets for ``member`` (balance, tier, progress, amount
    needed, links) and the programme's currency."""
    programme = _programme(session, now)
    lang = member.language if member.language in LANGUAGES else "es"
    account = session.get(Account, member.id)
    context: dict[str, Any] = {
        "member": {
            "name": member.name or "",
            "customer_id": member.external_id,
            "email": member.email or "",
        },
        "balance": account.points_available if account else 0,
        "pending": account.points_pending if account else 0,
        "tier": None,
        "next_tier": None,
        "progress": None,
        "amount_needed": None,
        "currency": programme.currency,
        "cockpit_url": settings.public_url.rstrip("/") + "/me",
        "unsubscribe_url": unsubscribe_url(settings, member.id, channel),
    }
    status = tiers.status(session, programme, member, account, now=now) if account else None
    if status is not None:
        p = status.progress
        context["tier"] = {"id": p.current.id, "name": p.current.name.get(lang)}
        if p.next is not None:
            context["next_tier"] = {"id": p.next.id, "name": p.next.name.get(lang)}
        context["progress"] = str(p.percent) if p.percent is not None else None
        if p.needed is not None:
            fmt = filters(lang, member.timezone, programme.currency)
            context["amount_needed"] = (
                fmt["money"](p.needed) if status.tiers.basis == "spend" else fmt["number"](p.needed)
            )
    return context, programme.currency


def render_for(
    session: Session,
    member: Member,
    settings: Settings,
    *,
    key: str,
    channel: str,
    extra: dict[str, Any],
    now: datetime,
) -> tuple[Rendered, str]:
    """Render template ``key`` for ``member`` on ``channel``: (rendered, language used)."""
    check_channel(channel)
    lang = member.language if member.language in LANGUAGES else "es"
    source = find_template(session, key, channel, lang)
    context, currency = member_context(session, member, settings, now=now, channel=channel)
    context.update(extra)
    rendered = render(
        subject=source.subject,
        text=source.body_text,
        html=source.body_html if channel == "email" else None,
        context=context,
        language=source.language,
        timezone=member.timezone,
        currency=currency,
    )
    return rendered, source.language


def sample_context(now: datetime, language: str = "es") -> dict[str, Any]:
    """Example values of the event placeholders for previews (a preview has no event)."""
    name = "Regalo de ejemplo" if language == "es" else "Sample gift"
    return {
        "points": 100,
        "crossed": "100",
        "reward": {"id": "sample", "name": name},
        "coupon": {"code": "SAMPLE-CODE", "expires_at": (now + timedelta(days=30)).isoformat()},
        "expiring": {"points": 100, "on": (now + timedelta(days=14)).date().isoformat()},
    }


# --- sending -------------------------------------------------------------------------------


def send_template(
    session: Session,
    member_id: int,
    template_key: str,
    channel: str,
    context: dict[str, Any],
    effect_key: str,
    now: datetime,
) -> Message:
    """Queue template ``template_key`` to member ``member_id`` on ``channel``.

    Idempotent by ``effect_key`` (a workflow step's or job's key): the second call returns the
    first call's message and enqueues nothing. ``context`` (JSON values) is added to the
    member's placeholders when the message is rendered at send time. Runs in the caller's
    transaction; the ``notify.send`` job commits with it.
    """
    check_channel(channel)
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(f"No member with id {member_id}.", code="member_not_found")
    lang = member.language if member.language in LANGUAGES else "es"
    find_template(session, template_key, channel, lang)  # refuse an unknown key now
    new_id = insert_ignore(
        session,
        Message,
        {
            "member_id": member_id,
            "template_key": template_key,
            "channel": channel,
            "language": lang,
            "status": "queued",
            "effect_key": effect_key,
            "context": context,
            "created_at": now,
            "updated_at": now,
            "due_at": now,
        },
        conflict=["effect_key"],
    )
    if new_id is not None:
        queue.enqueue(
            session, SEND_TASK, {"message_id": new_id}, now=now, dedupe_key=_dedupe(new_id, now)
        )
    message = session.scalars(select(Message).where(Message.effect_key == effect_key)).one()
    return message


def _dedupe(message_id: int, due: datetime) -> str:
    return f"notify:{message_id}:{due.isoformat()}"


def consent_given(session: Session, member_id: int, purpose: str) -> bool:
    """The member's latest choice for ``purpose``; no choice recorded means no consent."""
    granted = session.scalar(
        select(Consent.granted)
        .where(Consent.member_id == member_id, Consent.purpose == purpose)
        .order_by(Consent.id.desc())
        .limit(1)
    )
    return bool(granted)


def sent_in_window(
    session: Session, member_id: int, channel: str, since: datetime, *, besides: int = 0
) -> int:
    """Messages counted by the cap: sent, or being sent, since ``since`` (other than message
    ``besides``, whose own earlier attempt must not count against it)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.member_id == member_id,
                Message.channel == channel,
                Message.sent_at >= since,
                Message.status.in_(("queued", "sent")),
                Message.id != besides,
            )
        )
        or 0
    )


def _recipient(member: Member, channel: str) -> str | None:
    if channel == "email":
        return member.email
    if channel in ("sms", "push"):
        # Push goes to the member's device token when the shop stores one as an attribute.
        token = member.attributes.get("push_token") if channel == "push" else None
        return str(token) if token else (member.phone if channel == "sms" else None)
    return member.external_id


@dataclass(frozen=True, slots=True)
class Decision:
    status: str
    outgoing: channels.Outgoing | None = None


def _finish(session: Session, message: Message, status: str, now: datetime, **values: Any) -> None:
    session.execute(
        update(_messages)
        .where(_messages.c.id == message.id)
        .values(status=status, updated_at=now, **values)
    )


def prepare(session: Session, settings: Settings, message_id: int, *, now: datetime) -> Decision:
    """The first half of a send, in one transaction: consent, cap and quiet hours, then render.

    Returns ``sent`` (in-app: delivered here), ``no_consent``/``capped``/``failed`` (recorded),
    ``delayed`` (re-enqueued), ``done`` (an earlier attempt finished it) or ``deliver`` with
    the message to hand to its channel."""
    message = session.get(Message, message_id)
    if message is None:
        return Decision("done")
    if message.status not in ("queued", "delayed"):
        return Decision("done")
    # One member's sends are decided one at a time, so two messages cannot both take the
    # last place under the cap.
    session.execute(
        lock_for_update(select(Account.member_id).where(Account.member_id == message.member_id))
    )
    member = session.get(Member, message.member_id)
    if member is None:
        return Decision("done")
    purpose = needs_consent(message.channel)
    if purpose is not None and not consent_given(session, member.id, purpose):
        _finish(session, message, "no_consent", now, error=f"no consent for {purpose}")
        return Decision("no_consent")
    channel = channels.get(message.channel)
    recipient = _recipient(member, message.channel)
    if not recipient:
        _finish(
            session, message, "failed", now, error=f"the member has no {message.channel} address"
        )
        return Decision("failed")
    cap = Cap(settings.notify_cap_messages, settings.notify_cap_hours)
    if message.channel != "inapp" and not cap.allows(
        sent_in_window(
            session, member.id, message.channel, cap.window_start(now), besides=message.id
        )
    ):
        _finish(session, message, "capped", now, error=f"over {cap.messages} per {cap.hours} h")
        return Decision("capped")
    quiet = QuietHours(settings.notify_quiet_start, settings.notify_quiet_end)
    until = quiet.ends_at(now, member.timezone) if message.channel != "inapp" else None
    if until is not None:
        _finish(session, message, "delayed", now, due_at=until)
        queue.enqueue(
            session,
            SEND_TASK,
            {"message_id": message.id},
            now=now,
            run_at=until,
            dedupe_key=_dedupe(message.id, until),
        )
        return Decision("delayed")
    try:
        rendered, lang = render_for(
            session,
            member,
            settings,
            key=message.template_key,
            channel=message.channel,
            extra=message.context,
            now=now,
        )
    except LealtaError as exc:
        _finish(session, message, "failed", now, error=f"{exc.code}: {exc.message}")
        return Decision("failed")
    if message.channel != "inapp" and not channel.configured(settings):
        _finish(
            session, message, "failed", now, error=f"channel {message.channel} is not configured"
        )
        return Decision("failed")
    values: dict[str, Any] = {
        "subject": rendered.subject[:300],
        "body_text": rendered.text,
        "recipient": recipient[:320],
        "language": lang,
        "sent_at": now,
        "error": None,
    }
    if message.channel == "inapp":
        _finish(session, message, "sent", now, **values)
        return Decision("sent")
    # ``queued`` with ``sent_at`` set: on its way; it counts towards the cap already.
    _finish(session, message, "queued", now, **values)
    return Decision(
        "deliver",
        channels.Outgoing(
            message_id=message.id,
            channel=message.channel,
            recipient=recipient,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            unsubscribe_url=unsubscribe_url(settings, member.id, message.channel)
            if message.channel == "email"
            else None,
        ),
    )


def deliver(db: Database, settings: Settings, message_id: int, *, now: datetime) -> str:
    """Send one message: decide and render (one transaction), call the channel (none), record
    the outcome (one more). Returns the final status. A temporary failure re-raises
    :class:`~lealta.notify.channels.DeliveryFailed` for the job to retry; the message stays
    ``queued`` and the retry renders and sends it again with the same message id."""
    with db.unit_of_work() as session:
        decision = prepare(session, settings, message_id, now=now)
    if decision.status != "deliver" or decision.outgoing is None:
        return decision.status
    try:
        receipt = channels.get(decision.outgoing.channel).deliver(settings, decision.outgoing)
    except channels.DeliveryFailed as exc:
        with db.unit_of_work() as session:
            message = session.get(Message, message_id)
            assert message is not None
            if exc.permanent:
                _finish(session, message, "failed", now, error=str(exc)[:8000])
            else:
                _finish(session, message, "queued", now, error=str(exc)[:8000])
        if exc.permanent:
            return "failed"
        raise
    with db.unit_of_work() as session:
        message = session.get(Message, message_id)
        assert message is not None
        _finish(session, message, "sent", now, provider_id=receipt.provider_id, error=None)
    log.info("message_sent", message_id=message_id, channel=decision.outgoing.channel)
    return "sent"


def give_up(session: Session, message_id: int, error: str, *, now: datetime) -> None:
    """Record that a message will not be delivered (its job ran out of attempts)."""
    session.execute(
        update(_messages)
        .where(_messages.c.id == message_id, _messages.c.status.in_(("queued", "delayed")))
        .values(status="failed", error=error[:8000], updated_at=now)
    )


# --- the log and the inbox -----------------------------------------------------------------


def member_messages(
    session: Session, member_id: int, *, limit: int = 50, channel: str | None = None
) -> list[Message]:
    """The member's messages, newest first."""
    stmt = select(Message).where(Message.member_id == member_id)
    if channel is not None:
        stmt = stmt.where(Message.channel == channel)
    return list(session.scalars(stmt.order_by(Message.id.desc()).limit(limit)))


def inbox(session: Session, member_id: int, *, limit: int = MAX_INBOX) -> list[Message]:
    """The in-app messages the member can read (sent ones), newest first."""
    stmt = (
        select(Message)
        .where(Message.member_id == member_id, Message.channel == "inapp", Message.status == "sent")
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def unread_count(session: Session, member_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.member_id == member_id,
                Message.channel == "inapp",
                Message.status == "sent",
                Message.read_at.is_(None),
            )
        )
        or 0
    )


def mark_read(session: Session, member_id: int, message_id: int | None, *, now: datetime) -> int:
    """Mark one in-app message (or all, with ``None``) read; only the member's own. Returns
    how many changed; an unknown or someone else's message is ``404 message_not_found``."""
    stmt = update(_messages).where(
        _messages.c.member_id == member_id,
        _messages.c.channel == "inapp",
        _messages.c.status == "sent",
        _messages.c.read_at.is_(None),
    )
    if message_id is not None:
        exists = session.scalar(
            select(Message.id).where(
                Message.id == message_id, Message.member_id == member_id, Message.channel == "inapp"
            )
        )
        if exists is None:
            raise MessageNotFound("No such message in your inbox.")
        stmt = stmt.where(_messages.c.id == message_id)
    result = session.execute(stmt.values(read_at=now, updated_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


# --- unsubscribe ---------------------------------------------------------------------------


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key, salt=UNSUBSCRIBE_SALT)


def unsubscribe_token(settings: Settings, member_id: int, channel: str) -> str:
    return str(_serializer(settings).dumps([member_id, channel]))


def unsubscribe_url(settings: Settings, member_id: int, channel: str) -> str:
    """The signed link that withdraws the channel's consent without signing in."""
    token = unsubscribe_token(settings, member_id, channel)
    return f"{settings.public_url.rstrip('/')}/me/unsubscribe/{token}"


def read_unsubscribe(settings: Settings, token: str) -> tuple[int, str]:
    """(member id, channel) of a signed link; ``400 invalid_unsubscribe_link`` otherwise."""
    try:
        value = _serializer(settings).loads(token)
    except BadSignature:
        raise InvalidUnsubscribeLink("This unsubscribe link is not valid.") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int)
        or value[1] not in CHANNELS
        or needs_consent(value[1]) is None
    ):
        raise InvalidUnsubscribeLink("This unsubscribe link is not valid.")
    return value[0], value[1]


def unsubscribe(
    session: Session, settings: Settings, token: str, *, now: datetime
) -> tuple[Member, str]:
    """Record the withdrawal of the link's channel consent (again is harmless)."""
    member_id, channel = read_unsubscribe(settings, token)
    member = session.get(Member, member_id)
    if member is None:
        raise InvalidUnsubscribeLink("This unsubscribe link is not valid.")
    purpose = needs_consent(channel)
    assert purpose is not None
    if consent_given(session, member.id, purpose):
        session.add(
            Consent(
                member_id=member.id,
                purpose=purpose,
                granted=False,
                source="unsubscribe_link",
                recorded_at=now,
            )
        )
        session.flush()
    return member, channel
