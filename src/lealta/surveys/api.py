"""``/v1/surveys``: define surveys, answer them for a member, read responses and summaries,
and make the signed link that lets a member answer from an e-mail without signing in."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime
from sqlalchemy import select
from sqlalchemy.orm import Session

from lealta.apikeys.deps import Reader, Writer
from lealta.kit.errors import InvalidInput
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    IdempotencyKey,
    RequiredIdempotencyKey,
    SettingsDep,
    replayable,
    respond,
)
from lealta.kit.idempotency import check_key, run_maybe_once, run_once
from lealta.kit.ids import ExternalId
from lealta.kit.pagination import decode_cursor, encode_cursor
from lealta.members import service as members
from lealta.models import Member, Survey, SurveyResponse
from lealta.programme import service as programmes
from lealta.programme.schema import Slug
from lealta.surveys import service
from lealta.surveys.schema import SurveyIn
from lealta.surveys.schemas import (
    AnswerIn,
    LinkOut,
    QuestionSummaryOut,
    ResponseOut,
    ResponsePage,
    SummaryGroup,
    SummaryOut,
    SurveyList,
    SurveyOut,
)

router = APIRouter(prefix="/v1/surveys", tags=["surveys"], responses=ERROR_RESPONSES)


def survey_out(survey: Survey, responses: int, now: datetime) -> SurveyOut:
    data = service.definition(survey)
    return SurveyOut(
        key=survey.key,
        status=survey.status,
        points=survey.points,
        accepting_answers=service.is_open(survey, data, now),
        responses=responses,
        definition=data,
        created_at=survey.created_at,
        updated_at=survey.updated_at,
        closed_at=survey.closed_at,
    )


@router.get("", response_model=SurveyList, summary="List surveys")
def list_surveys(
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    status: Annotated[Literal["open", "closed"] | None, Query()] = None,
) -> SurveyList:
    """Newest first (at most 500), with each survey's response count."""
    with db.unit_of_work(write=False) as session:
        rows = service.list_surveys(session, status=status)
        counts = service.response_counts(session, [s.id for s in rows])
        now = clock.now()
        return SurveyList(items=[survey_out(s, counts.get(s.id, 0), now) for s in rows])


