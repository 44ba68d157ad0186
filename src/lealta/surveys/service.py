"""Surveys at the database edge: definitions, answers (once per member, points on
completion, in one transaction), signed answer links and summaries by ``GROUP BY``.

The checks and the maths are in :mod:`lealta.surveys.maths`; this module reads and writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import yaml
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.kit.errors import Conflict, LealtaError, NotFound
from lealta.ledger import operations as ledger_ops
from lealta.models import Account, Member, Survey, SurveyAnswer, SurveyResponse
from lealta.outbox import service as outbox
from lealta.outbox.events import SurveyAnswered
from lealta.programme.schema import Programme, name_in
from lealta.surveys.maths import (
    Answer,
    QuestionSummary,
    Tally,
    check_answers,
    empty_summary,
    summarise,
)
from lealta.surveys.schema import SurveyIn

LINK_SALT = "lealta.survey-link"
LINK_MAX_AGE = 60 * 60 * 24 * 60
"""A survey link works for 60 days (long enough for an e-mail read late)."""
LIST_LIMIT = 500
GroupBy = Literal["all", "tier", "month"]


class SurveyNotFound(NotFound):
    code = "survey_not_found"


class SurveyClosed(Conflict):
    code = "survey_closed"


class AlreadyAnswered(Conflict):
    code = "survey_already_answered"


class LinkInvalid(LealtaError):
    status_code = 400
    code = "survey_link_invalid"


def definition(survey: Survey) -> SurveyIn:
    return SurveyIn.model_validate(survey.definition)


def get(session: Session, key: str) -> Survey:
    survey = session.scalar(select(Survey).where(Survey.key == key))
    if survey is None:
        raise SurveyNotFound(f"No survey has the key {key!r}.")
    return survey


def list_surveys(session: Session, *, status: str | None = None) -> Sequence[Survey]:
    """Surveys newest first (at most :data:`LIST_LIMIT`)."""
    stmt = select(Survey).order_by(Survey.id.desc()).limit(LIST_LIMIT)
    if status is not None:
        stmt = stmt.where(Survey.status == status)
    return session.scalars(stmt).all()


def response_counts(session: Session, survey_ids: Sequence[int]) -> dict[int, int]:
    if not survey_ids:
        return {}
    rows = session.execute(
        select(SurveyResponse.survey_id, func.count())
        .where(SurveyResponse.survey_id.in_(survey_ids))
        .group_by(SurveyResponse.survey_id)
    )
    return {int(sid): int(n) for sid, n in rows}


def create(session: Session, data: SurveyIn, *, actor: str, now: datetime) -> Survey:
    if session.scalar(select(Survey.id).where(Survey.key == data.key)) is not None:
        raise Conflict(f"A survey with the key {data.key!r} exists.", code="survey_exists")
    survey = Survey(
        key=data.key,
        definition=data.model_dump(mode="json", exclude_none=True),
        points=data.points,
        status="open",
        created_at=now,
        updated_at=now,
        closed_at=None,
    )
    session.add(survey)
    session.flush()
    audit.record(
        session, actor=actor, action="survey.create", target_type="survey",
        target_id=data.key, now=now, details={"points": data.points},
    )  # fmt: skip
    return survey


def update(session: Session, key: str, data: SurveyIn, *, actor: str, now: datetime) -> Survey:
    """Replace the definition. Once answered, the questions are fixed (answers would no
    longer match them): only names, the intro, dates and points may change."""
    survey = get(session, key)
    if data.key != key:
        raise Conflict("The key of a survey cannot change.", code="survey_key_changed")
    answered = session.scalar(
        select(SurveyResponse.id).where(SurveyResponse.survey_id == survey.id).limit(1)
    )
    if answered is not None and _shape(definition(survey)) != _shape(data):
        raise Conflict(
            "Members have answered this survey: its questions can no longer change. "
            "Create a new survey instead.",
            code="survey_answered",
        )
    survey.definition = data.model_dump(mode="json", exclude_none=True)
    survey.points = data.points
    survey.updated_at = now
    audit.record(
        session, actor=actor, action="survey.update", target_type="survey",
        target_id=key, now=now, details={"points": data.points},
    )  # fmt: skip
    return survey


def _shape(data: SurveyIn) -> list[tuple[str, str, int, tuple[str, ...]]]:
    return [(q.id, q.kind, q.scale, tuple(c.id for c in q.choices)) for q in data.questions]


def set_status(
    session: Session, key: str, status: Literal["open", "closed"], *, actor: str, now: datetime
) -> Survey:
    survey = get(session, key)
    survey.status = status
    survey.closed_at = now if status == "closed" else None
    survey.updated_at = now
    audit.record(
        session, actor=actor, action=f"survey.{'close' if status == 'closed' else 'reopen'}",
        target_type="survey", target_id=key, now=now,
    )  # fmt: skip
    return survey


def is_open(survey: Survey, data: SurveyIn, now: datetime) -> bool:
    if survey.status != "open":
        return False
    if data.opens_at is not None and now < data.opens_at:
        return False
    return data.closes_at is None or now < data.closes_at


def answered(session: Session, survey_id: int, member_id: int) -> SurveyResponse | None:
    return session.scalar(
        select(SurveyResponse).where(
            SurveyResponse.survey_id == survey_id, SurveyResponse.member_id == member_id
        )
    )


def answered_keys(session: Session, member_id: int) -> set[int]:
    rows = session.scalars(
        select(SurveyResponse.survey_id).where(SurveyResponse.member_id == member_id)
    )
    return set(rows)


def answer(
    session: Session,
    survey: Survey,
    member: Member,
    raw: Mapping[str, Any],
    *,
    channel: Literal["cockpit", "link", "api"],
    now: datetime,
    programme: Programme,
    backfill: bool = False,
) -> SurveyResponse:
    """Record ``member``'s answers and credit the survey's points, all or nothing.

    Refused when the survey is closed (``survey_closed``), an answer is missing or out of
    range (``survey_answers_invalid``, every problem listed) or the member answered before
    (``survey_already_answered``, also when two submits race: the unique key decides).
    ``backfill`` marks answers loaded from the past (the demo), which fire no messages.
    """
    data = definition(survey)
    if not is_open(survey, data, now):
        raise SurveyClosed("This survey is closed.")
    checked = check_answers(data, raw)
    if answered(session, survey.id, member.id) is not None:
        raise AlreadyAnswered("You have already answered this survey. Thank you!")
    account = session.get(Account, member.id)
    response = SurveyResponse(
        survey_id=survey.id,
        member_id=member.id,
        tier_id=account.tier_id if account is not None else None,
        period=now.astimezone(UTC).strftime("%Y-%m"),
        channel=channel,
        points=survey.points,
        ledger_entry_id=None,
        answered_at=now,
    )
    try:
        with session.begin_nested():
            session.add(response)
            session.flush()
    except IntegrityError:
        raise AlreadyAnswered("You have already answered this survey. Thank you!") from None
    session.add_all(_answer_rows(survey.id, response.id, checked, data))
    session.flush()
    if survey.points > 0:
        result = ledger_ops.award(
            session,
            member.external_id,
            points=survey.points,
            reason=name_in(data.name, "es")[:200],
            actor=f"survey:{survey.key}",
            source_type="survey",
            source_ref=survey.key,
            now=now,
            programme=programme,
            backfill=backfill,
        )
        response.ledger_entry_id = result.entry.id
    nps_question = next((q for q in data.questions if q.kind == "nps"), None)
    score = checked.get(nps_question.id) if nps_question is not None else None
    outbox.emit(
        session,
        SurveyAnswered(
            survey_key=survey.key,
            response_id=response.id,
            points=survey.points,
            nps=score if isinstance(score, int) else None,
        ),
        member_id=member.id,
        now=now,
        backfill=backfill,
    )
    return response


def _answer_rows(
    survey_id: int, response_id: int, checked: Mapping[str, Answer], data: SurveyIn
) -> list[SurveyAnswer]:
    rows = []
    for question in data.questions:
        if question.id not in checked:
            continue
        value = checked[question.id]
        rows.append(
            SurveyAnswer(
                response_id=response_id,
                survey_id=survey_id,
                question_id=question.id,
                number=value if question.kind in ("nps", "rating") else None,
                choice=value if question.kind == "choice" else None,
                text=value if question.kind == "text" else None,
            )
        )
    return rows


def answers_of(session: Session, response_id: int) -> dict[str, Answer]:
    rows = session.execute(
        select(
            SurveyAnswer.question_id, SurveyAnswer.number, SurveyAnswer.choice, SurveyAnswer.text
        ).where(SurveyAnswer.response_id == response_id)
    )
    out: dict[str, Answer] = {}
    for qid, number, choice, text in rows:
        value = number if number is not None else choice if choice is not None else text
        if value is not None:
            out[qid] = value
    return out


# --- summaries ----------------------------------------------------------------------------


def summary(
    session: Session,
    survey: Survey,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    by: GroupBy = "all",
) -> dict[str | None, list[QuestionSummary]]:
    """Each question summarised for everyone (``by="all"``, key ``None``), per tier at the
    time of answering, or per month (``YYYY-MM``), over answers in ``[start, end)``.
    One ``GROUP BY`` whose rows are bounded by questions x values x groups."""
    group = {
        "all": None,
        "tier": func.coalesce(SurveyResponse.tier_id, ""),
        "month": SurveyResponse.period,
    }[by]
    value_cols = (SurveyAnswer.question_id, SurveyAnswer.number, SurveyAnswer.choice)
    columns = (*value_cols, func.count()) if group is None else (group, *value_cols, func.count())
    stmt = (
        select(*columns)
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(SurveyAnswer.survey_id == survey.id)
        .group_by(*((group,) if group is not None else ()), *value_cols)
    )
    if start is not None:
        stmt = stmt.where(SurveyResponse.answered_at >= start)
    if end is not None:
        stmt = stmt.where(SurveyResponse.answered_at < end)
    tallies = []
    for row in session.execute(stmt):
        values = tuple(row)
        key: str | None = None if group is None else str(values[0] or "-")
        qid, number, choice, count = values[-4:]
        value: Answer | None = number if number is not None else choice
        tallies.append(Tally(key, str(qid), value, int(count)))
    data = definition(survey)
    result = summarise(data, tallies)
    if by == "all" and None not in result:
        result[None] = empty_summary(data)
    return result


def latest_texts(
    session: Session, survey: Survey, question_id: str, *, limit: int = 20
) -> list[tuple[datetime, str]]:
    """The newest free-text answers to one question (for the console)."""
    rows = session.execute(
        select(SurveyResponse.answered_at, SurveyAnswer.text)
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(
            SurveyAnswer.survey_id == survey.id,
            SurveyAnswer.question_id == question_id,
            SurveyAnswer.text.is_not(None),
        )
        .order_by(SurveyResponse.answered_at.desc(), SurveyAnswer.id.desc())
        .limit(limit)
    )
    return [(at, str(text)) for at, text in rows]


# --- signed links -------------------------------------------------------------------------


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=LINK_SALT)


def link_token(secret: str, survey: Survey, member: Member) -> str:
    """A token naming (survey, member), signed with the server secret: whoever holds the
    link answers as that member, for that survey only, without signing in."""
    return _serializer(secret).dumps([survey.key, member.id])


def read_link(secret: str, token: str, *, now: datetime) -> tuple[str, int]:
    """(survey key, member id) of a valid link token, or :class:`LinkInvalid`."""
    try:
        key, member_id = _serializer(secret).loads(
            token, max_age=LINK_MAX_AGE, return_timestamp=False
        )
    except SignatureExpired:
        raise LinkInvalid("This survey link has expired.", code="survey_link_expired") from None
    except (BadSignature, ValueError, TypeError):
        raise LinkInvalid("This survey link is not valid.") from None
    if not isinstance(key, str) or not isinstance(member_id, int):
        raise LinkInvalid("This survey link is not valid.")
    return key, member_id


# --- parsing (console, CLI) ---------------------------------------------------------------


class SurveyInvalid(LealtaError):
    status_code = 422
    code = "invalid_survey"


def parse(text: str) -> SurveyIn:
    """A survey definition from YAML or JSON text, or :class:`SurveyInvalid` listing each
    problem with its path (``questions.1.choices``)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise SurveyInvalid(
            "The text is not valid YAML or JSON.",
            details=[{"path": where, "message": str(getattr(exc, "problem", "") or exc)}],
        ) from None
    if not isinstance(document, dict):
        raise SurveyInvalid(
            "A survey is a mapping (key, name, questions, ...).",
            details=[{"path": "", "message": "expected a mapping"}],
        )
    try:
        return SurveyIn.model_validate(document)
    except ValidationError as exc:
        problems = [
            {
                "path": ".".join(str(p) for p in err["loc"]),
                "message": err["msg"].removeprefix("Value error, "),
            }
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        first = problems[0]
        raise SurveyInvalid(
            f"{first['path'] or 'survey'}: {first['message']}", details=problems
        ) from None
