from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from lealta.apikeys.deps import Reader, Writer
from lealta.apikeys.service import Principal
from lealta.kit.clock import Clock
from lealta.kit.db import Database
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    RequiredIdempotencyKey,
    replayable,
    respond,
)
from lealta.kit.idempotency import check_key, run_once
from lealta.kit.ids import ExternalId
from lealta.ledger import operations, service
from lealta.ledger.schemas import AdjustmentIn, EntryPage, SpendIn, WriteResult
from lealta.members import service as members
from lealta.programme import service as programmes

router = APIRouter(prefix="/v1/members", tags=["points"], responses=ERROR_RESPONSES)


@router.get("/{external_id}/ledger", response_model=EntryPage, summary="Ledger history")
def ledger_history(
    external_id: ExternalId,
    principal: Reader,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EntryPage:
    """Entries newest first (by event time); pass `next_cursor` back as `cursor`."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        rows, next_cursor = service.history(session, member.id, limit=limit, cursor=cursor)
        return EntryPage(items=[operations.entry_out(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "/{external_id}/adjustments",
    status_code=201,
    response_model=WriteResult,
    summary="Adjust points by hand",
    responses=replayable(WriteResult),
)
def adjust_points(
    external_id: ExternalId,
    data: AdjustmentIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Credit (positive) or debit (negative) with a mandatory reason; audited. Requires an
    `Idempotency-Key`. A debit larger than the balance is refused (`insufficient_points`)."""
    return _points_write(
        "adjust", external_id, data, operations.adjust, principal, db, clock, idempotency_key
    )


@router.post(
    "/{external_id}/spend",
    status_code=201,
    response_model=WriteResult,
    summary="Spend points (pay with points)",
    responses=replayable(WriteResult),
)
def spend_points(
    external_id: ExternalId,
    data: SpendIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Debit points at checkout. Concurrent spends can never overspend: each one locks the
    member's account, and a spend the balance cannot cover fails with `409 insufficient_points`.
    Requires an `Idempotency-Key`."""
    return _points_write(
        "spend", external_id, data, operations.spend, principal, db, clock, idempotency_key
    )


def _points_write(
    kind: str,
    external_id: ExternalId,
    data: AdjustmentIn | SpendIn,
    operation: Callable[..., WriteResult],
    principal: Principal,
    db: Database,
    clock: Clock,
    idempotency_key: str | None,
) -> JSONResponse:
    """The shared shape of a ledger write: required key, one transaction, replayable."""
    key = check_key(idempotency_key)
    with db.unit_of_work() as session:
        programme = programmes.current(session)
        now = clock.now()
        outcome = run_once(
            session,
            scope=_scope(kind, external_id),
            key=key,
            payload=data.model_dump(mode="json"),
            now=now,
            effect=lambda: (
                201,
                operation(
                    session, external_id, data, actor=principal.actor, now=now, programme=programme
                ).model_dump(mode="json"),
            ),
        )
    return respond(outcome)


def _scope(kind: str, external_id: str) -> str:
    """Keys are per member; the id is hashed because it may be longer than the scope column."""
    return f"{kind}:{hashlib.sha256(external_id.encode()).hexdigest()[:40]}"
