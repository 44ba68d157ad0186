from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

CLV_FIT_STATUSES = ("running", "ok", "failed")


class ClvFit(Base):
    """One run of the CLV fit (:mod:`lealta.analytics.clv_store`): the BG/NBD and Gamma-Gamma
    parameters, or why there are none (``failed`` with the error's code and message).

    ``aggregate`` holds the programme's CLV at the default horizon and discount rate, computed
    with the predictions, so the API answers it without a pass over the members."""

    __tablename__ = "clv_fits"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'ok', 'failed')", name="ck_clv_fits_status"),
        Index("ix_clv_fits_currency_status", "currency", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    fitted_at: Mapped[datetime]
    """The calibration end: histories are read up to this moment."""
    finished_at: Mapped[datetime | None]
    customers: Mapped[int] = mapped_column(default=0)
    sample_size: Mapped[int] = mapped_column(default=0)
    log_likelihood: Mapped[float | None] = mapped_column(Float)
    bg_r: Mapped[float | None] = mapped_column(Float)
    bg_alpha: Mapped[float | None] = mapped_column(Float)
    bg_a: Mapped[float | None] = mapped_column(Float)
    bg_b: Mapped[float | None] = mapped_column(Float)
    gg_p: Mapped[float | None] = mapped_column(Float)
    gg_q: Mapped[float | None] = mapped_column(Float)
    gg_gamma: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(500))
    aggregate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    actor: Mapped[str] = mapped_column(String(200))


class ClvPrediction(Base):
    """A member's purchase summary at the fit's calibration end and its predictions at the
    default horizon (36 months, 10 % a year); other horizons are recomputed from the summary.
    Only the latest successful fit keeps its rows."""

    __tablename__ = "clv_predictions"
    __table_args__ = (Index("ix_clv_predictions_member", "member_id"),)

    fit_id: Mapped[int] = mapped_column(
        ForeignKey("clv_fits.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    transactions: Mapped[int]
    first_purchase: Mapped[date]
    last_purchase: Mapped[date]
    frequency: Mapped[float] = mapped_column(Float)
    recency: Mapped[float] = mapped_column(Float)
    age: Mapped[float] = mapped_column(Float)
    monetary: Mapped[float] = mapped_column(Float)
    purchases_90d: Mapped[float] = mapped_column(Float)
    purchases_365d: Mapped[float] = mapped_column(Float)
    probability_alive: Mapped[float] = mapped_column(Float)
    expected_value: Mapped[float] = mapped_column(Float)
    clv: Mapped[float] = mapped_column(Float)
