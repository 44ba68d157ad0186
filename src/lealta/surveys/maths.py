"""Pure survey maths: checking a member's answers and summarising many (no database).

NPS follows Reichheld's definition: of the answers to "how likely are you to recommend us"
on 0-10, 9 and 10 are promoters, 7 and 8 passives, 0 to 6 detractors; the score is the
percentage of promoters minus the percentage of detractors (-100 to +100).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from lealta.kit.errors import InvalidInput
from lealta.surveys.schema import Question, SurveyIn

Answer = int | str
"""A checked answer: a number (nps, rating), a choice id or a text."""


@dataclass(frozen=True, slots=True)
class AnswerProblem:
    question: str
    code: str
    message: str


class AnswersInvalid(InvalidInput):
    """Some answers are missing or out of range; ``details`` lists them per question."""

    code = "survey_answers_invalid"

    def __init__(self, problems: list[AnswerProblem]) -> None:
        super().__init__(
            "Some answers are missing or not valid.",
            details=[
                {"question": p.question, "code": p.code, "message": p.message} for p in problems
            ],
        )
        self.problems = problems


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 6:
        return int(value.strip())
    return None


def _check_one(question: Question, value: Any) -> Answer | AnswerProblem:
    qid = question.id
    if question.kind in ("nps", "rating"):
        low, high = (0, 10) if question.kind == "nps" else (1, question.scale)
        number = _number(value)
        if number is None or not low <= number <= high:
            return AnswerProblem(qid, "out_of_range", f"Choose a number from {low} to {high}.")
        return number
    if question.kind == "choice":
        ids = {c.id for c in question.choices}
        if not isinstance(value, str) or value not in ids:
            return AnswerProblem(qid, "unknown_choice", "Choose one of the options.")
        return value
    if not isinstance(value, str):
        return AnswerProblem(qid, "not_text", "The answer must be text.")
    text = value.strip()
    if len(text) > question.max_length:
        return AnswerProblem(qid, "too_long", f"Write at most {question.max_length} characters.")
    return text


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check_answers(survey: SurveyIn, raw: Mapping[str, Any]) -> dict[str, Answer]:
    """The answers keyed by question id, checked against the survey; blank optional answers
    are left out. Raises :class:`AnswersInvalid` naming every problem at once."""
    problems: list[AnswerProblem] = []
    checked: dict[str, Answer] = {}
    known = {q.id for q in survey.questions}
    for qid in raw:
        if qid not in known:
            problems.append(AnswerProblem(str(qid)[:64], "unknown_question", "No such question."))
    for question in survey.questions:
        value = raw.get(question.id)
        if _blank(value):
            if question.required:
                problems.append(
                    AnswerProblem(question.id, "required", "This question needs an answer.")
                )
            continue
        result = _check_one(question, value)
        if isinstance(result, AnswerProblem):
            problems.append(result)
        else:
            checked[question.id] = result
    if problems:
        raise AnswersInvalid(problems)
    return checked


# --- summaries ---------------------------------------------------------------------------


def _percent(part: int, whole: int) -> Decimal:
    if whole == 0:
        return Decimal(0)
    return (Decimal(part) * 100 / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Nps:
    responses: int
    promoters: int
    passives: int
    detractors: int

    @property
    def score(self) -> Decimal | None:
        """% promoters - % detractors, to one decimal; None without answers."""
        if self.responses == 0:
            return None
        raw = Decimal(self.promoters - self.detractors) * 100 / self.responses
        return raw.quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)


def nps(counts: Mapping[int, int]) -> Nps:
    """NPS from the number of answers per score (0-10)."""
    promoters = sum(n for score, n in counts.items() if score >= 9)
    passives = sum(n for score, n in counts.items() if 7 <= score <= 8)
    detractors = sum(n for score, n in counts.items() if score <= 6)
    return Nps(promoters + passives + detractors, promoters, passives, detractors)


@dataclass(frozen=True, slots=True)
class QuestionSummary:
    question: str
    kind: str
    answers: int
    nps: Nps | None = None
    mean: Decimal | None = None
    distribution: dict[str, int] = field(default_factory=dict)
    """Answers per value: score (nps, rating) or choice id, in the question's order."""
    percents: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Tally:
    """One aggregated row: in group ``group``, question ``question`` got ``value``
    (a number, a choice id, or None for texts) ``count`` times."""

    group: str | None
    question: str
    value: Answer | None
    count: int


def summarise(
    survey: SurveyIn, tallies: Iterable[Tally]
) -> dict[str | None, list[QuestionSummary]]:
    """Per group (``None`` = everyone, or a tier, or a month), a summary of each question."""
    by_group: dict[str | None, dict[str, dict[Answer | None, int]]] = {}
    for t in tallies:
        slot = by_group.setdefault(t.group, {}).setdefault(t.question, {})
        slot[t.value] = slot.get(t.value, 0) + t.count
    return {
        group: [_summary(q, counts.get(q.id, {})) for q in survey.questions]
        for group, counts in by_group.items()
    }


def empty_summary(survey: SurveyIn) -> list[QuestionSummary]:
    """Every question with no answer yet."""
    return [_summary(q, {}) for q in survey.questions]


def _summary(question: Question, counts: Mapping[Answer | None, int]) -> QuestionSummary:
    total = sum(counts.values())
    if question.kind in ("nps", "rating"):
        numbers = {int(v): n for v, n in counts.items() if v is not None}
        low, high = (0, 10) if question.kind == "nps" else (1, question.scale)
        distribution = {str(score): numbers.get(score, 0) for score in range(low, high + 1)}
        weighted = sum(score * n for score, n in numbers.items())
        mean = (
            (Decimal(weighted) / total).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
            if total
            else None
        )
        return QuestionSummary(
            question.id,
            question.kind,
            total,
            nps=nps(numbers) if question.kind == "nps" else None,
            mean=mean,
            distribution=distribution,
            percents={k: _percent(v, total) for k, v in distribution.items()},
        )
    if question.kind == "choice":
        distribution = {c.id: int(counts.get(c.id, 0)) for c in question.choices}
        return QuestionSummary(
            question.id,
            question.kind,
            total,
            distribution=distribution,
            percents={k: _percent(v, total) for k, v in distribution.items()},
        )
    return QuestionSummary(question.id, question.kind, total)
