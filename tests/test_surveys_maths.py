"""Survey maths without a database: checking answers, NPS and summaries, and the definition's
own validation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from lealta.surveys.maths import AnswersInvalid, Tally, check_answers, nps, summarise
from lealta.surveys.schema import SurveyIn

DEFINITION: dict[str, Any] = {
    "key": "satisfaction",
    "name": {"es": "Satisfacción", "en": "Satisfaction"},
    "points": 50,
    "questions": [
        {
            "id": "recommend",
            "kind": "nps",
            "label": {"es": "¿Nos recomendarías?", "en": "Would you recommend us?"},
        },
        {
            "id": "delivery",
            "kind": "rating",
            "scale": 5,
            "label": {"es": "Entrega", "en": "Delivery"},
        },
        {
            "id": "channel",
            "kind": "choice",
            "label": {"es": "Canal", "en": "Channel"},
            "choices": [
                {"id": "web", "label": "Web"},
                {"id": "shop", "label": {"es": "Tienda", "en": "Shop"}},
            ],
        },
        {
            "id": "comments",
            "kind": "text",
            "label": {"es": "Comentarios", "en": "Comments"},
            "required": False,
            "max_length": 20,
        },
    ],
}
SURVEY = SurveyIn.model_validate(DEFINITION)


def test_good_answers_are_typed_and_blank_optional_ones_left_out() -> None:
    checked = check_answers(
        SURVEY, {"recommend": "9", "delivery": 4, "channel": "web", "comments": "  "}
    )
    assert checked == {"recommend": 9, "delivery": 4, "channel": "web"}
    checked = check_answers(
        SURVEY, {"recommend": 0, "delivery": "5", "channel": "shop", "comments": " Bien "}
    )
    assert checked["comments"] == "Bien"


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(AnswersInvalid) as caught:
        check_answers(
            SURVEY,
            {"recommend": "11", "delivery": "0", "channel": "phone", "comments": "x" * 21,
             "colour": "red"},
        )  # fmt: skip
    codes = {(p.question, p.code) for p in caught.value.problems}
    assert codes == {
        ("colour", "unknown_question"),
        ("recommend", "out_of_range"),
        ("delivery", "out_of_range"),
        ("channel", "unknown_choice"),
        ("comments", "too_long"),
    }
    assert caught.value.code == "survey_answers_invalid"
    assert caught.value.status_code == 422
    assert {d["question"] for d in caught.value.details} >= {"recommend", "colour"}


@pytest.mark.parametrize("value", [None, "", "nine", "9.5", True, 3.0, [9], "-1", "99999999"])
def test_an_nps_answer_must_be_a_whole_number_from_0_to_10(value: Any) -> None:
    answers = {"recommend": value, "delivery": 3, "channel": "web"}
    with pytest.raises(AnswersInvalid) as caught:
        check_answers(SURVEY, answers)
    expected = "required" if value in (None, "") else "out_of_range"
    assert [(p.question, p.code) for p in caught.value.problems] == [("recommend", expected)]


def test_nps_counts_promoters_passives_and_detractors() -> None:
    # 10 answers: 5 promoters (9-10), 2 passives (7-8), 3 detractors (0-6).
    result = nps({10: 3, 9: 2, 8: 1, 7: 1, 6: 2, 0: 1})
    assert (result.responses, result.promoters, result.passives, result.detractors) == (
        10, 5, 2, 3,
    )  # fmt: skip
    assert result.score == Decimal("20.0")  # 50 % - 30 %
    assert nps({}).score is None
    assert nps({0: 3}).score == Decimal("-100.0")
    assert nps({6: 1, 9: 2}).score == Decimal("33.3")  # 66.67 - 33.33


def test_summaries_per_group_follow_the_questions() -> None:
    tallies = [
        Tally("gold", "recommend", 10, 2),
        Tally("gold", "recommend", 3, 1),
        Tally("gold", "delivery", 5, 1),
        Tally("gold", "delivery", 2, 2),
        Tally("gold", "channel", "web", 3),
        Tally("gold", "comments", None, 1),
        Tally("silver", "recommend", 8, 1),
    ]
    groups = summarise(SURVEY, tallies)
    gold = {s.question: s for s in groups["gold"]}
    assert gold["recommend"].nps is not None
    assert gold["recommend"].nps.score == Decimal("33.3")  # 2 promoters, 1 detractor of 3
    assert gold["recommend"].distribution["10"] == 2
    assert gold["recommend"].mean == Decimal("7.67")  # (10 + 10 + 3) / 3
    assert gold["delivery"].mean == Decimal("3.00")  # (5 + 2 + 2) / 3
    assert gold["delivery"].distribution == {"1": 0, "2": 2, "3": 0, "4": 0, "5": 1}
    assert gold["channel"].distribution == {"web": 3, "shop": 0}
    assert gold["channel"].percents == {"web": Decimal("100.0"), "shop": Decimal("0")}
    assert gold["comments"].answers == 1
    silver = {s.question: s for s in groups["silver"]}
    assert silver["recommend"].nps is not None and silver["recommend"].nps.passives == 1
    assert silver["delivery"].answers == 0 and silver["delivery"].mean is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"questions": []}, "at least 1"),
        ({"questions": [DEFINITION["questions"][0]] * 2}, "question ids must be unique"),
        ({"questions": [{"id": "c", "kind": "choice", "label": "x",
                         "choices": [{"id": "a", "label": "A"}]}]}, "at least 2 choices"),
        ({"questions": [{"id": "t", "kind": "text", "label": "x",
                         "choices": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]}]},
         "only choice questions"),
        ({"opens_at": "2027-01-02T00:00:00Z", "closes_at": "2027-01-01T00:00:00Z"},
         "closes_at must be after opens_at"),
        ({"colour": "red"}, "Extra inputs"),
        ({"key": "Bad Key"}, "pattern"),
        ({"points": -1}, "greater than or equal"),
    ],
)  # fmt: skip
def test_a_bad_definition_is_refused_with_its_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SurveyIn.model_validate({**DEFINITION, **change})
    assert message in str(caught.value)
