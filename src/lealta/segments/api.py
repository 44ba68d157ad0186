"""``/v1/segments``: define segments (conditions or uploaded lists), preview them before
saving, recompute them, read and export their members; ``/v1/members/{id}/segments``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from lealta.apikeys.deps import Reader, Writer
from lealta.jobs import queue
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    IdempotencyKey,
    csv_download,
    replayable,
    respond,
)
from lealta.kit.idempotency import run_maybe_once
from lealta.kit.ids import ExternalId
from lealta.kit.pagination import decode_cursor, encode_cursor
from lealta.members import service as members
from lealta.models import Segment
from lealta.programme.types import Slug
from lealta.segments import service
from lealta.segments.schema import Segment as SegmentDef
from lealta.segments.schemas import (
    MemberSegmentList,
    MemberSegmentOut,
    PreviewOut,
    RecomputeOut,
    SegmentList,
    SegmentMemberOut,
    SegmentMemberPage,
    SegmentOut,
    UploadIn,
    UploadOut,
)

router = APIRouter(prefix="/v1/segments", tags=["segments"], responses=ERROR_RESPONSES)
member_router = APIRouter(prefix="/v1/members", tags=["segments"], responses=ERROR_RESPONSES)
RECOMPUTE_ONE = "segments.recompute_one"
"""Task name (registered in :mod:`lealta.segments.tasks`)."""


def segment_out(row: Segment, counts: list[int] | None = None) -> SegmentOut:
    return SegmentOut(
        key=row.key,
        source=row.source,
        kind=row.kind,
        members=row.member_count,
        computed_at=row.computed_at,
        definition=service.definition(row),
        counts=counts or [],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get("", response_model=SegmentList, summary="List segments")
def list_segments(principal: Reader, db: DbDep) -> SegmentList:
    """Every segment, those shipped in the programme (`source: programme`, read-only here)
    and those created over the API or console (`source: api`), with the daily counts of the
    last 30 days."""
    with db.unit_of_work(write=False) as session:
        rows = service.list_segments(session)
        counts = service.counts_over_time(session, [r.id for r in rows])
        return SegmentList(items=[segment_out(r, counts.get(r.id)) for r in rows])


@router.post("/preview", response_model=PreviewOut, summary="Preview a segment")
def preview(data: SegmentDef, principal: Reader, db: DbDep, clock: ClockDep) -> PreviewOut:
    """How many members the definition selects now, a sample, and how that differs from the
    saved segment of the same `id` (nothing is saved)."""
    with db.unit_of_work(write=False) as session:
        p = service.preview(session, data, now=clock.now())
        return PreviewOut(
            count=p.count, sample=p.sample, entering=p.entering, leaving=p.leaving,
            current=p.current,
        )  # fmt: skip


@router.post(
    "", status_code=201, response_model=SegmentOut, summary="Create a segment",
    responses=replayable(SegmentOut),
)  # fmt: skip
def create(
    data: SegmentDef,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A dynamic segment (`all`/`any` conditions or `cel`) or a `static` list. Its members
    are computed by a job enqueued with it. A key in use is `409 segment_exists`."""
    with db.unit_of_work() as session:
        now = clock.now()

        def effect() -> tuple[int, dict[str, object]]:
            row = service.create(session, data, actor=principal.actor, now=now)
            _enqueue(session, row.key, now)
            return 201, segment_out(row).model_dump(mode="json")

        outcome = run_maybe_once(
            session, scope="segment.create", key=idempotency_key,
            payload=data.model_dump(mode="json"), now=now, effect=effect,
        )  # fmt: skip
    return respond(outcome)


def _enqueue(session: Session, key: str, now: datetime) -> int:
    return queue.enqueue(session, RECOMPUTE_ONE, {"key": key}, now=now)


@router.get("/{key}", response_model=SegmentOut, summary="Get a segment")
def get_segment(key: Slug, principal: Reader, db: DbDep) -> SegmentOut:
    with db.unit_of_work(write=False) as session:
        row = service.get(session, key)
        return segment_out(row, service.counts_over_time(session, [row.id]).get(row.id))


@router.put("/{key}", response_model=SegmentOut, summary="Replace a segment's definition")
def update(
    key: Slug, data: SegmentDef, principal: Writer, db: DbDep, clock: ClockDep
) -> SegmentOut:
    """Programme segments are `409 segment_read_only`; the members follow at the next
    recompute (enqueued now)."""
    with db.unit_of_work() as session:
        row = service.update(session, key, data, actor=principal.actor, now=clock.now())
        _enqueue(session, key, clock.now())
        return segment_out(row)


@router.delete("/{key}", status_code=204, summary="Delete a segment")
def remove(key: Slug, principal: Writer, db: DbDep, clock: ClockDep) -> None:
    with db.unit_of_work() as session:
        service.remove(session, key, actor=principal.actor, now=clock.now())


@router.post("/{key}/recompute", status_code=202, response_model=RecomputeOut, summary="Recompute")
def recompute(key: Slug, principal: Writer, db: DbDep, clock: ClockDep) -> RecomputeOut:
    """Enqueue a recompute of the segment (a job: a segment may hold millions of members)."""
    with db.unit_of_work() as session:
        service.get(session, key)
        return RecomputeOut(job_id=_enqueue(session, key, clock.now()))


@router.post("/{key}/members", response_model=UploadOut, summary="Upload a static list")
def upload(key: Slug, data: UploadIn, principal: Writer, db: DbDep, clock: ClockDep) -> UploadOut:
    """Customer ids of a `static` segment: `replace` (the list becomes exactly these),
    `add` or `remove`. Unknown ids are returned in `unknown`."""
    with db.unit_of_work() as session:
        done, unknown = service.upload(
            session, key, data.customer_ids, mode=data.mode, actor=principal.actor, now=clock.now()
        )
    return UploadOut(members=done.members, entered=done.entered, left=done.left, unknown=unknown)


@router.get(
    "/{key}/members",
    response_model=SegmentMemberPage,
    summary="Members of a segment",
    responses={200: {"content": {"text/csv": {}}}},
)
def list_members(
    key: Slug,
    principal: Reader,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> SegmentMemberPage | StreamingResponse:
    """Newest entries first; pass `next_cursor` back as `cursor`. `format=csv` streams every
    member as CSV (customer_id, name, email, language, entered_at)."""
    if format == "csv":
        with db.unit_of_work(write=False) as session:
            service.get(session, key)
        return csv_download(service.export_csv(db, key), f"segment-{key}.csv")
    after = decode_cursor(cursor) if cursor else None
    with db.unit_of_work(write=False) as session:
        row = service.get(session, key)
        page = service.members_page(session, row, after=after, limit=limit + 1)
    more = len(page) > limit
    page = page[:limit]
    return SegmentMemberPage(
        items=[SegmentMemberOut(customer_id=m.external_id, entered_at=e) for m, e in page],
        next_cursor=encode_cursor(page[-1][1], page[-1][0].id) if more and page else None,
    )


@member_router.get(
    "/{external_id}/segments", response_model=MemberSegmentList, summary="Segments of a member"
)
def member_segments(external_id: ExternalId, principal: Reader, db: DbDep) -> MemberSegmentList:
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        rows = service.segments_of(session, member.id)
        return MemberSegmentList(items=[MemberSegmentOut(key=s.key, entered_at=e) for s, e in rows])
