"""API shapes of surveys, responses and summaries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lealta.kit.ids import ExternalId
from lealta.surveys.maths import QuestionSummary
from lealta.surveys.schema import SurveyIn

AnswerValue = (
    Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
    | Annotated[str, StringConstraints(max_length=5000)]
)


class SurveyOut(BaseModel):
    key: str
    status: str
    points: int
    accepting_answers: bool
    responses: int
    definition: SurveyIn
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class SurveyList(BaseModel):
    items: list[SurveyOut]


class AnswerIn(BaseModel):
    """A member's answers, keyed by question id (numbers for nps and rating, a choice id, or
    text). Blank answers to optional questions may be left out."""

    model_config = ConfigDict(extra="forbid")
    member: ExternalId
    answers: Annotated[
        dict[Annotated[str, StringConstraints(max_length=64)], AnswerValue], Field(max_length=30)
    ]


class ResponseOut(BaseModel):
    id: int
    survey: str
    member: str
    channel: str
    points: int
    ledger_entry_id: int | None
    tier: str | None
    answered_at: datetime
    answers: dict[str, int | str]


class ResponsePage(BaseModel):
    items: list[ResponseOut]
    next_cursor: str | None


class NpsOut(BaseModel):
    responses: int
    promoters: int
    passives: int
    detractors: int
    score: Decimal | None = Field(description="% promoters - % detractors (-100..100).")


class QuestionSummaryOut(BaseModel):
    question: str
    kind: str
    answers: int
    nps: NpsOut | None
    mean: Decimal | None
    distribution: dict[str, int]
    percents: dict[str, Decimal]

    @classmethod
    def of(cls, s: QuestionSummary) -> QuestionSummaryOut:
        return cls(
            question=s.question,
            kind=s.kind,
            answers=s.answers,
            nps=None
            if s.nps is None
            else NpsOut(
                responses=s.nps.responses,
                promoters=s.nps.promoters,
                passives=s.nps.passives,
                detractors=s.nps.detractors,
                score=s.nps.score,
            ),
            mean=s.mean,
            distribution=s.distribution,
            percents=s.percents,
        )


class SummaryGroup(BaseModel):
    group: str | None = Field(description="null for everyone; the tier id or YYYY-MM month.")
    questions: list[QuestionSummaryOut]


class SummaryOut(BaseModel):
    survey: str
    by: str
    start: datetime | None
    end: datetime | None
    groups: list[SummaryGroup]


class LinkOut(BaseModel):
    url: str
    expires_in_days: int
