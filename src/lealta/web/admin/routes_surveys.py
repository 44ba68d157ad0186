"""The console's Surveys pages: the list with a form to add a survey (YAML or JSON, checked
with every problem's path), and each survey's results: NPS and answer summaries for a period,
for everyone, per tier or per month, with CSV export, close / reopen, and a member's signed
answer link."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.members import service as members
from lealta.programme.schema import name_in
from lealta.staff.service import Staff, require
from lealta.surveys import service
from lealta.surveys.maths import QuestionSummary
from lealta.surveys.schema import SurveyIn
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import FLASH, show
from lealta.web.admin.routes_ops_common import translator
from lealta.web.security import check_csrf

router = APIRouter(prefix="/admin/surveys", include_in_schema=False)

EXAMPLE = """key: satisfaction-2027
name: {es: "¿Qué tal tu experiencia?", en: "How was your experience?"}
points: 50
questions:
  - id: recommend
    kind: nps
    label: {es: "¿Nos recomendarías a un amigo?", en: "Would you recommend us to a friend?"}
  - id: delivery
    kind: rating
    scale: 5
    label: {es: "Valora la entrega", en: "Rate the delivery"}
  - id: channel
    kind: choice
    label: {es: "¿Dónde compras más?", en: "Where do you shop most?"}
    choices:
      - {id: web, label: {es: Web, en: Web}}
      - {id: shop, label: {es: Tienda, en: Shop}}
  - id: comments
    kind: text
    required: false
    label: {es: "¿Algo más?", en: "Anything else?"}
