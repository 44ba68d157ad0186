"""The console's Segments pages: the list with each segment's size over time, the builder
(rows of field / operator / value with a live count and sample as you edit), each segment's
page with its members and CSV export, and static lists uploaded as CSV. Every change is
audited by the service it calls.

The builder works without JavaScript (its buttons add a row and preview on the server); with
it, htmx (``hx-post`` on the form) sends the form to ``/admin/segments/preview`` as you type
and swaps the returned fragment in."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.datastructures import FormData

from lealta.audit import service as audit
from lealta.jobs import queue
from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep
from lealta.kit.pagination import decode_cursor, encode_cursor
from lealta.programme.types import name_in
from lealta.segments import service
from lealta.segments.schema import FIELDS, OPS, PERIODS
from lealta.staff.service import Staff, require
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import FLASH, show
from lealta.web.admin.routes_ops_common import translator
from lealta.web.security import check_csrf
from lealta.web.templating import render

router = APIRouter(prefix="/admin/segments", include_in_schema=False)
MAX_ROWS = 12
PAGE_SIZE = 50
RECOMPUTE_ONE = "segments.recompute_one"


def field_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "tier": _("Tier"),
        "language": _("Language"),
        "tag": _("Tag"),
        "attribute": _("Attribute"),
        "consent": _("Consent"),
        "enrolled_days": _("Days since enrolment"),
        "days_since_last_order": _("Days since last order"),
        "activity": _("Activity (active, at_risk, inactive)"),
        "orders": _("Orders in the window"),
        "spend": _("Spend in the window"),
        "aov": _("Average order value"),
        "frequency": _("Orders per year"),
        "rfm_r": _("RFM recency (1-5)"),
        "rfm_f": _("RFM frequency (1-5)"),
        "rfm_m": _("RFM value (1-5)"),
        "spend_decile": _("Spend decile (10 = top 10 %)"),
        "points_balance": _("Points balance"),
        "points_expiring": _("Points expiring within the window"),
        "referrals": _("Referral events"),
        "reviews": _("Reviews written"),
        "clv": _("Predicted value (CLV)"),
        "probability_alive": _("Probability still active"),
    }


def op_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "eq": _("is"),
        "ne": _("is not"),
        "gt": _("> more than"),
        "gte": _("≥ at least"),
        "lt": _("< less than"),
        "lte": _("≤ at most"),
        "in": _("one of"),
        "not_in": _("none of"),
        "between": _("between"),
        "is_set": _("is set"),
        "is_not_set": _("is not set"),
        "has": _("has"),
        "not_has": _("has not"),
    }


def period_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "this_month": _("This month"),
        "last_month": _("Last month"),
        "this_year": _("This year"),
        "last_year": _("Last year"),
    }


# --- the form ------------------------------------------------------------------------------


def _value(raw: str, field: str, op: str) -> Any:
    """A form value as the condition wants it: lists for in/not_in/between, numbers for
    numeric fields, true/false for consent."""
    spec = FIELDS.get(field)

    def one(text: str) -> Any:
        text = text.strip()
        if spec is not None and spec.kind == "bool":
            return text.lower() in ("true", "yes", "sí", "si", "1")
        if spec is not None and (spec.kind == "number" or op in ("gt", "gte", "lt", "lte")):
            try:
                number = float(
                    text.replace(",", ".") if text.count(",") == 1 and op != "between" else text
                )
            except ValueError:
                return text
            return int(number) if number.is_integer() else number
        return text

    if op in ("is_set", "is_not_set"):
        return None
    if op in ("in", "not_in", "between"):
        return [one(p) for p in raw.split(",") if p.strip()]
    return one(raw) if raw.strip() else None


def rows_from(form: FormData) -> list[dict[str, str]]:
    rows = []
    for i in range(MAX_ROWS):
        field = str(form.get(f"field_{i}", "") or "")
        if f"field_{i}" not in form:
            break
        rows.append(
            {
                "field": field,
                "op": str(form.get(f"op_{i}", "eq") or "eq"),
                "value": str(form.get(f"value_{i}", "") or "")[:500],
                "days": str(form.get(f"days_{i}", "") or "")[:5],
                "period": str(form.get(f"period_{i}", "") or ""),
                "key": str(form.get(f"key_{i}", "") or "")[:64],
            }
        )
    return rows


def definition_from(form: FormData) -> dict[str, Any]:
    """The segment definition a builder form describes (validated by the service)."""
    key = str(form.get("key", "") or "").strip()[:64]
    name_es = str(form.get("name_es", "") or "").strip()[:200]
    name_en = str(form.get("name_en", "") or "").strip()[:200]
    data: dict[str, Any] = {"id": key or "preview"}
    if name_es:
        data["name"] = {"es": name_es, **({"en": name_en} if name_en else {})}
    if str(form.get("kind", "")) == "static":
        data["kind"] = "static"
        return data
    cel = str(form.get("cel", "") or "").strip()[:2000]
    if cel:
        data["cel"] = cel
        return data
    conditions = []
    for row in rows_from(form):
        if not row["field"]:
            continue
        c: dict[str, Any] = {
            "field": row["field"],
            "op": row["op"],
            "value": _value(row["value"], row["field"], row["op"]),
        }
        if row["days"].strip():
            c["days"] = int(row["days"]) if row["days"].strip().isdigit() else row["days"]
        if row["period"]:
            c["period"] = row["period"]
        if row["key"].strip():
            c["key"] = row["key"].strip()
        conditions.append(c)
    match = "any" if form.get("match") == "any" else "all"
    data[match] = conditions
    return data


def _rows_of(definition: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for c in definition.get("all") or definition.get("any") or []:
        if "field" not in c:
            continue  # a nested group: edit it over the API
        value = c.get("value")
        rows.append(
            {
                "field": c["field"],
                "op": c.get("op", "eq"),
                "value": ", ".join(str(v) for v in value)
                if isinstance(value, list)
                else (
                    ""
                    if value is None
                    else str(value).lower()
                    if isinstance(value, bool)
                    else str(value)
                ),
                "days": str(c.get("days") or ""),
                "period": c.get("period") or "",
                "key": c.get("key") or "",
            }
        )
    return rows


def _builder(
    request: Request, *, rows: list[dict[str, str]], values: dict[str, str]
) -> dict[str, Any]:
    _ = translator(request)
    while len(rows) < 1:
        rows.append({"field": "", "op": "eq", "value": "", "days": "", "period": "", "key": ""})
    return {
        "rows": rows[:MAX_ROWS],
        "values": values,
        "fields": field_labels(_),
        "ops": op_labels(_),
        "op_keys": OPS,
        "periods": period_labels(_),
        "period_keys": PERIODS,
        "max_rows": MAX_ROWS,
    }


def _problem(request: Request, exc: LealtaError) -> str:
    _ = translator(request)
    known = {
        "segment_exists": _("A segment with this key exists already."),
        "segment_not_found": _("No segment has this key."),
        "segment_read_only": _("This segment ships with the programme: change it there."),
    }
    return known.get(exc.code, exc.message)


# --- the list ------------------------------------------------------------------------------


def _items(request: Request, db: DbDep) -> list[dict[str, Any]]:
    lang = i18n.negotiate(request)
    with db.unit_of_work(write=False) as session:
        rows = service.list_segments(session)
        counts = service.counts_over_time(session, [r.id for r in rows])
        items = []
        for row in rows:
            data = service.definition(row)
            items.append(
                {
                    "key": row.key,
                    "name": name_in(data.name, lang) if data.name else row.key,
                    "source": row.source,
                    "kind": row.kind,
                    "members": row.member_count,
                    "computed_at": row.computed_at,
                    "spark": sparkline(counts.get(row.id, [])),
                }
            )
    return items


def sparkline(counts: list[int], width: int = 120, height: int = 28) -> str:
    """SVG polyline points of the daily counts (empty below two points)."""
    if len(counts) < 2:
        return ""
    top = max(counts) or 1
    step = width / (len(counts) - 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (n / top) * (height - 4):.1f}" for i, n in enumerate(counts)
    )


def _list(
    request: Request,
    db: DbDep,
    staff: Staff,
    *,
    rows: list[dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
    problems: list[str] | None = None,
    preview: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "items": _items(request, db),
        "problems": problems or [],
        "preview": preview,
        **_builder(request, rows=rows or [], values=values or {"match": "all"}),
    }
    return show(request, staff, "admin/segments.html", context, status_code=status_code)


@router.get("")
def segments_page(request: Request, db: DbDep, staff: StaffDep) -> Response:
    require(staff, "view")
    return _list(request, db, staff)


def _run_preview(
    request: Request, db: DbDep, clock: ClockDep, form: FormData
) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        data = service.parse(definition_from(form))
        if data.kind == "static":
            return None, []
        with db.unit_of_work(write=False) as session:
            p = service.preview(session, data, now=clock.now())
    except LealtaError as exc:
        return None, [_problem(request, exc)]
    return {
        "count": p.count,
        "sample": p.sample,
        "entering": p.entering,
        "leaving": p.leaving,
        "current": p.current,
    }, []


@router.post("/preview")
async def preview_fragment(
    request: Request, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    """The live count: an HTML fragment (never JSON) for the builder's preview box."""
    require(staff, "view")
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    result, problems = _run_preview(request, db, clock, form)
    return render(
        request,
        "admin/segments_preview.html",
        {"preview": result, "problems": problems, "staff": staff},
        language=i18n.negotiate(request),
        status_code=200,
    )