@router.post(
    "",
    status_code=201,
    response_model=SurveyOut,
    summary="Create a survey",
    responses=replayable(SurveyOut),
)
def create_survey(
    data: SurveyIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Questions of kind `nps`, `rating`, `choice` or `text`; `points` are credited once when
    a member completes it. A key already used is `409 survey_exists`."""
    with db.unit_of_work() as session:
        now = clock.now()

        def effect() -> tuple[int, dict[str, object]]:
            survey = service.create(session, data, actor=principal.actor, now=now)
            return 201, survey_out(survey, 0, now).model_dump(mode="json")

        outcome = run_maybe_once(
            session, scope="survey.create", key=idempotency_key,
            payload=data.model_dump(mode="json"), now=now, effect=effect,
        )  # fmt: skip
    return respond(outcome)


@router.get("/{key}", response_model=SurveyOut, summary="Get a survey")
def get_survey(key: Slug, principal: Reader, db: DbDep, clock: ClockDep) -> SurveyOut:
    with db.unit_of_work(write=False) as session:
        survey = service.get(session, key)
        count = service.response_counts(session, [survey.id]).get(survey.id, 0)
        return survey_out(survey, count, clock.now())


@router.put("/{key}", response_model=SurveyOut, summary="Replace a survey's definition")
def update_survey(
    key: Slug, data: SurveyIn, principal: Writer, db: DbDep, clock: ClockDep
) -> SurveyOut:
    """Once a member has answered, the questions are fixed (`409 survey_answered`); names,
    intro, dates and points may still change. Idempotent by nature (a replacement)."""
    with db.unit_of_work() as session:
        now = clock.now()
        survey = service.update(session, key, data, actor=principal.actor, now=now)
        count = service.response_counts(session, [survey.id]).get(survey.id, 0)
        return survey_out(survey, count, now)


@router.post("/{key}/close", response_model=SurveyOut, summary="Stop taking answers")
def close_survey(key: Slug, principal: Writer, db: DbDep, clock: ClockDep) -> SurveyOut:
    return _set_status(key, "closed", principal.actor, db, clock.now())


@router.post("/{key}/reopen", response_model=SurveyOut, summary="Take answers again")
def reopen_survey(key: Slug, principal: Writer, db: DbDep, clock: ClockDep) -> SurveyOut:
    return _set_status(key, "open", principal.actor, db, clock.now())


def _set_status(
    key: str, status: Literal["open", "closed"], actor: str, db: DbDep, now: datetime
) -> SurveyOut:
    with db.unit_of_work() as session:
        survey = service.set_status(session, key, status, actor=actor, now=now)
        count = service.response_counts(session, [survey.id]).get(survey.id, 0)
        return survey_out(survey, count, now)


@router.post(
    "/{key}/responses",
    status_code=201,
    response_model=ResponseOut,
    summary="Record a member's answers",
    responses=replayable(ResponseOut),
)
def answer_survey(
    key: Slug,
    data: AnswerIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    """For answers collected by the shop itself. One response per member and survey
    (`409 survey_already_answered`); the survey's points are credited in the same
    transaction. Requires an `Idempotency-Key`."""
    idem = check_key(idempotency_key)
    with db.unit_of_work() as session:
        now = clock.now()
        survey = service.get(session, key)
        member = members.get(session, data.member)
        programme = programmes.current(session, now=now)

        def effect() -> tuple[int, dict[str, object]]:
            response = service.answer(
                session, survey, member, data.answers, channel="api", now=now,
                programme=programme,
            )  # fmt: skip
            return 201, _response_out(session, survey, member, response).model_dump(mode="json")

        outcome = run_once(
            session, scope=f"survey.answer:{survey.id}", key=idem,
            payload=data.model_dump(mode="json"), now=now, effect=effect,
        )  # fmt: skip
    return respond(outcome)


def _response_out(
    session: Session, survey: Survey, member: Member, response: SurveyResponse
) -> ResponseOut:
    return ResponseOut(
        id=response.id,
        survey=survey.key,
        member=member.external_id,
        channel=response.channel,
        points=response.points,
        ledger_entry_id=response.ledger_entry_id,
        tier=response.tier_id,
        answered_at=response.answered_at,
        answers=service.answers_of(session, response.id),
    )


@router.get("/{key}/responses", response_model=ResponsePage, summary="List responses")
def list_responses(
    key: Slug,
    principal: Reader,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ResponsePage:
    """Newest first; pass `next_cursor` back as `cursor`."""
    with db.unit_of_work(write=False) as session:
        survey = service.get(session, key)
        stmt = (
            select(SurveyResponse, Member)
            .join(Member, Member.id == SurveyResponse.member_id)
            .where(SurveyResponse.survey_id == survey.id)
        )
        if cursor:
            at, row_id = decode_cursor(cursor)
            stmt = stmt.where(
                (SurveyResponse.answered_at < at)
                | ((SurveyResponse.answered_at == at) & (SurveyResponse.id < row_id))
            )
        rows = session.execute(
            stmt.order_by(SurveyResponse.answered_at.desc(), SurveyResponse.id.desc()).limit(
                limit + 1
            )
        ).all()
        items = [_response_out(session, survey, m, r) for r, m in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1][0]
            next_cursor = encode_cursor(last.answered_at, last.id)
        return ResponsePage(items=items, next_cursor=next_cursor)


@router.get("/{key}/summary", response_model=SummaryOut, summary="Answer summaries and NPS")
def survey_summary(
    key: Slug,
    principal: Reader,
    db: DbDep,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    by: Annotated[Literal["all", "tier", "month"], Query()] = "all",
) -> SummaryOut:
    """Each question summarised over answers in `[from, to)`: NPS (promoters 9-10,
    passives 7-8, detractors 0-6; score = % promoters - % detractors), mean and distribution
    of ratings, counts per choice, number of texts. `by=tier` groups by the member's tier
    when they answered, `by=month` by calendar month (UTC)."""
    if start is not None and end is not None and end <= start:
        raise InvalidInput("`to` must be after `from`.", code="invalid_period")
    with db.unit_of_work(write=False) as session:
        survey = service.get(session, key)
        groups = service.summary(session, survey, start=start, end=end, by=by)
    return SummaryOut(
        survey=key,
        by=by,
        start=start,
        end=end,
        groups=[
            SummaryGroup(group=g, questions=[QuestionSummaryOut.of(q) for q in qs])
            for g, qs in sorted(groups.items(), key=lambda kv: kv[0] or "")
        ],
    )


@router.get("/{key}/link", response_model=LinkOut, summary="A member's signed answer link")
def survey_link(
    key: Slug,
    member: Annotated[ExternalId, Query()],
    principal: Writer,
    db: DbDep,
    settings: SettingsDep,
) -> LinkOut:
    """A link that lets this member answer this survey without signing in (for an e-mail or
    a workflow message). It names the member: send it to them only."""
    with db.unit_of_work(write=False) as session:
        survey = service.get(session, key)
        found = members.get(session, member)
        token = service.link_token(settings.secret_key, survey, found)
    base = settings.public_url.rstrip("/")
    return LinkOut(url=f"{base}/s/{token}", expires_in_days=service.LINK_MAX_AGE // 86400)
