"""``/v1/bulk``: points, tags, attributes and tier moves for many members, as jobs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute

from lealta.apikeys.deps import Reader, Writer
from lealta.apikeys.service import Principal
from lealta.bulk import inputs, service
from lealta.bulk.schemas import (
    BulkAttributesIn,
    BulkOperationOut,
    BulkPointsIn,
    BulkRowOut,
    BulkRowPage,
    BulkTagsIn,
    BulkTiersIn,
    PointsRow,
    TierRow,
)
from lealta.bulk.service import NewRow
from lealta.kit.clock import Clock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    RequiredIdempotencyKey,
    replayable,
)
from lealta.kit.idempotency import check_key, request_hash
from lealta.programme import service as programmes
from lealta.programme.schema import Programme

router = APIRouter(prefix="/v1/bulk", tags=["bulk"], responses=ERROR_RESPONSES)

_WRITE_DOC = (
    " Requires an `Idempotency-Key`: the same key and body again answers 200 with the"
    " operation as it is now (`Idempotent-Replayed: true`), never a second operation; the same"
    " key with another body is `409 idempotency_key_reused`. Answers 202 at once: a job applies"
    " the rows (follow `GET /v1/bulk/{id}`). Each row is applied or rejected on its own (unknown"
    " member, insufficient points, ...): a rejected row changes nothing."
)


def _row(line: int, external_id: str, build: Callable[[], dict[str, Any]]) -> NewRow:
    try:
        return NewRow(line, external_id, build())
    except LealtaError as exc:
        return NewRow(line, external_id, {}, exc)


def _points_payload(row: PointsRow) -> dict[str, Any]:
    payload: dict[str, Any] = {"points": inputs.check_points(row.points)}
    if row.reason:
        payload["reason"] = row.reason
    return payload


def _tier_payload(programme: Programme, row: TierRow) -> dict[str, Any]:
    payload: dict[str, Any] = {"tier": inputs.check_tier(programme, row.tier)}
    if row.reason:
        payload["reason"] = row.reason
    return payload


def _create(
    kind: str,
    body: Any,
    rows: Callable[[Programme], list[NewRow]],
    reason: str | None,
    principal: Principal,
    db: Database,
    clock: Clock,
    idempotency_key: str | None,
) -> JSONResponse:
    key = check_key(idempotency_key)
    digest = request_hash(body.model_dump(mode="json"))
    with db.unit_of_work() as session:
        now = clock.now()
        created = service.create(
            session,
            kind=kind,
            key=f"api:{key}",
            request_hash=digest,
            rows=rows(programmes.current(session, now=now)),
            actor=principal.actor,
            reason=reason,
            source="api",
            now=now,
        )
        out = BulkOperationOut.of(created.operation).model_dump(mode="json")
    if created.created:
        return JSONResponse(out, status_code=202)
    return JSONResponse(out, status_code=200, headers={"Idempotent-Replayed": "true"})


@router.post(
    "/points",
    status_code=202,
    response_model=BulkOperationOut,
    summary="Points to many members",
    responses=replayable(BulkOperationOut),
)
def bulk_points(
    data: BulkPointsIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Credit (positive) or debit (negative) points to each listed member, with a reason
    (the row's, else the request's); each row is one ledger entry naming the operation;
    audited. A debit larger than the member's balance is rejected (`insufficient_points`)."""
    return _create(
        "points",
        data,
        lambda _: [
            _row(
                i,
                r.external_id,
                partial(_points_payload, r),
            )
            for i, r in enumerate(data.rows, start=1)
        ],
        data.reason,
        principal,
        db,
        clock,
        idempotency_key,
    )


@router.post(
    "/tags",
    status_code=202,
    response_model=BulkOperationOut,
    summary="Add or remove tags on many members",
    responses=replayable(BulkOperationOut),
)
def bulk_tags(
    data: BulkTagsIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Add and remove tags per member (a member has at most 100)."""
    return _create(
        "tags",
        data,
        lambda _: [
            _row(i, r.external_id, partial(inputs.tags_payload, r.add, r.remove))
            for i, r in enumerate(data.rows, start=1)
        ],
        data.reason,
        principal,
        db,
        clock,
        idempotency_key,
    )


@router.post(
    "/attributes",
    status_code=202,
    response_model=BulkOperationOut,
    summary="Set attributes on many members",
    responses=replayable(BulkOperationOut),
)
def bulk_attributes(
    data: BulkAttributesIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Set (or, with null, remove) attributes per member, typed as the programme declares
    (`unknown_attribute`, `invalid_attribute` reject the row)."""
    return _create(
        "attributes",
        data,
        lambda _: [
            NewRow(i, r.external_id, {"attributes": dict(r.attributes)})
            for i, r in enumerate(data.rows, start=1)
        ],
        data.reason,
        principal,
        db,
        clock,
        idempotency_key,
    )


@router.post(
    "/tiers",
    status_code=202,
    response_model=BulkOperationOut,
    summary="Move many members to a tier",
    responses=replayable(BulkOperationOut),
)
def bulk_tiers(
    data: BulkTiersIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """Move each member to the named tier, up or down, with a reason: held as if reached now
    (reviewed at the end of the period plus grace), recorded in the tier history; no entry
    points are paid. The tier already held is `tier_unchanged`."""
    return _create(
        "tier",
        data,
        lambda programme: [
            _row(
                i,
                r.external_id,
                partial(_tier_payload, programme, r),
            )
            for i, r in enumerate(data.rows, start=1)
        ],
        data.reason,
        principal,
        db,
        clock,
        idempotency_key,
    )


@router.get("/{operation_id:int}", response_model=BulkOperationOut, summary="A bulk operation")
def get_operation(operation_id: int, principal: Reader, db: DbDep) -> BulkOperationOut:
    """Status (`queued`, `running`, `done`), progress and totals."""
    with db.unit_of_work(write=False) as session:
        return BulkOperationOut.of(service.get(session, operation_id))


@router.get("/{operation_id:int}/rows", response_model=BulkRowPage, summary="Rows of an operation")
def operation_rows(
    operation_id: int,
    principal: Reader,
    db: DbDep,
    status: Annotated[str | None, Query(pattern="^(pending|applied|rejected)$")] = None,
    after_line: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> BulkRowPage:
    """The per-row report in line order: status, error code and message, ledger entry."""
    with db.unit_of_work(write=False) as session:
        rows = service.rows_page(
            session, operation_id, status=status, after_line=after_line, limit=limit
        )
        items = [BulkRowOut.of(r) for r in rows]
    return BulkRowPage(items=items, next_after_line=items[-1].line if len(items) == limit else None)


@router.get(
    "/{operation_id:int}/report.csv",
    summary="Per-row report as CSV",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The report, streamed."}},
)
def operation_report(operation_id: int, principal: Reader, db: DbDep) -> StreamingResponse:
    """`line, external_id, status, code, message, entry_id, input`, one row per input row."""
    lines = service.report_lines(db, operation_id)
    first = next(lines)  # raises 404 before the response starts

    def body() -> Any:
        yield first
        yield from lines

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="bulk-{operation_id}.csv"'},
    )


for _route in router.routes:
    # Every write shares the idempotency and job semantics: said once, shown on each.
    if isinstance(_route, APIRoute) and "POST" in (_route.methods or set()):
        _route.description = (_route.description or "") + _WRITE_DOC
