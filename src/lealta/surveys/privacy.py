"""Surveys in the GDPR documents: a member's answers in their data export, and their written
answers removed on erasure (the scores and choices stay, without a name, so NPS and the
summaries of the past do not change)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lealta.models import Survey, SurveyAnswer, SurveyResponse
from lealta.privacy import registry


@registry.eraser("surveys.texts")
def erase_texts(session: Session, member_id: int, now: datetime) -> None:
    responses = select(SurveyResponse.id).where(SurveyResponse.member_id == member_id)
    session.execute(
        update(SurveyAnswer)
        .where(SurveyAnswer.response_id.in_(responses), SurveyAnswer.text.is_not(None))
        .values(text=None)
    )


@registry.exporter("surveys")
def export_answers(session: Session, member_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(SurveyResponse, Survey.key)
        .join(Survey, Survey.id == SurveyResponse.survey_id)
        .where(SurveyResponse.member_id == member_id)
        .order_by(SurveyResponse.answered_at)
    ).all()
    out = []
    for response, key in rows:
        answers = session.execute(
            select(
                SurveyAnswer.question_id,
                SurveyAnswer.number,
                SurveyAnswer.choice,
                SurveyAnswer.text,
            ).where(SurveyAnswer.response_id == response.id)
        )
        out.append(
            {
                "survey": key,
                "answered_at": response.answered_at.isoformat(),
                "channel": response.channel,
                "points": response.points,
                "answers": {
                    qid: next(v for v in (number, choice, text) if v is not None)
                    for qid, number, choice, text in answers
                    if (number, choice, text) != (None, None, None)
                },
            }
        )
    return out
