"""``/v1/templates`` and ``/v1/members/{id}/messages``: templates, previews, sends, the log
and the in-app inbox."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from lealta.apikeys.deps import Reader, Writer
from lealta.audit import service as audit
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    IdempotencyKey,
    RequiredIdempotencyKey,
    SettingsDep,
    replayable,
    respond,
)
from lealta.kit.idempotency import check_key, run_maybe_once, run_once
from lealta.kit.ids import ExternalId
from lealta.members import service as members
from lealta.models import Message
from lealta.notify import service
from lealta.notify.schemas import (
    Channel,
    InboxOut,
    Language,
    MessageIn,
    MessageOut,
    MessagePage,
    PreviewIn,
    PreviewOut,
    ReadOut,
    TemplateIn,
    TemplateKey,
    TemplateList,
    TemplateOut,
)

router = APIRouter(prefix="/v1", tags=["notifications"], responses=ERROR_RESPONSES)
KeyPath = Annotated[TemplateKey, Path(description="The template's key, e.g. points_earned.")]
MAX_ID = 2**63 - 1


def template_out(t: service.TemplateSource) -> TemplateOut:
    return TemplateOut.model_validate(t, from_attributes=True)


def message_out(m: Message, customer_id: str) -> MessageOut:
    return MessageOut(
        id=m.id,
        customer_id=customer_id,
        template=m.template_key,
        channel=m.channel,
        language=m.language,
        status=m.status,
        subject=m.subject,
        body_text=m.body_text,
        provider_id=m.provider_id,
        error=m.error,
        created_at=m.created_at,
        due_at=m.due_at,
        sent_at=m.sent_at,
        read_at=m.read_at,
    )


@router.get("/templates", response_model=TemplateList, summary="List message templates")
def list_templates(
    principal: Reader,
    db: DbDep,
    key: Annotated[TemplateKey | None, Query(description="Only this key.")] = None,
) -> TemplateList:
    """Every variant (per key, channel and language): the team's and the shipped ones
    (`builtin`) not replaced."""
    with db.unit_of_work(write=False) as session:
        return TemplateList(items=[template_out(t) for t in service.list_templates(session, key)])


@router.get("/templates/{key}", response_model=TemplateList, summary="A template's variants")
def get_template(key: KeyPath, principal: Reader, db: DbDep) -> TemplateList:
    """`404 template_not_found` when the key has no variant."""
    with db.unit_of_work(write=False) as session:
        found = service.list_templates(session, key)
    if not found:
        raise service.TemplateNotFound(f"No template {key!r}.", details={"key": key})
    return TemplateList(items=[template_out(t) for t in found])


@router.put("/templates/{key}", response_model=TemplateOut, summary="Save a template variant")
def save_template(
    key: KeyPath,
    data: TemplateIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create or replace the variant for `channel` and `language`. Every part must compile
    (`422 invalid_template`, naming the part and line). Naturally idempotent; audited."""
    with db.unit_of_work() as session:
        now = clock.now()

        def effect() -> tuple[int, dict[str, Any]]:
            saved = service.save_template(session, key=key, now=now, **data.model_dump())
            audit.record(
                session,
                actor=principal.actor,
                action="template.save",
                target_type="template",
                target_id=f"{key}/{data.channel}/{data.language}",
                now=now,
            )
            return 200, template_out(saved).model_dump(mode="json")

        outcome = run_maybe_once(
            session,
            scope=f"template:{key}",
            key=idempotency_key,
            payload=data.model_dump(mode="json"),
            now=now,
            effect=effect,
        )
    return respond(outcome)


@router.delete(
    "/templates/{key}/{channel}/{language}",
    status_code=204,
    summary="Remove a template variant",
)
def delete_template(
    key: KeyPath,
    channel: Channel,
    language: Language,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
) -> None:
    """A shipped key goes back to its default. `404 template_not_found` when there was no
    saved variant. Audited."""
    with db.unit_of_work() as session:
        now = clock.now()
        if not service.delete_template(session, key=key, channel=channel, language=language):
            raise service.TemplateNotFound(
                f"No saved variant {key}/{channel}/{language}.",
                details={"key": key, "channel": channel, "language": language},
            )
        audit.record(
            session,
            actor=principal.actor,
            action="template.delete",
            target_type="template",
            target_id=f"{key}/{channel}/{language}",
            now=now,
        )


