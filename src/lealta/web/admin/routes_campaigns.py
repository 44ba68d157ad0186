"""The console's Campaigns pages: the list (status, window, priority, audience, progress),
the editor of API campaigns (audience with a live count, window, priority, channels,
content, multiplier, experiment), each campaign's page with its progress by status and arm
and its actions (launch, pause, resume, cancel: audited by the service), and the public
tracking link ``/c/<token>`` of campaign e-mails (records the click, opens the cockpit).

Works without JavaScript; with it, htmx posts the editor to ``/admin/campaigns/preview`` as
you edit and swaps the audience count in."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from lealta.campaigns import service
from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.models.campaign import RECIPIENT_STATUSES
from lealta.notify.defaults import KEYS
from lealta.programme.types import name_in
from lealta.staff.service import Staff, require
from lealta.web import i18n
from lealta.web import problems as wording
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import FLASH, show
from lealta.web.admin.routes_ops_common import translator
from lealta.web.errors import error_page
from lealta.web.security import check_csrf
from lealta.web.templating import render
from lealta.workflows import runs as workflow_runs

router = APIRouter(prefix="/admin/campaigns", include_in_schema=False)
link_router = APIRouter(include_in_schema=False)
MAX_VARIANTS = 3
CHANNELS = ("email", "sms", "push", "inapp")
FIELDS = (
    "id", "name_es", "name_en", "segment", "starts_at", "ends_at", "priority", "template",
    "points", "reward", "factor", "days", "holdout", "per_minute", "enabled",
)  # fmt: skip
AREAS = (
    "id", "name", "segment", "exclude_segments", "starts_at", "ends_at", "priority",
    "channels", "steps", "multiplier", "experiment", "throttle",
)  # fmt: skip
"""Where a validation error is shown: the first part of its path."""


# --- the form ------------------------------------------------------------------------------


def _zone(session: Any, now: datetime) -> ZoneInfo:
    _, programme = workflow_runs.in_force(session, now)
    return ZoneInfo(programme.timezone)


def _when(raw: str, zone: ZoneInfo) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return raw  # the validation names the field
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.isoformat()


def _int(raw: str) -> Any:
    raw = raw.strip()
    return int(raw) if raw.lstrip("-").isdigit() else (raw or None)


def values_from(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {k: str(form.get(k, "") or "")[:200].strip() for k in FIELDS}
    values["exclude"] = [str(v)[:64] for v in form.getlist("exclude")][:20]
    values["channels"] = [str(v) for v in form.getlist("channels") if str(v) in CHANNELS]
    values["variants"] = [
        {
            "id": str(form.get(f"variant_id_{i}", "") or "")[:64].strip(),
            "weight": str(form.get(f"variant_weight_{i}", "") or "")[:6].strip(),
            "template": str(form.get(f"variant_template_{i}", "") or "")[:100].strip(),
        }
        for i in range(MAX_VARIANTS)
    ]
    return values


def definition_from(values: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """The campaign an editor form describes (validated by the service)."""
    data: dict[str, Any] = {"id": values["id"] or "preview"}
    if values["name_es"]:
        data["name"] = {"es": values["name_es"], "en": values["name_en"] or values["name_es"]}
    else:
        data["name"] = values["name_en"] or values["id"] or "preview"
    if values["segment"]:
        data["segment"] = values["segment"]
    data["exclude_segments"] = values["exclude"]
    data["starts_at"] = _when(values["starts_at"], zone)
    if values["ends_at"]:
        data["ends_at"] = _when(values["ends_at"], zone)
    if values["priority"]:
        data["priority"] = _int(values["priority"])
    data["channels"] = values["channels"] or ["email"]
    data["enabled"] = values["enabled"] == "on"
    if values["per_minute"]:
        data["throttle"] = {"per_minute": _int(values["per_minute"])}
    steps: list[dict[str, Any]] = []
    if values["points"]:
        steps.append(
            {"type": "award_points", "points": _int(values["points"]), "reason": "campaign"}
        )
    if values["reward"]:
        steps.append({"type": "issue_coupon", "reward": values["reward"]})
    if values["template"]:
        steps.append({"type": "send_message", "template": values["template"]})
    data["steps"] = steps
    if values["factor"]:
        data["multiplier"] = {"factor": values["factor"].replace(",", ".")}
        if values["days"]:
            data["multiplier"]["days"] = _int(values["days"])
    variants = [v for v in values["variants"] if v["id"]]
    if variants or values["holdout"]:
        experiment: dict[str, Any] = {}
        if values["holdout"]:
            experiment["holdout_percent"] = _int(values["holdout"])
        if variants:
            found = []
            for v in variants:
                item: dict[str, Any] = {"id": v["id"]}
                if v["weight"]:
                    item["weight"] = _int(v["weight"])
                if v["template"]:
                    own = [s for s in steps if s["type"] != "send_message"]
                    item["steps"] = [*own, {"type": "send_message", "template": v["template"]}]
                found.append(item)
            experiment["variants"] = found
        data["experiment"] = experiment
    return data


def values_of(data: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """The editor's values for a stored definition."""
    steps = data.get("steps") or []

    def step(kind: str, key: str) -> str:
        return next((str(s.get(key, "")) for s in steps if s.get("type") == kind), "")

    def local(value: Any) -> str:
        if not value:
            return ""
        return datetime.fromisoformat(str(value)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")

    name = data.get("name")
    experiment = data.get("experiment") or {}
    variants = [
        {
            "id": v.get("id", ""),
            "weight": str(v.get("weight", "")),
            "template": next(
                (s["template"] for s in v.get("steps") or [] if s.get("type") == "send_message"),
                "",
            ),
        }
        for v in experiment.get("variants") or []
    ]
    while len(variants) < MAX_VARIANTS:
        variants.append({"id": "", "weight": "", "template": ""})
    multiplier = data.get("multiplier") or {}
    return {
        "id": data.get("id", ""),
        "name_es": name.get("es", "") if isinstance(name, dict) else (name or ""),
        "name_en": name.get("en", "") if isinstance(name, dict) else "",
        "segment": data.get("segment") or "",
        "exclude": list(data.get("exclude_segments") or []),
        "starts_at": local(data.get("starts_at")),
        "ends_at": local(data.get("ends_at")),
        "priority": str(data.get("priority", 100)),
        "channels": list(data.get("channels") or ["email"]),
        "template": step("send_message", "template"),
        "points": step("award_points", "points"),
        "reward": step("issue_coupon", "reward"),
        "factor": str(multiplier.get("factor", "")),
        "days": str(multiplier.get("days", "")),
        "holdout": str(experiment.get("holdout_percent", "")) if experiment else "",
        "per_minute": str((data.get("throttle") or {}).get("per_minute", 1000)),
        "enabled": "on" if data.get("enabled", True) else "",
        "variants": variants[:MAX_VARIANTS],
    }


def _blank(now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    values = values_of({"enabled": False, "channels": ["email", "inapp"]}, zone)
    values["starts_at"] = now.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    values["enabled"] = ""
    return values


def _problem(request: Request, exc: LealtaError) -> tuple[str, str]:
    """(area of the form, message in the page's language) of an error."""
    _ = translator(request)
    known = {
        "campaign_exists": _("A campaign with this id exists already."),
        "campaign_not_found": _("No campaign has this id."),
        "campaign_read_only": _("This campaign ships with the programme: change it there."),
        "campaign_status": _("Only a scheduled campaign can be edited or deleted."),
    }
    if exc.code in known:
        return "general", known[exc.code]
    head = exc.message.split(":", 1)[0].split(".", 1)[0]
    area = head if head in AREAS else "general"
    detail = exc.message
    first = exc.details[0] if isinstance(exc.details, list) and exc.details else None
    if isinstance(first, dict) and first.get("type"):
        where = ".".join(str(p) for p in first.get("loc", ()))
        detail = f"{where}: {wording.message(first, _)}" if where else wording.message(first, _)
    return area, _("Check this field: %(detail)s", detail=detail)


# --- pages ---------------------------------------------------------------------------------


def _options(request: Request, db: DbDep, clock: ClockDep) -> dict[str, Any]:
    lang = i18n.negotiate(request)
    with db.unit_of_work(write=False) as session:
        _, programme = workflow_runs.in_force(session, clock.now())
        segments = sorted(service.segment_keys(session) | {s.id for s in programme.segments})
        from lealta.notify import service as notify

        custom = sorted(
            {t.key for t in notify.list_templates(session) if t.key.startswith("custom_")}
        )
    rewards = [
        (r.id, name_in(r.name, lang))
        for r in programme.rewards
        if r.coupon is not None or r.type == "free_shipping"
    ]
    return {
        "segments": segments,
        "templates": [*KEYS, *custom],
        "rewards": rewards,
        "channel_keys": CHANNELS,
        "max_variants": MAX_VARIANTS,
    }


def _editor(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: Staff,
    values: dict[str, Any],
    *,
    campaign_id: str | None = None,
    errors: dict[str, str] | None = None,
    preview: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "values": values,
        "campaign_id": campaign_id,
        "errors": errors or {},
        "preview": preview,
        **_options(request, db, clock),
    }
    return show(request, staff, "admin/campaigns_edit.html", context, status_code=status_code)


@router.get("")
def campaigns_page(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    require(staff, "view")
    lang = i18n.negotiate(request)
    with db.unit_of_work() as session:
        service.sync(session, now=clock.now())
        zone = str(_zone(session, clock.now()))
        rows = service.list_campaigns(session)
        counts = service.counts(session, [r.campaign_id for r in rows])
        items = []
        for row in rows:
            data = service.definition(row)
            by_status = counts[row.campaign_id]["status"]
            total = sum(by_status.values())
            done = total - by_status.get("pending", 0)
            items.append(
                {
                    "id": row.campaign_id,
                    "name": name_in(data.name, lang),
                    "source": row.source,
                    "status": row.status,
                    "enabled": data.enabled,
                    "starts_at": data.starts_at,
                    "ends_at": data.ends_at,
                    "priority": data.priority,
                    "audience": row.audience_size,
                    "progress": round(100 * done / total) if total else None,
                }
            )
    return show(request, staff, "admin/campaigns.html", {"items": items, "zone": zone})


@router.get("/new")
def new_page(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    require(staff, "marketing")
    with db.unit_of_work(write=False) as session:
        zone = _zone(session, clock.now())
    return _editor(request, db, clock, staff, _blank(clock.now(), zone))


def _run_preview(
    request: Request, db: DbDep, clock: ClockDep, values: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    try:
        with db.unit_of_work(write=False) as session:
            data = service.parse(definition_from(values, _zone(session, clock.now())))
            service.check_references(session, data, now=clock.now())
            p = service.preview(session, data)
    except LealtaError as exc:
        area, text = _problem(request, exc)
        return None, {area: text}
    return {"count": p.count, "arms": p.arms, "sample": p.sample}, {}


@router.post("/preview")
async def preview_fragment(
    request: Request, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    """The live audience count: an HTML fragment for the editor's preview box."""
    require(staff, "view")
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    result, errors = _run_preview(request, db, clock, values_from(form))
    return render(
        request,
        "admin/campaigns_preview.html",
        {"preview": result, "preview_errors": errors, "staff": staff},
        language=i18n.negotiate(request),
    )


async def _save(
    request: Request, db: DbDep, clock: ClockDep, staff: Staff, campaign_id: str | None
) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    values = values_from(form)
    if campaign_id is not None:
        values["id"] = campaign_id
    if str(form.get("action", "save")) == "preview":
        result, errors = _run_preview(request, db, clock, values)
        return _editor(
            request, db, clock, staff, values, campaign_id=campaign_id, errors=errors,
            preview=result, status_code=422 if errors else 200,
        )  # fmt: skip
    _ = translator(request)
    if not values["id"]:
        return _editor(
            request, db, clock, staff, values, campaign_id=campaign_id,
            errors={"id": _("Give the campaign an id (lowercase letters, digits and dashes).")},
            status_code=422,
        )  # fmt: skip
    try:
        with db.unit_of_work() as session:
            data = service.parse(definition_from(values, _zone(session, clock.now())))
            if campaign_id is None:
                service.create(session, data, actor=staff.actor, now=clock.now())
            else:
                service.update_campaign(
                    session, campaign_id, data, actor=staff.actor, now=clock.now()
                )
    except LealtaError as exc:
        area, text = _problem(request, exc)
        return _editor(
            request, db, clock, staff, values, campaign_id=campaign_id, errors={area: text},
            status_code=422,
        )  # fmt: skip
    request.session[FLASH] = {
        "kind": "ok",
        "text": "Campaign %(key)s saved.",
        "values": {"key": data.id},
    }
    return RedirectResponse(f"/admin/campaigns/{data.id}", status_code=303)


@router.post("")
async def create_campaign(
    request: Request, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    require(staff, "marketing")
    return await _save(request, db, clock, staff, None)


def _detail(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: Staff,
    campaign_id: str,
    *,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    lang = i18n.negotiate(request)
    with db.unit_of_work(write=False) as session:
        row = service.get(session, campaign_id)
        data = service.definition(row)
        counts = service.counts(session, [campaign_id])[campaign_id]
        zone = str(_zone(session, clock.now()))
    total = sum(counts["status"].values())
    statuses = [s for s in RECIPIENT_STATUSES if counts["status"].get(s)]
    context = {
        "row": row,
        "data": data,
        "name": name_in(data.name, lang),
        "counts": counts["status"],
        "arms": counts["arms"],
        "statuses": statuses,
        "total": total,
        "problem": problem,
        "editable": row.source == "api"
        and row.status == "scheduled"
        and not row.detail.get("launch_requested_at"),
        "launch_requested": bool(row.detail.get("launch_requested_at")),
        "zone": zone,
    }
    return show(request, staff, "admin/campaign.html", context, status_code=status_code)


@router.get("/{campaign_id}")
def campaign_page(
    request: Request, campaign_id: str, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    require(staff, "view")
    return _detail(request, db, clock, staff, campaign_id)


@router.get("/{campaign_id}/edit")
def edit_page(
    request: Request, campaign_id: str, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    require(staff, "marketing")
    with db.unit_of_work(write=False) as session:
        row = service.get(session, campaign_id)
        values = values_of(dict(row.definition), _zone(session, clock.now()))
    return _editor(request, db, clock, staff, values, campaign_id=campaign_id)


@router.post("/{campaign_id}/edit")
async def update_campaign(
    request: Request, campaign_id: str, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    require(staff, "marketing")
    return await _save(request, db, clock, staff, campaign_id)


ACTIONS = {
    "launch": (
        service.request_launch,
        "Campaign %(key)s is launching: its audience is being drawn.",
    ),
    "pause": (service.pause, "Campaign %(key)s paused."),
    "resume": (service.resume, "Campaign %(key)s resumed."),
    "cancel": (service.cancel, "Campaign %(key)s cancelled."),
}


@router.post("/{campaign_id}/{action}")
def campaign_action(
    request: Request,
    campaign_id: str,
    action: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: str = Form("", max_length=200),
) -> Response:
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    if action == "delete":
        operation: Any = service.remove
        text = "Campaign %(key)s deleted."
    elif action in ACTIONS:
        operation, text = ACTIONS[action]
    else:
        return error_page(request, status_code=404, code="not_found", message="Not found.")
    try:
        with db.unit_of_work() as session:
            operation(session, campaign_id, actor=staff.actor, now=clock.now())
    except LealtaError as exc:
        if exc.code == "campaign_not_found":
            raise
        _, message = _problem(request, exc)
        if exc.code == "campaign_status":
            _ = translator(request)
            message = _("Not possible now: the campaign is %(status)s.", status=exc.message)
        return _detail(request, db, clock, staff, campaign_id, problem=message, status_code=409)
    request.session[FLASH] = {"kind": "ok", "text": text, "values": {"key": campaign_id}}
    target = "/admin/campaigns" if action == "delete" else f"/admin/campaigns/{campaign_id}"
    return RedirectResponse(target, status_code=303)


# --- the tracking link ---------------------------------------------------------------------


# A transparent 1x1 GIF.
_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


@link_router.get("/c/{token}/open.gif")
def open_pixel(token: str, db: DbDep, clock: ClockDep, settings: SettingsDep) -> Response:
    """A campaign e-mail's image: record the opening. The image answers whatever the token
    (an unknown one records nothing), and is never cached, so that each opening asks again."""
    with db.unit_of_work() as session:
        service.record_open(session, settings, token, now=clock.now())
    return Response(_PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, private"})


@link_router.get("/c/{token}")
def follow_link(
    request: Request, token: str, db: DbDep, clock: ClockDep, settings: SettingsDep
) -> Response:
    """A campaign e-mail's link: record the click, then open the member's space."""
    with db.unit_of_work() as session:
        known = service.record_click(session, settings, token, now=clock.now())
    if not known:
        _ = i18n.gettext_for(i18n.negotiate(request))
        return error_page(
            request, status_code=404, code="campaign_link_invalid",
            message=_("This link is not valid or has expired."),
        )  # fmt: skip
    return RedirectResponse("/me", status_code=303)
