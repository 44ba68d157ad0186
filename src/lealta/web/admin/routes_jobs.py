"""The console's Jobs page: queue depth, failures with their error, retry and discard.

Admins only (job arguments and errors may name people). Retry and discard are plain forms
(CSRF-checked, audited) that redirect back to the same filtered list, so the page works
without JavaScript.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.dates import format_timedelta
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from lealta.audit import service as audit
from lealta.jobs import queue
from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep
from lealta.models import JOB_STATUSES
from lealta.staff.service import Staff, require
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import FLASH, show
from lealta.web.admin.routes_ops_common import translator
from lealta.web.security import check_csrf

router = APIRouter(prefix="/admin/jobs", include_in_schema=False)

PAGE_SIZE = 50

# Source strings (English) of the statuses, as shown on the page.
STATUS_LABELS: dict[str, str] = {
    "queued": "waiting",
    "running": "running",
    "retrying": "retrying",
    "succeeded": "succeeded",
    "dead": "failed for good",
    "discarded": "discarded",
}
ERRORS: dict[str, str] = {
    "job_not_found": "This job no longer exists.",
    "job_running": "The job is running; wait for it to finish or fail.",
    "job_finished": "The job already succeeded.",
}
RETRYABLE = frozenset({"queued", "retrying", "dead", "discarded"})
DISCARDABLE = frozenset({"queued", "retrying", "dead"})


def _filters(status: str, task: str, before: str) -> tuple[str | None, str | None, int | None]:
    chosen = status if status in JOB_STATUSES else None
    name = task.strip()[:100] or None
    cursor = int(before) if before.isdigit() and 0 < int(before) < 2**63 else None
    return chosen, name, cursor


def _back(status: str | None, task: str | None) -> str:
    query = urlencode({k: v for k, v in (("status", status), ("task", task)) if v})
    return f"/admin/jobs?{query}" if query else "/admin/jobs"


def _page(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: Staff,
    *,
    status: str | None,
    task: str | None,
    before: int | None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    language = i18n.negotiate(request)
    with db.unit_of_work(write=False) as session:
        now = clock.now()
        stats = queue.stats(session, now=now)
        rows, older = queue.list_jobs(
            session, status=status, task=task, limit=PAGE_SIZE, before_id=before
        )
    by_task: dict[str, dict[str, int]] = {}
    for depth in stats.by_task:
        by_task.setdefault(depth.task, {})[depth.status] = depth.count
    lag = (
        format_timedelta(timedelta(seconds=stats.oldest_due_seconds), locale=language)
        if stats.oldest_due_seconds
        else None
    )
    context: dict[str, Any] = {
        "stats": stats,
        "lag": lag,
        "by_task": sorted(by_task.items()),
        "jobs": rows,
        "older": older,
        "status": status or "",
        "task": task or "",
        "statuses": JOB_STATUSES,
        "status_labels": STATUS_LABELS,
        "retryable": RETRYABLE,
        "discardable": DISCARDABLE,
        "back": _back(status, task),
        "error": error,
    }
    return show(request, staff, "admin/jobs.html", context, status_code=status_code)


@router.get("")
def jobs_page(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    status: str = "",
    task: str = "",
    before: str = "",
) -> Response:
    require(staff, "admin")
    chosen, name, cursor = _filters(status[:16], task, before[:20])
    return _page(request, db, clock, staff, status=chosen, task=name, before=cursor)


def _act(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: Staff,
    job_id: int,
    *,
    action: str,
    status: str,
    task: str,
) -> Response:
    require(staff, "admin")
    chosen, name, _cursor = _filters(status[:16], task, "")
    _ = translator(request)
    try:
        with db.unit_of_work() as session:
            now = clock.now()
            operation = queue.retry if action == "retry" else queue.discard
            job = operation(session, job_id, now=now)
            audit.record(
                session,
                actor=staff.actor,
                action=f"job.{action}",
                target_type="job",
                target_id=str(job.id),
                now=now,
                details={"task": job.task},
            )
    except LealtaError as exc:
        message = _(ERRORS[exc.code]) if exc.code in ERRORS else exc.message
        return _page(
            request,
            db,
            clock,
            staff,
            status=chosen,
            task=name,
            before=None,
            error=message,
            status_code=exc.status_code,
        )
    text = "Job %(id)s will run now." if action == "retry" else "Job %(id)s was discarded."
    request.session[FLASH] = {"kind": "ok", "text": text, "values": {"id": job_id}}
    return RedirectResponse(_back(chosen, name), status_code=303)


@router.post("/{job_id}/retry")
def retry_job(
    request: Request,
    job_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    status: Annotated[str, Form(max_length=16)] = "",
    task: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    check_csrf(request, csrf_token)
    return _act(request, db, clock, staff, job_id, action="retry", status=status, task=task)


@router.post("/{job_id}/discard")
def discard_job(
    request: Request,
    job_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    status: Annotated[str, Form(max_length=16)] = "",
    task: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    check_csrf(request, csrf_token)
    return _act(request, db, clock, staff, job_id, action="discard", status=status, task=task)