@router.post("/templates/{key}/preview", response_model=PreviewOut, summary="Preview for a member")
def preview_template(
    key: KeyPath,
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    member: Annotated[ExternalId, Query(description="The member's customer id.")],
    channel: Annotated[Channel, Query()] = "email",
    data: PreviewIn | None = None,
) -> PreviewOut:
    """Render the template as `member` would get it now (language, numbers, tier, balance),
    without sending anything. Event placeholders (`points`, `coupon`, `reward`, `crossed`,
    `expiring`) take example values unless `context` gives them."""
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        found = members.get(session, member)
        rendered, lang = service.render_for(
            session,
            found,
            settings,
            key=key,
            channel=channel,
            extra={
                **service.sample_context(now, found.language),
                **(data.context if data else {}),
            },
            now=now,
        )
    return PreviewOut(
        key=key,
        channel=channel,
        language=lang,
        customer_id=member,
        subject=rendered.subject,
        body_text=rendered.text,
        body_html=rendered.html,
    )


@router.post(
    "/members/{external_id}/messages",
    status_code=202,
    response_model=MessageOut,
    summary="Send a template to a member",
    responses=replayable(MessageOut),
)
def send_message(
    external_id: ExternalId,
    data: MessageIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Queue the template now (`202`, status `queued`); consent, the frequency cap and quiet
    hours are checked when it is sent, and the message's `status` says what happened.
    Requires an `Idempotency-Key`: a replay returns the first message."""
    key = check_key(idempotency_key)
    with db.unit_of_work() as session:
        now = clock.now()

        def effect() -> tuple[int, dict[str, Any]]:
            member = members.get(session, external_id)
            message = service.send_template(
                session,
                member.id,
                data.template,
                data.channel,
                data.context,
                f"api:{external_id}:{key}",
                now,
            )
            return 202, message_out(message, external_id).model_dump(mode="json")

        outcome = run_once(
            session,
            scope=f"message:{external_id}",
            key=key,
            payload=data.model_dump(mode="json"),
            now=now,
            effect=effect,
        )
    return respond(outcome)


@router.get(
    "/members/{external_id}/messages", response_model=MessagePage, summary="A member's messages"
)
def list_messages(
    external_id: ExternalId,
    principal: Reader,
    db: DbDep,
    channel: Annotated[Channel | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MessagePage:
    """Every message, newest first, with its status, provider id and error."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        rows = service.member_messages(session, member.id, limit=limit, channel=channel)
        return MessagePage(items=[message_out(m, external_id) for m in rows])


@router.get("/members/{external_id}/inbox", response_model=InboxOut, summary="In-app inbox")
def member_inbox(
    external_id: ExternalId,
    principal: Reader,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_INBOX)] = 50,
) -> InboxOut:
    """The cockpit inbox: delivered in-app messages, newest first, and the unread count."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        rows = service.inbox(session, member.id, limit=limit)
        return InboxOut(
            unread=service.unread_count(session, member.id),
            items=[message_out(m, external_id) for m in rows],
        )


@router.post("/members/{external_id}/inbox/read", response_model=ReadOut, summary="Mark inbox read")
def mark_read(
    external_id: ExternalId,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    message: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="One message; omitted: all.")
    ] = None,
) -> ReadOut:
    """Mark one in-app message, or all, read. Idempotent by state (read stays read).
    `404 message_not_found` for a message not in this member's inbox."""
    with db.unit_of_work() as session:
        member = members.get(session, external_id)
        marked = service.mark_read(session, member.id, message, now=clock.now())
        return ReadOut(marked=marked, unread=service.unread_count(session, member.id))
