"""A survey's definition, validated by Pydantic (``extra="forbid"``: a typo is an error with
its exact path).

Questions are of four kinds: ``nps`` (0-10, "how likely are you to recommend us"),
``rating`` (1 to ``scale`` stars), ``choice`` (one of ``choices``) and ``text`` (free text up
to ``max_length`` characters). Labels are a plain string or ``{es, en}``, like every name in
the programme document.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from lealta.programme.schema import Name, Slug

QuestionKind = Literal["nps", "rating", "choice", "text"]
QUESTION_KINDS: tuple[str, ...] = ("nps", "rating", "choice", "text")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choice(_Model):
    id: Slug
    label: Name


class Question(_Model):
    id: Slug
    kind: QuestionKind
    label: Name
    required: bool = True
    scale: Annotated[int, Field(ge=2, le=10)] = Field(
        default=5, description="Highest rating (kind rating only): answers are 1..scale."
    )
    choices: Annotated[list[Choice], Field(max_length=20)] = Field(
        default_factory=list, description="The options (kind choice only, 2 to 20)."
    )
    max_length: Annotated[int, Field(ge=1, le=5000)] = Field(
        default=1000, description="Longest answer in characters (kind text only)."
    )

    @model_validator(mode="after")
    def _choices_fit_kind(self) -> Question:
        if self.kind == "choice":
            if len(self.choices) < 2:
                raise ValueError("a choice question needs at least 2 choices")
            ids = [c.id for c in self.choices]
            if len(set(ids)) != len(ids):
                raise ValueError("choice ids must be unique within the question")
        elif self.choices:
            raise ValueError("only choice questions have choices")
        return self


class SurveyIn(_Model):
    """What a marketer writes: ``POST /v1/surveys`` or the console's survey form."""

    key: Slug
    name: Name
    intro: Name | None = None
    questions: Annotated[list[Question], Field(min_length=1, max_length=30)]
    points: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        default=0, description="Points credited once, when the member completes the survey."
    )
    opens_at: AwareDatetime | None = None
    closes_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SurveyIn:
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique within the survey")
        if self.opens_at and self.closes_at and self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        return self

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)
