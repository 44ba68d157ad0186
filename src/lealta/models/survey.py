from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

SURVEY_STATUSES = ("open", "closed")
SURVEY_CHANNELS = ("cockpit", "link", "api")


class Survey(Base):
    """A survey as data: its validated definition (:class:`lealta.surveys.schema.SurveyIn`)
    kept as JSON, its points on completion, and whether it still takes answers."""

    __tablename__ = "surveys"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed')", name="ck_surveys_status"),
        CheckConstraint("points >= 0", name="ck_surveys_points_nonneg"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    points: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class SurveyResponse(Base):
    """One member's completed survey: at most one per member and survey (the unique key
    makes a double submit, even from two tabs at once, answer once). ``tier_id`` and
    ``period`` (``YYYY-MM``, UTC) are kept as they were when answered, for the summaries."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        UniqueConstraint("survey_id", "member_id", name="uq_survey_responses_member"),
        CheckConstraint(
            "channel IN ('cockpit', 'link', 'api')", name="ck_survey_responses_channel"
        ),
        Index("ix_survey_responses_survey_answered", "survey_id", "answered_at"),
        Index("ix_survey_responses_member", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    survey_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("surveys.id"))
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    tier_id: Mapped[str | None] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(7))
    channel: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(Integer, default=0)
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    answered_at: Mapped[datetime]


class SurveyAnswer(Base):
    """One answer of a response, one column per kind of value, so summaries are a
    ``GROUP BY`` on any database (no JSON functions)."""

    __tablename__ = "survey_answers"
    __table_args__ = (
        Index("ix_survey_answers_response", "response_id"),
        Index("ix_survey_answers_survey_question", "survey_id", "question_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    response_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("survey_responses.id"))
    survey_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("surveys.id"))
    question_id: Mapped[str] = mapped_column(String(64))
    number: Mapped[int | None] = mapped_column(Integer)
    choice: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text)