"""
GROUPS = ("all", "tier", "month")


def _list(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: Staff,
    *,
    text: str = EXAMPLE,
    problems: list[dict[str, str]] | None = None,
    status_code: int = 200,
) -> Response:
    lang = i18n.negotiate(request)
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        rows = service.list_surveys(session)
        counts = service.response_counts(session, [s.id for s in rows])
        items = []
        for survey in rows:
            data = service.definition(survey)
            items.append(
                {
                    "key": survey.key,
                    "name": name_in(data.name, lang),
                    "status": survey.status,
                    "open": service.is_open(survey, data, now),
                    "points": survey.points,
                    "questions": len(data.questions),
                    "responses": counts.get(survey.id, 0),
                }
            )
    context = {"items": items, "text": text, "problems": problems or []}
    return show(request, staff, "admin/surveys.html", context, status_code=status_code)


@router.get("")
def surveys_page(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    require(staff, "view")
    return _list(request, db, clock, staff)


@router.post("")
def add_survey(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    definition: Annotated[str, Form(max_length=100_000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    try:
        data = service.parse(definition)
        with db.unit_of_work() as session:
            service.create(session, data, actor=staff.actor, now=clock.now())
    except LealtaError as exc:
        problems = exc.details if isinstance(exc.details, list) else []
        if not problems:
            problems = [{"path": "key", "message": _explain(request, exc)}]
        return _list(request, db, clock, staff, text=definition, problems=problems, status_code=422)
    request.session[FLASH] = {
        "kind": "ok",
        "text": "Survey %(key)s added.",
        "values": {"key": data.key},
    }
    return RedirectResponse(f"/admin/surveys/{data.key}", status_code=303)


def _explain(request: Request, exc: LealtaError) -> str:
    _ = translator(request)
    known = {
        "survey_exists": _("A survey with this key exists already."),
        "survey_not_found": _("No survey has this key."),
        "member_not_found": _("No member has this id."),
    }
    return known.get(exc.code, exc.message)


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _period(start: str, end: str) -> tuple[datetime | None, datetime | None, str | None]:
    """[from day 00:00 UTC, to day + 1 00:00 UTC); an unreadable or reversed period is
    reported (and ignored)."""
    first, last = _day(start[:10]), _day(end[:10])
    error = None
    if (start and first is None) or (end and last is None):
        error = "bad_date"
    elif first and last and last < first:
        error = "reversed"
        first = last = None
    begin = datetime.combine(first, time(), tzinfo=UTC) if first else None
    finish = datetime.combine(last, time(), tzinfo=UTC) + timedelta(days=1) if last else None
    return begin, finish, error


def _results(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: Staff,
    key: str,
    *,
    start: str,
    end: str,
    by: str,
    link: str | None = None,
    link_error: str | None = None,
    status_code: int = 200,
) -> Response:
    lang = i18n.negotiate(request)
    _ = i18n.gettext_for(lang)
    group: Literal["all", "tier", "month"] = by if by in GROUPS else "all"  # type: ignore[assignment]
    begin, finish, period_error = _period(start, end)
    with db.unit_of_work(write=False) as session:
        survey = service.get(session, key)
        data = service.definition(survey)
        groups = service.summary(session, survey, start=begin, end=finish, by=group)
        count = service.response_counts(session, [survey.id]).get(survey.id, 0)
        texts = {
            q.id: service.latest_texts(session, survey, q.id, limit=10)
            for q in data.questions
            if q.kind == "text"
        }
    context: dict[str, Any] = {
        "survey": survey,
        "data": data,
        "name": name_in(data.name, lang),
        "open": service.is_open(survey, data, clock.now()),
        "responses": count,
        "labels": _labels(data, lang),
        "groups": sorted(groups.items(), key=lambda kv: kv[0] or ""),
        "texts": texts,
        "start": start[:10],
        "end": end[:10],
        "by": group,
        "period_error": _("Dates are written YYYY-MM-DD, and the end comes after the start.")
        if period_error
        else None,
        "link": link,
        "link_error": link_error,
        "page_url": f"/admin/surveys/{survey.key}",
    }
    return show(request, staff, "admin/survey.html", context, status_code=status_code)


def _labels(data: SurveyIn, lang: str) -> dict[str, Any]:
    return {
        q.id: {
            "label": name_in(q.label, lang),
            "choices": {c.id: name_in(c.label, lang) for c in q.choices},
        }
        for q in data.questions
    }


@router.get("/{key}")
def survey_page(
    request: Request,
    key: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    start: Annotated[str, Query(alias="from", max_length=40)] = "",
    end: Annotated[str, Query(alias="to", max_length=40)] = "",
    by: Annotated[str, Query(max_length=10)] = "all",
) -> Response:
    require(staff, "view")
    return _results(request, db, clock, staff, key[:64], start=start, end=end, by=by[:8])


@router.get("/{key}/summary.csv")
def summary_csv(
    key: str,
    db: DbDep,
    staff: StaffDep,
    start: Annotated[str, Query(alias="from", max_length=40)] = "",
    end: Annotated[str, Query(alias="to", max_length=40)] = "",
    by: Annotated[str, Query(max_length=10)] = "all",
) -> Response:
    """Every question's figures as rows: group, question, kind, answers, value, count,
    percent, mean, NPS."""
    require(staff, "view")
    begin, finish, _error = _period(start, end)
    group: Literal["all", "tier", "month"] = by if by in GROUPS else "all"  # type: ignore[assignment]
    with db.unit_of_work(write=False) as session:
        survey = service.get(session, key[:64])
        groups = service.summary(session, survey, start=begin, end=finish, by=group)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["group", "question", "kind", "answers", "value", "count", "percent", "mean", "nps"]
    )
    for name, summaries in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        for s in summaries:
            for row in _csv_rows(name, s):
                writer.writerow(row)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="survey-{survey.key}.csv"',
            "Cache-Control": "no-store",
        },
    )


def _csv_rows(group: str | None, s: QuestionSummary) -> list[list[Any]]:
    score = s.nps.score if s.nps is not None else ""
    mean = s.mean if s.mean is not None else ""
    head = [group or "all", s.question, s.kind, s.answers]
    if not s.distribution:
        return [[*head, "", "", "", mean, score]]
    return [
        [*head, value, count, s.percents.get(value, ""), mean, score]
        for value, count in s.distribution.items()
    ]


@router.post("/{key}/status")
def change_status(
    request: Request,
    key: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    status: Annotated[str, Form(max_length=10)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    chosen: Literal["open", "closed"] = "closed" if status == "closed" else "open"
    with db.unit_of_work() as session:
        service.set_status(session, key[:64], chosen, actor=staff.actor, now=clock.now())
    text = "The survey is closed." if chosen == "closed" else "The survey takes answers again."
    request.session[FLASH] = {"kind": "ok", "text": text, "values": {}}
    return RedirectResponse(f"/admin/surveys/{key[:64]}", status_code=303)


@router.post("/{key}/link")
def member_link(
    request: Request,
    key: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    settings: SettingsDep,
    member: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A member's signed answer link, to paste into a message."""
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    try:
        with db.unit_of_work(write=False) as session:
            survey = service.get(session, key[:64])
            found = members.get(session, member.strip())
            token = service.link_token(settings.secret_key, survey, found)
    except LealtaError as exc:
        if exc.code == "survey_not_found":
            raise
        return _results(
            request, db, clock, staff, key[:64], start="", end="", by="all",
            link_error=_explain(request, exc), status_code=422,
        )  # fmt: skip
    link = f"{settings.public_url.rstrip('/')}/s/{token}"
    return _results(request, db, clock, staff, key[:64], start="", end="", by="all", link=link)
