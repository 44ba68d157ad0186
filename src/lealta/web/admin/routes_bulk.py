"""The console's Bulk operations page: upload a CSV (points, tags, attributes, tier moves),
follow the job's progress, read the rejected rows and download the per-row report.

Admins and marketers. The upload is the same service call as ``lealta bulk`` and
``POST /v1/bulk/...`` (one operation per file: the same file again is the same operation),
audited the same way; the page refreshes itself while the job runs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select

from lealta.bulk import csvfile, inputs, service
from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep
from lealta.kit.idempotency import request_hash
from lealta.models import BulkOperation
from lealta.programme import service as programmes
from lealta.staff.service import require
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import FLASH, show
from lealta.web.admin.routes_ops_common import translator
from lealta.web.security import check_csrf

router = APIRouter(prefix="/admin/bulk", include_in_schema=False)

CAPABILITY = "marketing"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
REFRESH_SECONDS = 3
RECENT = 20
SHOWN_REJECTED = 100
# Source strings (English) shown for each kind and status.
KIND_LABELS: dict[str, str] = {
    "points": "Points",
    "tags": "Tags",
    "attributes": "Attributes",
    "tier": "Tier moves",
}
STATUS_LABELS: dict[str, str] = {
    "queued": "waiting",
    "running": "running",
    "done": "finished",
    "failed": "failed",
}
COLUMNS: dict[str, str] = {
    "points": "external_id, points[, reason]",
    "tags": "external_id, add, remove",
    "attributes": "external_id, <attribute>...",
    "tier": "external_id, tier[, reason]",
}
ERRORS: dict[str, str] = {
    "invalid_csv_header": "The file's header lacks a required column (see the columns above).",
    "invalid_csv": "The file is not valid CSV.",
    "invalid_encoding": "The file is not UTF-8 text.",
    "idempotency_key_reused": "This file was already sent with another reason.",
}


ROW_ERRORS: dict[str, str] = {
    "member_not_found": "No member with this external id.",
    "insufficient_points": "The member does not have that many points.",
    "zero_points": "0 points change nothing.",
    "points_too_large": "Too many points for one row.",
    "invalid_number": "The points are not a whole number.",
    "invalid_external_id": "Not a valid external id.",
    "unknown_tier": "Not a tier of the programme.",
    "tier_unchanged": "The member already holds this tier.",
    "unknown_attribute": "The programme does not declare this attribute.",
    "invalid_attribute": "The value does not have the attribute's type.",
    "invalid_row": "The row does not have as many fields as the header.",
    "no_change": "Nothing to change.",
    "too_many_tags": "A member has at most 100 tags.",
}


class _FormError(Exception):
    pass


def _page(
    request: Request,
    db: DbDep,
    staff: Any,
    *,
    error: str | None = None,
    chosen: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    with db.unit_of_work(write=False) as session:
        recent = list(
            session.scalars(select(BulkOperation).order_by(BulkOperation.id.desc()).limit(RECENT))
        )
    context = {
        "recent": recent,
        "kinds": KIND_LABELS,
        "status_labels": STATUS_LABELS,
        "columns": COLUMNS,
        "error": error,
        "chosen": chosen or {"kind": "points", "reason": ""},
        "max_mb": MAX_UPLOAD_BYTES >> 20,
    }
    return show(request, staff, "admin/bulk.html", context, status_code=status_code)


@router.get("")
def bulk_page(request: Request, db: DbDep, staff: StaffDep) -> Response:
    require(staff, CAPABILITY)
    return _page(request, db, staff)


@router.post("")
async def bulk_upload(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    kind: Annotated[str, Form(max_length=16)] = "points",
    reason: Annotated[str, Form(max_length=500)] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, CAPABILITY)
    _ = translator(request)
    chosen = {"kind": kind if kind in KIND_LABELS else "points", "reason": reason}
    try:
        if kind not in KIND_LABELS:
            raise _FormError(_("Choose what the file does."))
        if kind == "tier" and not reason.strip():
            raise _FormError(_("Tier moves need a reason."))
        if file is None or not file.filename:
            raise _FormError(_("Choose a CSV file."))
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise _FormError(_("The file is larger than %(n)s MB.", n=MAX_UPLOAD_BYTES >> 20))
        sha = csvfile.digest(data)
        with db.unit_of_work() as session:
            now = clock.now()
            rows = inputs.from_csv(data, kind, programmes.current(session, now=now))
            if not rows:
                raise _FormError(_("The file has a header but no rows."))
            created = service.create(
                session,
                kind=kind,
                key=f"file:{kind}:{sha}",
                request_hash=request_hash({"sha256": sha, "reason": reason.strip() or None}),
                rows=rows,
                actor=staff.actor,
                reason=reason.strip() or None,
                source=file.filename[:200],
                now=now,
            )
            operation_id = created.operation.id
    except _FormError as exc:
        return _page(request, db, staff, error=str(exc), chosen=chosen, status_code=422)
    except LealtaError as exc:
        code = exc.details.get("code") if isinstance(exc.details, dict) else None
        source = ERRORS.get(exc.code) or ERRORS.get(str(code))
        message = _(source) if source else exc.message
        return _page(request, db, staff, error=message, chosen=chosen, status_code=422)
    text = (
        "Bulk operation %(id)s is queued."
        if created.created
        else "This file was already sent: bulk operation %(id)s."
    )
    request.session[FLASH] = {"kind": "ok", "text": text, "values": {"id": operation_id}}
    return RedirectResponse(f"/admin/bulk/{operation_id}", status_code=303)


@router.get("/{operation_id:int}")
def bulk_operation(request: Request, operation_id: int, db: DbDep, staff: StaffDep) -> Response:
    require(staff, CAPABILITY)
    with db.unit_of_work(write=False) as session:
        op = service.get(session, operation_id)
        rejected = service.rows_page(session, operation_id, status="rejected", limit=SHOWN_REJECTED)
    context = {
        "op": op,
        "rejected": rejected,
        "kinds": KIND_LABELS,
        "status_labels": STATUS_LABELS,
        "percent": round(100 * op.processed_rows / op.total_rows) if op.total_rows else 100,
        "refresh": REFRESH_SECONDS if op.status in ("queued", "running") else None,
        "shown": SHOWN_REJECTED,
        "row_errors": ROW_ERRORS,
    }
    return show(request, staff, "admin/bulk_operation.html", context)


@router.get("/{operation_id:int}/report.csv")
def bulk_report(operation_id: int, db: DbDep, staff: StaffDep) -> Response:
    require(staff, CAPABILITY)
    lines = service.report_lines(db, operation_id)
    first = next(lines)

    def body() -> Any:
        yield first
        yield from lines

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="bulk-{operation_id}.csv"',
            "Cache-Control": "no-store",
        },
    )
