"""Console pages for the programme document and the rewards catalogue.

Changing the programme is two steps. *Validate* parses and checks the document and shows the
diff against the version in force; *apply* stores exactly that validated document as a new
version. The document travels through the confirm step in a hidden field, together with an
HMAC over it (keyed by the server secret, bound to the session's CSRF token and to the
version it was compared against), so an altered document or a stale comparison is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.config import Settings
from lealta.kit.errors import Conflict, InvalidInput, LealtaError
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.models import ProgrammeVersion
from lealta.programme import service as programmes
from lealta.programme.diff import diff
from lealta.programme.schema import DEFAULT_PROGRAMME, Programme
from lealta.rewards import service as rewards
from lealta.staff.service import Staff, require
from lealta.web import problems as wording
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.routes_ops_common import (
    explain,
    parse_local_datetime,
    show_value,
    to_local_input,
    translator,
)
from lealta.web.security import check_csrf, csrf_token
from lealta.web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)

# An activation time a little in the past is "now" typed slowly, not a back-dated version.
PAST_TOLERANCE = timedelta(minutes=5)


class TamperedDocument(LealtaError):
    status_code = 400
    code = "tampered_document"


# --- reading ------------------------------------------------------------------------------


def _in_force(session: Session, now: datetime) -> tuple[Programme, int | None]:
    """The programme in force and its version number (None: the built-in default)."""
    row = programmes.in_force(session, now=now)
    return programmes.current(session, now=now), (row.version if row else None)


def _version_status(row: ProgrammeVersion, in_force: int | None, now: datetime) -> str:
    if row.version == in_force:
        return "in_force"
    return "scheduled" if row.activated_at > now else "superseded"


def _programme_context(session: Session, now: datetime) -> dict[str, Any]:
    programme, number = _in_force(session, now)
    rows = programmes.versions(session)
    return {
        "programme": programme,
        "in_force": number,
        "versions": [(row, _version_status(row, number, now)) for row in rows],
        "issued": rewards.issued_counts(session),
    }


@router.get("/programme")
def programme_page(request: Request, staff: StaffDep, db: DbDep, clock: ClockDep) -> Response:
    require(staff, "view")
    with db.unit_of_work(write=False) as session:
        context = _programme_context(session, clock.now())
    return render(request, "admin/programme.html", {"staff": staff, **context})


@router.get("/programme/versions/{number}")
def programme_version_page(
    request: Request, number: int, staff: StaffDep, db: DbDep, clock: ClockDep
) -> Response:
    require(staff, "view")
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        row = programmes.version(session, number)
        _, in_force = _in_force(session, now)
        previous = (
            programmes.version(session, number - 1).document
            if number > 1
            else DEFAULT_PROGRAMME.model_dump(mode="json")
        )
        programme = Programme.model_validate(row.document)
        return render(
            request,
            "admin/programme_version.html",
            {
                "staff": staff,
                "row": row,
                "status": _version_status(row, in_force, now),
                "programme": programme,
                "changes": diff(previous, row.document),
                "show_value": show_value,
                "source": programmes.dumps(programme),
                "issued": rewards.issued_counts(session),
                "applied": request.query_params.get("applied") == "1",
            },
        )


# --- validate, confirm, apply -------------------------------------------------------------


def _canonical(programme: Programme) -> str:
    return json.dumps(
        programme.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )


def _signature(
    request: Request, settings: Settings, document: str, base_version: int, origin: str
) -> str:
    key = hashlib.sha256(f"lealta-programme-apply:{settings.secret_key}".encode()).digest()
    message = "\n".join((str(base_version), origin, csrf_token(request), document))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def _confirm(
    request: Request,
    staff: Staff,
    settings: Settings,
    session: Session,
    programme: Programme,
    *,
    now: datetime,
    origin: str,
    activate_at: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """The confirm step: the diff against the version in force and the signed document."""
    current, in_force = _in_force(session, now)
    base_version = programmes.latest_number(session)
    document = _canonical(programme)
    changes = diff(current.model_dump(mode="json"), programme.model_dump(mode="json"))
    return render(
        request,
        "admin/programme_confirm.html",
        {
            "staff": staff,
            "changes": changes,
            "show_value": show_value,
            "in_force": in_force,
            "document": document,
            "signature": _signature(request, settings, document, base_version, origin),
            "base_version": base_version,
            "origin": origin,
            "activate_at": activate_at,
            "programme": programme,
            "error": error,
        },
        status_code=status_code,
    )


@router.post("/programme/validate")
async def programme_validate(
    request: Request,
    staff: StaffDep,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, "marketing")
    _ = translator(request)
    source = _("The pasted document")
    if file is not None and file.filename:
        raw = await file.read(settings.upload_max_bytes + 1)
        if len(raw) > settings.upload_max_bytes:
            return _invalid(
                request,
                staff,
                db,
                clock.now(),
                text,
                _("The file is larger than %(n)s bytes.", n=settings.upload_max_bytes),
                [],
            )
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return _invalid(
                request, staff, db, clock.now(), "", _("The file is not UTF-8 text."), []
            )
        source = file.filename
    if not text.strip():
        return _invalid(
            request, staff, db, clock.now(), text, _("Upload a file or paste a document."), []
        )
    try:
        programme = programmes.validate(programmes.parse_text(text, source=source))
    except programmes.ProgrammeInvalid as exc:
        problems = exc.details if isinstance(exc.details, list) else []
        if exc.kind == "syntax" and exc.line is not None:
            message = _(
                "%(source)s is not valid YAML/JSON at line %(line)s, column %(column)s.",
                source=source,
                line=exc.line,
                column=exc.column,
            )
        elif exc.kind == "syntax":
            message = _("%(source)s is not valid YAML/JSON.", source=source)
        elif exc.kind == "not_mapping":
            message = _("%(source)s must be a mapping at the top level.", source=source)
        elif problems:
            message = wording.summary(problems, _)
        else:
            message = exc.message
        return _invalid(
            request, staff, db, clock.now(), text, message, wording.translated(problems, _)
        )
    with db.unit_of_work(write=False) as session:
        return _confirm(
            request, staff, settings, session, programme, now=clock.now(), origin="programme"
        )


def _invalid(
    request: Request,
    staff: Staff,
    db: DbDep,
    now: datetime,
    text: str,
    message: str,
    problems: list[dict[str, Any]],
) -> Response:
    with db.unit_of_work(write=False) as session:
        context = _programme_context(session, now)
    return render(
        request,
        "admin/programme.html",
        {
            "staff": staff,
            **context,
            "text": text,
            "problems": problems,
            "error": message,
        },
        status_code=422,
    )


@router.post("/programme/apply")
def programme_apply(
    request: Request,
    staff: StaffDep,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form()] = "",
    document: Annotated[str, Form()] = "",
    signature: Annotated[str, Form(max_length=128)] = "",
    base_version: Annotated[int, Form()] = -1,
    origin: Annotated[str, Form(max_length=100)] = "programme",
    activate_at: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, "marketing")
    expected = _signature(request, settings, document, base_version, origin)
    if not signature or not hmac.compare_digest(expected, signature):
        raise TamperedDocument(
            "The validated document was altered between validation and apply; validate it again."
        )
    # Signed, so it is what we validated; validate again all the same (the schema may have
    # tightened since, e.g. across a deploy).
    programme = programmes.validate(json.loads(document))
    now = clock.now()
    try:
        when = parse_local_datetime(activate_at)
        if when is not None and when < now - PAST_TOLERANCE:
            raise InvalidInput("The activation time is in the past.", code="activation_in_past")
        with db.unit_of_work() as session:
            if programmes.latest_number(session) != base_version:
                raise Conflict(
                    "The programme changed since this document was validated.",
                    code="programme_changed",
                )
            applied = programmes.apply_with_diff(
                session, programme, actor=staff.actor, now=now, activate_at=when
            )
            if origin.startswith("reward:"):
                audit.record(
                    session,
                    actor=staff.actor,
                    action="reward.update",
                    target_type="reward",
                    target_id=origin.removeprefix("reward:"),
                    now=now,
                    details={
                        "version": applied.version,
                        "changes": [c.describe() for c in applied.changes],
                    },
                )
    except LealtaError as exc:
        with db.unit_of_work(write=False) as session:
            return _confirm(
                request,
                staff,
                settings,
                session,
                programme,
                now=now,
                origin=origin,
                activate_at=activate_at,
                error=explain(request, exc),
                status_code=exc.status_code,
            )
    if origin.startswith("reward:"):
        query = urlencode({"updated": origin.removeprefix("reward:"), "version": applied.version})
        return RedirectResponse(f"/admin/rewards?{query}", status_code=303)
    return RedirectResponse(
        f"/admin/programme/versions/{applied.version}?applied=1", status_code=303
    )


# --- rewards ------------------------------------------------------------------------------


@router.get("/rewards")
def rewards_page(
    request: Request,
    staff: StaffDep,
    db: DbDep,
    clock: ClockDep,
    updated: str | None = None,
    version: int | None = None,
) -> Response:
    require(staff, "view")
    _ = translator(request)
    with db.unit_of_work(write=False) as session:
        programme, in_force = _in_force(session, clock.now())
        issued = rewards.issued_counts(session)
    flash = None
    if updated and version:
        flash = {
            "kind": "ok",
            "text": _(
                "Reward %(reward)s updated: programme version %(version)s.",
                reward=updated,
                version=version,
            ),
        }
    return render(
        request,
        "admin/rewards.html",
        {
            "staff": staff,
            "programme": programme,
            "in_force": in_force,
            "issued": issued,
            "flash": flash,
            "now": clock.now(),
        },
    )


def _reward_index(programme: Programme, reward_id: str) -> int:
    for i, reward in enumerate(programme.rewards):
        if reward.id == reward_id:
            return i
    raise rewards.RewardNotFound(
        f"No reward '{reward_id}' in the programme.", details={"reward_id": reward_id}
    )


@router.get("/rewards/{reward_id}")
def reward_page(
    request: Request, reward_id: str, staff: StaffDep, db: DbDep, clock: ClockDep
) -> Response:
    require(staff, "view")
    with db.unit_of_work(write=False) as session:
        programme, _ = _in_force(session, clock.now())
        issued = rewards.issued_counts(session)
    reward = programme.rewards[_reward_index(programme, reward_id)]
    return render(
        request,
        "admin/rewards_edit.html",
        {
            "staff": staff,
            "reward": reward,
            "programme": programme,
            "issued": issued.get(reward.id, 0),
            "form": {
                "cost": str(reward.cost),
                "stock": "" if reward.stock is None else str(reward.stock),
                "available_from": to_local_input(reward.available_from),
                "available_until": to_local_input(reward.available_until),
            },
        },
    )


@router.post("/rewards/{reward_id}")
def reward_preview(
    request: Request,
    reward_id: str,
    staff: StaffDep,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form()] = "",
    cost: Annotated[str, Form(max_length=20)] = "",
    stock: Annotated[str, Form(max_length=20)] = "",
    available_from: Annotated[str, Form(max_length=40)] = "",
    available_until: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Validate the edited reward as a whole new programme document and show the diff."""
    check_csrf(request, csrf_token)
    require(staff, "marketing")
    now = clock.now()
    form = {
        "cost": cost,
        "stock": stock,
        "available_from": available_from,
        "available_until": available_until,
    }
    with db.unit_of_work(write=False) as session:
        programme, _ = _in_force(session, now)
        index = _reward_index(programme, reward_id)
        document = programme.model_dump(mode="json")
        entry: dict[str, Any] = document["rewards"][index]
        problems: list[dict[str, Any]] = []
        entry["cost"] = int(cost.strip()) if cost.strip().isdigit() else cost.strip()
        entry["stock"] = (
            None if not stock.strip() else int(stock) if stock.strip().isdigit() else stock
        )
        for name, raw in (("available_from", available_from), ("available_until", available_until)):
            try:
                when = parse_local_datetime(raw)
                entry[name] = when.isoformat() if when else None
            except InvalidInput:
                problems.append(
                    {
                        "path": f"rewards.{index}.{name}",
                        "message": translator(request)("not a date and time"),
                    }
                )
        edited: Programme | None = None
        if not problems:
            try:
                edited = programmes.validate(document)
            except programmes.ProgrammeInvalid as exc:
                problems = wording.translated(
                    exc.details if isinstance(exc.details, list) else [], translator(request)
                )
        if edited is None:
            return render(
                request,
                "admin/rewards_edit.html",
                {
                    "staff": staff,
                    "reward": programme.rewards[index],
                    "programme": programme,
                    "issued": rewards.issued_counts(session).get(reward_id, 0),
                    "form": form,
                    "problems": problems,
                    "error": translator(request)(
                        "The reward was not changed: fix the fields below."
                    ),
                },
                status_code=422,
            )
        return _confirm(
            request, staff, settings, session, edited, now=now, origin=f"reward:{reward_id}"
        )
