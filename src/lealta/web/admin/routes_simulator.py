"""The console's programme simulator: upload an order history, pick one or two designs
(programme versions or uploaded YAML), run it as a job, read the projected dashboard.

Marketers and admins only. The form keeps nothing half-written: a bad file or design is
reported on the form (422) and no run is stored. The run page refreshes itself while the job
runs (a plain ``<meta refresh>``: no JavaScript needed) and then shows the report.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lealta.analytics import clv_jobs
from lealta.audit import service as audit
from lealta.imports.service import REQUIRED_COLUMNS
from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.simulator import report, runs, service
from lealta.simulator.figures import differences
from lealta.staff.service import Staff, require
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import done, show
from lealta.web.admin.routes_ops_common import translator
from lealta.web.security import check_csrf

router = APIRouter(prefix="/admin/simulator", include_in_schema=False)

CAPABILITY = "marketing"
REFRESH_SECONDS = 2


class FormError(Exception):
    """A problem with the form, already in the reader's language."""


def _versions(db: DbDep) -> list[Any]:
    with db.unit_of_work(write=False) as session:
        return [(v.version, v.activated_at) for v in programmes.versions(session)]


def _form(
    request: Request,
    db: DbDep,
    staff: Staff,
    *,
    error: str | None = None,
    problems: list[dict[str, str]] | None = None,
    chosen: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    with db.unit_of_work(write=False) as session:
        recent = runs.recent(session)
    context = {
        "versions": _versions(db),
        "recent": recent,
        "error": error,
        "problems": problems or [],
        "chosen": chosen or {"design_a": "", "design_b": ""},
    }
    return show(request, staff, "admin/simulator.html", context, status_code=status_code)


@router.get("")
def simulator_page(request: Request, db: DbDep, staff: StaffDep) -> Response:
    require(staff, CAPABILITY)
    return _form(request, db, staff)


async def _design(
    request: Request,
    db: DbDep,
    choice: str,
    upload: UploadFile | None,
    *,
    which: str,
    limit: int,
) -> runs.Design | None:
    _ = translator(request)
    if choice == "upload":
        if upload is None or not upload.filename:
            raise FormError(_("Design %(which)s: choose a YAML or JSON file.", which=which))
        raw = await upload.read(limit + 1)
        if len(raw) > limit:
            raise FormError(
                _("Design %(which)s: the file is larger than %(n)s bytes.", which=which, n=limit)
            )
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FormError(
                _("Design %(which)s: the file is not UTF-8 text.", which=which)
            ) from None
        programme = service.load_programme(text, source=upload.filename)
        return runs.Design(upload.filename[:200], programme)
    if choice.startswith("version:") and choice[8:].isdigit():
        number = int(choice[8:])
        with db.unit_of_work(write=False) as session:
            row = programmes.version(session, number)
            programme = Programme.model_validate(row.document)
        return runs.Design(f"{programme.name} (v{number})", programme)
    if choice == "" and which == "B":
        return None
    raise FormError(
        _("Design %(which)s: choose a programme version or upload a file.", which=which)
    )


async def _orders(request: Request, upload: UploadFile | None) -> tuple[str, bytes]:
    _ = translator(request)
    if upload is None or not upload.filename:
        raise FormError(_("Choose the order history (a CSV file)."))
    data = await upload.read(runs.MAX_ORDERS_BYTES + 1)
    if len(data) > runs.MAX_ORDERS_BYTES:
        raise FormError(_("The order file is larger than %(n)s MB.", n=runs.MAX_ORDERS_BYTES >> 20))
    first = data.split(b"\n", 1)[0]
    try:
        header = next(csv.reader(io.StringIO(first.decode("utf-8-sig"))), [])
    except (UnicodeDecodeError, csv.Error):
        raise FormError(_("The order file is not a UTF-8 CSV file.")) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in [h.strip().lower() for h in header]]
    if missing:
        raise FormError(
            _(
                "The order file's header lacks the columns: %(columns)s.",
                columns=", ".join(missing),
            )
        )
    return upload.filename[:255], data


