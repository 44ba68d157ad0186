"""The privacy API: erase a member, export one member's data, read the erasure log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select

from lealta.apikeys.deps import Reader, Writer
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    IdempotencyKey,
    SettingsDep,
    replayable,
    respond,
)
from lealta.kit.idempotency import run_maybe_once
from lealta.kit.ids import ExternalId
from lealta.members import data_export
from lealta.members import service as members
from lealta.models import Member, MemberErasure
from lealta.privacy import service as privacy
from lealta.programme import service as programmes

router = APIRouter(tags=["privacy"], responses=ERROR_RESPONSES)


class ErasureOut(BaseModel):
    """An erasure as recorded: no personal data, only the pseudonym the member now has."""

    erasure_id: int
    pseudonym: str
    mode: Literal["erase", "pseudonymise"]
    channel: str
    status: Literal["scheduled", "completed"]
    requested_at: datetime
    completed_at: datetime | None
    summary: dict[str, int]


class ErasurePage(BaseModel):
    items: list[ErasureOut]
    next_cursor: str | None


@router.delete(
    "/v1/members/{external_id}",
    response_model=ErasureOut,
    summary="Erase a member (GDPR)",
    responses={
        **replayable(ErasureOut),
        202: {"model": ErasureOut, "description": "Scheduled: a job finishes the erasure."},
        410: {"description": "`member_erased`: this customer id was erased before."},
    },
)
def erase_member(
    external_id: ExternalId,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    mode: Annotated[
        Literal["erase", "pseudonymise"],
        Query(
            description="`erase` (default) or `pseudonymise` (keeps attributes, tags, consents)."
        ),
    ] = "erase",
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Remove the member's personal data everywhere (profile, consents, stored event payloads,
    messages, audit entries, jobs, sign-in links) while the ledger, orders and totals stay
    exact under a random pseudonym, which becomes the member's id. `200` when done, `202`
    when the member's history is large and a job finishes it (the profile is emptied at
    once only then). Asking again for the same customer id is `410 member_erased`; replay the
    same `Idempotency-Key` to get the first answer."""
    with db.unit_of_work() as session:
        now = clock.now()
        member: Member | None = None
        missing: privacy.MemberAlreadyErased | None = None
        try:
            member = privacy.member_to_erase(session, external_id, secret=settings.secret_key)
        except privacy.MemberAlreadyErased as exc:
            if idempotency_key is None:
                raise
            missing = exc

        def effect() -> tuple[int, dict[str, Any]]:
            if member is None:
                assert missing is not None
                raise missing
            record = privacy.request_erasure(
                session,
                member,
                secret=settings.secret_key,
                channel="api",
                actor=principal.actor,
                now=now,
                mode=mode,
                data_dir=settings.data_dir,
            )
            status = 200 if record.status == "completed" else 202
            return status, privacy.view(record).to_json()

        outcome = run_maybe_once(
            session,
            scope="member.erase",
            key=idempotency_key,
            payload={
                "subject": privacy.subject_hash(settings.secret_key, external_id),
                "mode": mode,
            },
            now=now,
            effect=effect,
        )
    return respond(outcome)


@router.get(
    "/v1/members/{external_id}/data-export",
    summary="Export one member's data (GDPR access)",
    response_class=JSONResponse,
)
def export_member(
    external_id: ExternalId, principal: Reader, db: DbDep, clock: ClockDep
) -> JSONResponse:
    """Everything Lealta holds about the member as one JSON document: profile, consents,
    balance, ledger, orders with items, coupons, redemptions and tier history (the same
    document the member downloads from the cockpit)."""
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        programme = programmes.current(session, now=now)
        body = data_export.export(session, member, currency=programme.currency, now=now)
    return JSONResponse(
        body,
        headers={
            "Content-Disposition": (
                f'attachment; filename="member-data-{now.date().isoformat()}.json"'
            ),
            "Cache-Control": "no-store",
        },
    )


@router.get("/v1/privacy/erasures", response_model=ErasurePage, summary="The erasure log")
def list_erasures(
    principal: Reader,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[
        int | None, Query(ge=1, description="`next_cursor` of the last page.")
    ] = None,
) -> ErasurePage:
    """Erasures, newest first: when, how, by which channel, and the pseudonym left behind."""
    with db.unit_of_work(write=False, autocommit=True) as session:
        stmt = select(MemberErasure).order_by(MemberErasure.id.desc()).limit(limit + 1)
        if before is not None:
            stmt = stmt.where(MemberErasure.id < before)
        rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return ErasurePage(
        items=[ErasureOut(**privacy.view(r).to_json()) for r in rows],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )
