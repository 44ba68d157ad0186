"""Surveys for members: the list and form in the cockpit (``/me/surveys``) and the same form
on a signed public page (``/s/<token>``) reached from an e-mail without signing in.

Both post back to themselves; a form with problems is shown again with the member's answers
and a message per question (422), and a completed survey thanks the member with the points
earned. One response per member and survey: a second submit lands on the thank-you state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from babel.numbers import format_decimal
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from lealta.kit.clock import Clock
from lealta.kit.db import Database
from lealta.kit.errors import Conflict
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.models import Member, Survey
from lealta.programme import service as programmes
from lealta.programme.schema import name_in
from lealta.surveys import service
from lealta.surveys.maths import AnswersInvalid
from lealta.surveys.schema import Question, SurveyIn
from lealta.web import i18n
from lealta.web.cockpit.present import Gettext
from lealta.web.cockpit.routes import MemberDep, csrf, flash, gettext, language, page
from lealta.web.templating import render

router = APIRouter(include_in_schema=False)

FIELD_PREFIX = "q_"
MAX_FIELDS = 40


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form as plain strings (answers are ``q_<question id>``), bounded."""
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    return {k: v for k, v in form.items() if isinstance(v, str)}


FormDep = Annotated[dict[str, str], Depends(form_fields)]


def _answers(fields: dict[str, str]) -> dict[str, str]:
    return {
        k.removeprefix(FIELD_PREFIX): v for k, v in fields.items() if k.startswith(FIELD_PREFIX)
    }


def problem_text(_: Gettext, question: Question, code: str) -> str:
    """The message of an answer problem, in the page's language."""
    if code == "required":
        return _("This question needs an answer.")
    if code == "out_of_range":
        low, high = (0, 10) if question.kind == "nps" else (1, question.scale)
        return _("Choose a number from %(low)s to %(high)s.", low=low, high=high)
    if code == "too_long":
        return _("Write at most %(n)s characters.", n=question.max_length)
    return _("Choose one of the options.")


def _view(data: SurveyIn, lang: str) -> dict[str, Any]:
    return {
        "name": name_in(data.name, lang),
        "intro": name_in(data.intro, lang) if data.intro is not None else None,
        "questions": [
            {
                "id": q.id,
                "kind": q.kind,
                "label": name_in(q.label, lang),
                "required": q.required,
                "scale_values": list(range(0, 11))
                if q.kind == "nps"
                else list(range(1, q.scale + 1))
                if q.kind == "rating"
                else [],
                "choices": [(c.id, name_in(c.label, lang)) for c in q.choices],
                "max_length": q.max_length,
            }
            for q in data.questions
        ],
    }


def _form_context(
    survey: Survey,
    data: SurveyIn,
    lang: str,
    _: Gettext,
    *,
    action: str,
    values: dict[str, str] | None = None,
    exc: AnswersInvalid | None = None,
) -> dict[str, Any]:
    errors: dict[str, str] = {}
    if exc is not None:
        for p in exc.problems:
            question = data.question(p.question)
            if question is not None:
                errors[p.question] = problem_text(_, question, p.code)
    return {
        "survey": _view(data, lang),
        "points": survey.points,
        "action": action,
        "values": values or {},
        "errors": errors,
    }


# --- the cockpit ------------------------------------------------------------------------------


@router.get("/me/surveys")
def surveys_page(request: Request, member: MemberDep, db: DbDep, clock: ClockDep) -> Response:
    lang = language(request, member)
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        rows = service.list_surveys(session, status="open")
        done = service.answered_keys(session, member.id)
        items = []
        for survey in rows:
            data = service.definition(survey)
            if survey.id not in done and not service.is_open(survey, data, now):
                continue
            items.append(
                {
                    "key": survey.key,
                    "name": name_in(data.name, lang),
                    "intro": name_in(data.intro, lang) if data.intro is not None else None,
                    "points": survey.points,
                    "questions": len(data.questions),
                    "answered": survey.id in done,
                }
            )
    return page(request, "cockpit/surveys.html", member, {"here": "surveys", "items": items})


def _open_for(db: Database, key: str, member: Member) -> tuple[Survey, SurveyIn, bool]:
    with db.unit_of_work(write=False) as session:
        survey = service.get(session, key)
        data = service.definition(survey)
        done = service.answered(session, survey.id, member.id) is not None
    return survey, data, done


@router.get("/me/surveys/{key}")
def survey_form(
    request: Request, key: str, member: MemberDep, db: DbDep, clock: ClockDep
) -> Response:
    survey, data, done = _open_for(db, key[:64], member)
    _ = gettext(request, member)
    if done or not service.is_open(survey, data, clock.now()):
        flash(
            request,
            _("You have already answered this survey. Thank you!")
            if done
            else _("This survey is closed."),
            "ok" if done else "error",
        )
        return RedirectResponse("/me/surveys", status_code=303)
    lang = language(request, member)
    context = _form_context(survey, data, lang, _, action=f"/me/surveys/{survey.key}")
    return page(request, "cockpit/survey.html", member, {"here": "surveys", **context})


@router.post("/me/surveys/{key}")
def answer_in_cockpit(
    request: Request,
    key: str,
    member: MemberDep,
    db: DbDep,
    clock: ClockDep,
    fields: FormDep,
) -> Response:
    csrf(request, fields.get("csrf_token", ""), member)
    _ = gettext(request, member)
    lang = language(request, member)
    values = _answers(fields)
    try:
        points = _answer(db, clock, key[:64], member.id, values, channel="cockpit")
    except AnswersInvalid as exc:
        survey, data, _done = _open_for(db, key[:64], member)
        context = _form_context(
            survey, data, lang, _, action=f"/me/surveys/{survey.key}", values=values, exc=exc
        )
        return page(
            request,
            "cockpit/survey.html",
            member,
            {"here": "surveys", "page_url": f"/me/surveys/{survey.key}", **context},
            status_code=422,
        )
    except Conflict as exc:
        flash(request, _conflict_text(_, exc), "ok" if exc.code != "survey_closed" else "error")
        return RedirectResponse("/me/surveys", status_code=303)
    flash(request, _thanks(_, points, lang))
    return RedirectResponse("/me/surveys", status_code=303)


def _answer(
    db: Database,
    clock: Clock,
    key: str,
    member_id: int,
    values: dict[str, str],
    *,
    channel: Any,
) -> int:
    with db.unit_of_work() as session:
        now = clock.now()
        survey = service.get(session, key)
        member = session.get(Member, member_id)
        assert member is not None
        programme = programmes.current(session, now=now)
        response = service.answer(
            session, survey, member, values, channel=channel, now=now, programme=programme
        )
        return response.points


def _conflict_text(_: Gettext, exc: Conflict) -> str:
    if exc.code == "survey_already_answered":
        return _("You have already answered this survey. Thank you!")
    return _("This survey is closed.")


def _thanks(_: Gettext, points: int, lang: str) -> str:
    if points:
        return _(
            "Thank you for your answers! You have earned %(points)s points.",
            points=format_decimal(points, locale=lang),
        )
    return _("Thank you for your answers!")


# --- the signed public page -----------------------------------------------------------------


def _public(
    request: Request, name: str, lang: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    response = render(
        request, name, {"member": None, **context}, language=lang, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _link_target(
    db: Database, settings: Any, token: str, now: datetime
) -> tuple[Survey, SurveyIn, Member, bool]:
    key, member_id = service.read_link(settings.secret_key, token, now=now)
    with db.unit_of_work(write=False) as session:
        survey = service.get(session, key)
        member = session.get(Member, member_id)
        if member is None:
            raise service.LinkInvalid("This survey link is not valid.")
        done = service.answered(session, survey.id, member.id) is not None
        return survey, service.definition(survey), member, done


def _status_of(exc: Exception) -> int:
    return 400 if isinstance(exc, service.LinkInvalid) else 404


def _link_problem(request: Request, lang: str, exc: Exception, status_code: int) -> Response:
    _ = i18n.gettext_for(lang)
    code = getattr(exc, "code", "")
    text = {
        "survey_link_expired": _("This survey link has expired."),
        "survey_not_found": _("This survey no longer exists."),
        "survey_closed": _("This survey is closed."),
        "survey_already_answered": _("You have already answered this survey. Thank you!"),
    }.get(code, _("This survey link is not valid."))
    ok = code == "survey_already_answered"
    return _public(
        request,
        "cockpit/survey_done.html",
        lang,
        {"title": _("Thank you!") if ok else _("Survey"), "text": text, "ok": ok},
        status_code=200 if ok else status_code,
    )


@router.get("/s/{token}")
def public_form(
    request: Request, token: str, db: DbDep, clock: ClockDep, settings: SettingsDep
) -> Response:
    now = clock.now()
    lang = i18n.negotiate(request)
    try:
        survey, data, member, done = _link_target(db, settings, token[:500], now)
    except (service.LinkInvalid, service.SurveyNotFound) as exc:
        return _link_problem(
            request, lang, exc, 400 if isinstance(exc, service.LinkInvalid) else 404
        )
    lang = i18n.negotiate(request, member.language)
    _ = i18n.gettext_for(lang)
    if done:
        return _link_problem(request, lang, service.AlreadyAnswered(""), 200)
    if not service.is_open(survey, data, now):
        return _link_problem(request, lang, service.SurveyClosed(""), 409)
    context = _form_context(survey, data, lang, _, action=f"/s/{token}")
    return _public(request, "cockpit/survey.html", lang, context)


@router.post("/s/{token}")
def answer_by_link(
    request: Request,
    token: str,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    fields: FormDep,
) -> Response:
    now = clock.now()
    lang = i18n.negotiate(request)
    try:
        survey, data, member, _done = _link_target(db, settings, token[:500], now)
    except (service.LinkInvalid, service.SurveyNotFound) as exc:
        return _link_problem(
            request, lang, exc, 400 if isinstance(exc, service.LinkInvalid) else 404
        )
    lang = i18n.negotiate(request, member.language)
    _ = i18n.gettext_for(lang)
    csrf(request, fields.get("csrf_token", ""), member)
    values = _answers(fields)
    try:
        points = _answer(db, clock, survey.key, member.id, values, channel="link")
    except AnswersInvalid as exc:
        context = _form_context(survey, data, lang, _, action=f"/s/{token}", values=values, exc=exc)
        return _public(
            request, "cockpit/survey.html", lang, {"page_url": f"/s/{token}", **context}, 422
        )
    except Conflict as exc:
        return _link_problem(request, lang, exc, 409)
    return _public(
        request,
        "cockpit/survey_done.html",
        lang,
        {"title": _("Thank you!"), "text": _thanks(_, points, lang), "ok": True},
    )