@router.post("")
async def simulator_start(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    design_a: Annotated[str, Form(max_length=40)] = "",
    design_b: Annotated[str, Form(max_length=40)] = "",
    orders: Annotated[UploadFile | None, File()] = None,
    file_a: Annotated[UploadFile | None, File()] = None,
    file_b: Annotated[UploadFile | None, File()] = None,
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, CAPABILITY)
    chosen = {"design_a": design_a, "design_b": design_b}
    limit = service.MAX_PROGRAMME_BYTES
    try:
        name, data = await _orders(request, orders)
        first = await _design(request, db, design_a, file_a, which="A", limit=limit)
        second = await _design(request, db, design_b, file_b, which="B", limit=limit)
        assert first is not None
        designs = [first] + ([second] if second is not None else [])
        with db.unit_of_work() as session:
            now = clock.now()
            run = runs.start(
                session, designs=designs, orders_name=name, orders=data, actor=staff.actor, now=now
            )
            audit.record(
                session,
                actor=staff.actor,
                action="simulator.run",
                target_type="simulator_run",
                target_id=str(run.id),
                now=now,
                details={"orders": name, "bytes": len(data), "designs": len(designs)},
            )
            run_id = run.id
    except FormError as exc:
        return _form(request, db, staff, error=str(exc), chosen=chosen, status_code=422)
    except LealtaError as exc:
        problems = exc.details if isinstance(exc.details, list) else []
        return _form(
            request, db, staff, error=exc.message, problems=problems, chosen=chosen, status_code=422
        )
    return RedirectResponse(f"/admin/simulator/runs/{run_id}", status_code=303)


def _rows(projections: list[Any], language: str) -> list[dict[str, Any]]:
    """The headline figures for the page: raw values (formatted in the reader's locale)."""
    two = len(projections) == 2
    names = {
        k: v
        for p in projections
        for k, v in (
            p.segment_names_es if language == "es" and p.segment_names_es else p.segment_names
        ).items()
    }
    out = []
    for d in differences(projections[0], projections[1] if two else projections[0]):
        worse = (d.change > 0) == (d.figure in report.COSTS)
        out.append(
            {
                "figure": d.figure,
                "tier": d.figure[5:] if d.figure.startswith("tier:") else None,
                "segment": (
                    names.get(d.figure[8:], d.figure[8:])
                    if d.figure.startswith("segment:")
                    else None
                ),
                "label": report.LABELS.get(d.figure, d.figure),
                "money": d.figure in report.MONEY,
                "values": [d.first, d.second] if two else [d.first],
                "change": d.change if two else None,
                "percent": d.percent if two else None,
                "tone": "" if not two or d.change == 0 else ("worse" if worse else "better"),
            }
        )
    return out


@router.get("/runs/{run_id}")
def simulator_run(request: Request, run_id: int, db: DbDep, staff: StaffDep) -> Response:
    require(staff, CAPABILITY)
    with db.unit_of_work(write=False) as session:
        run = runs.get(session, run_id)
        projections = runs.projections(run)
    total = max(run.orders_bytes, 1) * max(len(run.designs), 1)
    context = {
        "run": run,
        "projections": projections,
        "rows": _rows(projections, i18n.negotiate(request)) if projections else [],
        "charts": [report.chart_block(p, translator(request)) for p in projections],
        "percent": min(100, round(100 * run.bytes_read / total)),
        "refresh": REFRESH_SECONDS if run.status in ("queued", "running") else None,
    }
    return show(request, staff, "admin/simulator_run.html", context)


@router.get("/runs/{run_id}/report.html")
def simulator_report(run_id: int, db: DbDep, staff: StaffDep) -> Response:
    """The standalone report of ``lealta simulate --html`` (a download)."""
    require(staff, CAPABILITY)
    with db.unit_of_work(write=False) as session:
        projections = runs.projections(runs.get(session, run_id))
    if not projections:
        return RedirectResponse(f"/admin/simulator/runs/{run_id}", status_code=303)
    return HTMLResponse(
        report.html(projections),
        headers={
            "Content-Disposition": f'attachment; filename="simulation-{run_id}.html"',
            "Cache-Control": "no-store",
        },
    )


clv_router = APIRouter(prefix="/admin/clv", include_in_schema=False)


@clv_router.post("/fit")
def clv_fit(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    back: Annotated[str, Form(max_length=300)] = "/admin",
) -> Response:
    """Queue a fit of the predicted-CLV model now (the nightly job, on demand)."""
    check_csrf(request, csrf_token)
    require(staff, CAPABILITY)
    with db.unit_of_work() as session:
        now = clock.now()
        job_id = clv_jobs.request_fit(session, now=now)
        audit.record(
            session,
            actor=staff.actor,
            action="clv.fit_requested",
            target_type="job",
            target_id=str(job_id),
            now=now,
            details={},
        )
    target = back if back.startswith("/admin") and "//" not in back else "/admin"
    return done(
        request, target, "The CLV model is being fitted in the background; reload in a minute."
    )