def _values(form: FormData) -> dict[str, str]:
    return {
        k: str(form.get(k, "") or "")[:2000]
        for k in ("key", "name_es", "name_en", "match", "cel", "kind")
    }


@router.post("")
async def save_segment(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    """The builder's buttons: add a row, preview, or save (create)."""
    require(staff, "marketing")
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    action = str(form.get("action", "save"))
    rows = rows_from(form)
    values = _values(form)
    if action == "add_row":
        rows.append({"field": "", "op": "eq", "value": "", "days": "", "period": "", "key": ""})
        return _list(request, db, staff, rows=rows, values=values)
    if action == "preview":
        result, problems = _run_preview(request, db, clock, form)
        code = 422 if problems else 200
        return _list(
            request,
            db,
            staff,
            rows=rows,
            values=values,
            problems=problems,
            preview=result,
            status_code=code,
        )
    try:
        if not values["key"].strip():
            _ = translator(request)
            return _list(
                request, db, staff, rows=rows, values=values,
                problems=[_("Give the segment a key (lowercase letters, digits and dashes).")],
                status_code=422,
            )  # fmt: skip
        data = service.parse(definition_from(form))
        with db.unit_of_work() as session:
            row = service.create(session, data, actor=staff.actor, now=clock.now())
            queue.enqueue(session, RECOMPUTE_ONE, {"key": row.key}, now=clock.now())
    except LealtaError as exc:
        return _list(
            request,
            db,
            staff,
            rows=rows,
            values=values,
            problems=[_problem(request, exc)],
            status_code=422,
        )
    request.session[FLASH] = {
        "kind": "ok",
        "text": "Segment %(key)s saved: its members are being computed.",
        "values": {"key": data.id},
    }
    return RedirectResponse(f"/admin/segments/{data.id}", status_code=303)


# --- one segment ---------------------------------------------------------------------------


def _segment_page(
    request: Request,
    db: DbDep,
    staff: Staff,
    key: str,
    *,
    cursor: str | None = None,
    rows: list[dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
    problems: list[str] | None = None,
    preview: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    lang = i18n.negotiate(request)
    after = None
    if cursor:
        try:
            after = decode_cursor(cursor)
        except LealtaError:
            after = None
    with db.unit_of_work(write=False) as session:
        row = service.get(session, key)
        data = service.definition(row)
        counts = service.counts_over_time(session, [row.id]).get(row.id, [])
        page = service.members_page(session, row, after=after, limit=PAGE_SIZE + 1)
        stored = dict(row.definition)
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    next_cursor = encode_cursor(page[-1][1], page[-1][0].id) if more and page else None
    nested = any("field" not in c for c in (stored.get("all") or stored.get("any") or []))
    editable = row.source == "api" and row.kind == "dynamic" and not nested
    if values is None:
        values = {
            "key": row.key,
            "name_es": name_in(data.name, "es") if data.name else "",
            "name_en": (data.name.en or "")
            if data.name is not None and not isinstance(data.name, str)
            else "",
            "match": "any" if stored.get("any") is not None else "all",
            "cel": stored.get("cel", ""),
            "kind": row.kind,
        }
    context = {
        "segment": row,
        "name": name_in(data.name, lang) if data.name else row.key,
        "definition": stored,
        "counts": counts,
        "spark": sparkline(counts, 300, 60),
        "members": [{"id": m.external_id, "name": m.name or "", "entered_at": e} for m, e in page],
        "next_cursor": next_cursor,
        "editable": editable,
        "problems": problems or [],
        "preview": preview,
        **_builder(request, rows=rows if rows is not None else _rows_of(stored), values=values),
    }
    return show(request, staff, "admin/segment.html", context, status_code=status_code)


@router.get("/{key}")
def segment_page(
    request: Request,
    key: str,
    db: DbDep,
    staff: StaffDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    require(staff, "view")
    return _segment_page(request, db, staff, key, cursor=cursor)


@router.post("/{key}")
async def update_segment(
    request: Request, key: str, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    require(staff, "marketing")
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    rows = rows_from(form)
    values = _values(form)
    values["key"] = key
    action = str(form.get("action", "save"))
    if action == "add_row":
        rows.append({"field": "", "op": "eq", "value": "", "days": "", "period": "", "key": ""})
        return _segment_page(request, db, staff, key, rows=rows, values=values)
    if action == "preview":
        result, problems = _run_preview(request, db, clock, form)
        return _segment_page(
            request, db, staff, key, rows=rows, values=values, problems=problems,
            preview=result, status_code=422 if problems else 200,
        )  # fmt: skip
    try:
        data = service.parse({**definition_from(form), "id": key})
        with db.unit_of_work() as session:
            service.update(session, key, data, actor=staff.actor, now=clock.now())
            queue.enqueue(session, RECOMPUTE_ONE, {"key": key}, now=clock.now())
    except LealtaError as exc:
        return _segment_page(
            request, db, staff, key, rows=rows, values=values,
            problems=[_problem(request, exc)], status_code=422,
        )  # fmt: skip
    request.session[FLASH] = {
        "kind": "ok",
        "text": "Segment %(key)s saved: its members are being computed.",
        "values": {"key": key},
    }
    return RedirectResponse(f"/admin/segments/{key}", status_code=303)


@router.post("/{key}/recompute")
def recompute(
    request: Request,
    key: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    with db.unit_of_work() as session:
        service.get(session, key)
        queue.enqueue(session, RECOMPUTE_ONE, {"key": key}, now=clock.now())
        audit.record(
            session, actor=staff.actor, action="segment.recompute", target_type="segment",
            target_id=key, now=clock.now(),
        )  # fmt: skip
    request.session[FLASH] = {
        "kind": "ok",
        "text": "Segment %(key)s is being recomputed.",
        "values": {"key": key},
    }
    return RedirectResponse(f"/admin/segments/{key}", status_code=303)


@router.post("/{key}/delete")
def delete_segment(
    request: Request,
    key: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    try:
        with db.unit_of_work() as session:
            service.remove(session, key, actor=staff.actor, now=clock.now())
    except LealtaError as exc:
        return _segment_page(
            request, db, staff, key, problems=[_problem(request, exc)], status_code=409
        )
    request.session[FLASH] = {
        "kind": "ok",
        "text": "Segment %(key)s deleted.",
        "values": {"key": key},
    }
    return RedirectResponse("/admin/segments", status_code=303)


@router.post("/{key}/upload")
async def upload_list(
    request: Request,
    key: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    mode: Annotated[str, Form(max_length=10)] = "replace",
    ids: Annotated[str, Form(max_length=2_000_000)] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """A static list: customer ids pasted or a CSV whose first column holds them."""
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    _ = translator(request)
    text = ids
    if file is not None and file.filename:
        raw = await file.read(5_000_001)
        text = raw[:5_000_000].decode("utf-8", errors="replace")
    customer_ids = [r[0].strip() for r in csv.reader(io.StringIO(text)) if r and r[0].strip()]
    if customer_ids and customer_ids[0].lower() in ("customer_id", "external_id", "id"):
        customer_ids = customer_ids[1:]
    if not customer_ids:
        return _segment_page(
            request, db, staff, key, problems=[_("Paste customer ids or choose a CSV file.")],
            status_code=422,
        )  # fmt: skip
    try:
        with db.unit_of_work() as session:
            done, unknown = service.upload(
                session, key, customer_ids,
                mode="add" if mode == "add" else "remove" if mode == "remove" else "replace",
                actor=staff.actor, now=clock.now(),
            )  # fmt: skip
    except LealtaError as exc:
        return _segment_page(
            request, db, staff, key, problems=[_problem(request, exc)], status_code=409
        )
    request.session[FLASH] = {
        "kind": "ok",
        "text": "List saved: %(members)s members, %(unknown)s unknown ids.",
        "values": {"members": done.members, "unknown": len(unknown)},
    }
    return RedirectResponse(f"/admin/segments/{key}", status_code=303)


@router.get("/{key}/members.csv")
def export(key: str, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    require(staff, "view")
    with db.unit_of_work() as session:
        service.get(session, key)
        audit.record(
            session, actor=staff.actor, action="segment.export", target_type="segment",
            target_id=key, now=clock.now(),
        )  # fmt: skip
    stamp = clock.now().strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        service.export_csv(db, key),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="segment-{key}-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
