"""The CLV fit as stored data: fitted by a job, read instantly by the API and member 360.

:func:`run_fit` (the ``analytics.fit_clv`` job, nightly and on demand) fits BG/NBD +
Gamma-Gamma on every member's history up to its start (:func:`lealta.analytics.clv_data.fit`),
then streams the members again, predicts each at the default horizon and writes the rows in
chunks, computes the programme aggregate, and only then marks the fit ``ok``: readers see the
previous fit until the new one is complete. Older fits' predictions are deleted afterwards
(only older ones: two fits running at once, nightly and on demand, never delete each other's
rows while being written; readers use the newest complete fit).
A history too small or degenerate to fit is stored as a ``failed`` fit with the error's code.

Readers (:func:`member_clv`, :func:`aggregate_clv`) answer from the latest ``ok`` fit, with
``409 clv_not_fitted`` before the first one (or the code of the latest failure when no fit
ever succeeded). Another horizon or discount rate is recomputed from the stored summaries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.orm import Session

from lealta.analytics import clv, clv_data
from lealta.analytics.clv_data import (
    DEFAULT_DISCOUNT_RATE,
    DEFAULT_MONTHS,
    AggregateClv,
    Bucket,
    FittedModel,
    MemberClv,
    NoPurchaseHistory,
    Summaries,
)
from lealta.kit.db import Database
from lealta.kit.errors import Conflict
from lealta.kit.logging import get_logger
from lealta.models import ClvFit, ClvPrediction, Member
from lealta.programme import service as programmes

log = get_logger("lealta.analytics.clv_store")

WRITE_CHUNK = 5_000
FIT_TASK = "analytics.fit_clv"


class NotFitted(Conflict):
    code = "clv_not_fitted"


# --- writing --------------------------------------------------------------------------------


def run_fit(db: Database, *, now: datetime, actor: str = "job:analytics.fit_clv") -> ClvFit:
    """Fit on the histories up to ``now`` and store the fit and every member's prediction;
    returns the stored fit (``ok`` or ``failed``)."""
    with db.unit_of_work(write=False) as session:
        currency = programmes.current(session, now=now).currency
    with db.unit_of_work() as session:
        row = ClvFit(
            currency=currency,
            status="running",
            started_at=now,
            fitted_at=now,
            customers=0,
            sample_size=0,
            actor=actor,
        )
        session.add(row)
        session.flush()
        fit_id = row.id
    try:
        with db.unit_of_work(write=False) as session:
            model = clv_data.fit(session, currency=currency, now=now)
    except Conflict as exc:
        with db.unit_of_work() as session:
            failed = session.get_one(ClvFit, fit_id)
            failed.status = "failed"
            failed.error_code = exc.code
            failed.error_message = exc.message[:500]
            failed.finished_at = now
            details = exc.details if isinstance(exc.details, dict) else {}
            failed.customers = int(details.get("customers", 0))
        log.info("clv_fit_failed", code=exc.code, fit_id=fit_id)
        return _fit_row(db, fit_id)
    bg, gg = model.bgnbd.params, model.gamma_gamma.params
    with db.unit_of_work(write=False) as session:
        members = session.scalar(select(func.count()).select_from(Member)) or 0
        aggregate = clv_data.aggregate_parts(
            _write_predictions(db, session, fit_id, model, now),
            model,
            members=members,
            months=DEFAULT_MONTHS,
            rate=DEFAULT_DISCOUNT_RATE,
        )
    with db.unit_of_work() as session:
        done = session.get_one(ClvFit, fit_id)
        done.status = "ok"
        done.finished_at = now
        done.customers = model.customers
        done.sample_size = model.bgnbd.customers
        done.log_likelihood = model.bgnbd.log_likelihood
        done.bg_r, done.bg_alpha, done.bg_a, done.bg_b = bg.r, bg.alpha, bg.a, bg.b
        done.gg_p, done.gg_q, done.gg_gamma = gg.p, gg.q, gg.gamma
        done.aggregate = _aggregate_json(aggregate)
        session.flush()
        # Only older fits' rows: a newer fit running at the same time keeps its own.
        session.execute(delete(ClvPrediction).where(ClvPrediction.fit_id < fit_id))
    log.info("clv_fitted", fit_id=fit_id, customers=model.customers)
    return _fit_row(db, fit_id)


def _fit_row(db: Database, fit_id: int) -> ClvFit:
    with db.unit_of_work(write=False) as session:
        return session.get_one(ClvFit, fit_id)


def _write_predictions(
    db: Database, reader: Session, fit_id: int, model: FittedModel, now: datetime
) -> Iterator[clv.Prediction]:
    """Stream the summaries, predict, write each chunk in its own transaction; yields each
    chunk's predictions for the aggregate."""
    table = cast(Table, ClvPrediction.__table__)
    for part in clv_data.stream_summaries(
        reader, currency=model.currency, now=now, chunk=WRITE_CHUNK, keep_days=True
    ):
        p = _predict(model, part, DEFAULT_MONTHS, DEFAULT_DISCOUNT_RATE)
        rows = [
            {
                "fit_id": fit_id,
                "member_id": int(part.member_id[i]),
                "transactions": int(part.frequency[i]) + 1,
                "first_purchase": part.first_day[i],
                "last_purchase": part.last_day[i],
                "frequency": float(part.frequency[i]),
                "recency": float(part.recency[i]),
                "age": float(part.age[i]),
                "monetary": float(part.monetary[i]),
                "purchases_90d": float(p.purchases_90d[i]),
                "purchases_365d": float(p.purchases_365d[i]),
                "probability_alive": float(p.probability_alive[i]),
                "expected_value": float(p.expected_value[i]),
                "clv": float(p.clv[i]),
            }
            for i in range(len(part))
        ]
        with db.unit_of_work() as writer:
            writer.execute(insert(table), rows)
        yield p


def _predict(model: FittedModel, part: Summaries, months: int, rate: float) -> clv.Prediction:
    return clv.predict(
        model.bgnbd.params,
        model.gamma_gamma.params,
        part.frequency,
        part.recency,
        part.age,
        part.monetary,
        months=months,
        annual_discount_rate=rate,
    )


def _aggregate_json(a: AggregateClv) -> dict[str, Any]:
    data: dict[str, Any] = _jsonable({k: v for k, v in asdict(a).items() if k != "model"})
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


# --- reading --------------------------------------------------------------------------------


def latest(session: Session, currency: str) -> ClvFit | None:
    """The latest successful fit; raises the latest failure's code when none succeeded."""
    row = session.scalars(
        select(ClvFit)
        .where(ClvFit.currency == currency, ClvFit.status == "ok")
        .order_by(ClvFit.id.desc())
        .limit(1)
    ).one_or_none()
    return row


def latest_attempt(session: Session, currency: str) -> ClvFit | None:
    """The latest finished fit, successful or not (what the console shows)."""
    return session.scalars(
        select(ClvFit)
        .where(ClvFit.currency == currency, ClvFit.status != "running")
        .order_by(ClvFit.id.desc())
        .limit(1)
    ).one_or_none()


def require_fit(session: Session, currency: str) -> ClvFit:
    row = latest(session, currency)
    if row is not None:
        return row
    failed = latest_attempt(session, currency)
    if failed is not None and failed.error_code:
        raise Conflict(
            f"{failed.error_message} (fit of {failed.fitted_at:%Y-%m-%d %H:%M} UTC)",
            code=failed.error_code,
            details={"customers": failed.customers, "fitted_at": failed.fitted_at.isoformat()},
        )
    raise NotFitted(
        "The CLV model has not been fitted yet: it is fitted nightly, or now with"
        " `lealta analytics fit-clv` or the console's button.",
        details={"task": FIT_TASK},
    )


def model_of(row: ClvFit) -> FittedModel:
    assert row.bg_r is not None and row.gg_p is not None
    bg = clv.BgNbdParams(
        r=row.bg_r, alpha=row.bg_alpha or 0.0, a=row.bg_a or 0.0, b=row.bg_b or 0.0
    )
    gg = clv.GammaGammaParams(p=row.gg_p, q=row.gg_q or 0.0, gamma=row.gg_gamma or 0.0)
    return FittedModel(
        bgnbd=clv.Fit(bg, row.log_likelihood or 0.0, row.sample_size),
        gamma_gamma=clv.Fit(gg, 0.0, row.sample_size),
        currency=row.currency,
        fitted_at=row.fitted_at,
        customers=row.customers,
    )


def member_clv(
    session: Session,
    member_id: int,
    *,
    currency: str,
    months: int = DEFAULT_MONTHS,
    annual_discount_rate: float = DEFAULT_DISCOUNT_RATE,
) -> MemberClv:
    """The member's prediction from the latest fit (no model fitting here)."""
    row = require_fit(session, currency)
    model = model_of(row)
    pred = session.get(ClvPrediction, (row.id, member_id))
    if pred is None:
        raise NoPurchaseHistory(
            "The member had no purchase when the model was last fitted"
            f" ({row.fitted_at:%Y-%m-%d %H:%M} UTC): the model starts at the first purchase.",
            details={"fitted_at": row.fitted_at.isoformat()},
        )
    if months == DEFAULT_MONTHS and annual_discount_rate == DEFAULT_DISCOUNT_RATE:
        values = (
            pred.purchases_90d,
            pred.purchases_365d,
            pred.probability_alive,
            pred.expected_value,
            pred.clv,
        )
    else:
        p = clv.predict(
            model.bgnbd.params,
            model.gamma_gamma.params,
            pred.frequency,
            pred.recency,
            pred.age,
            pred.monetary,
            months=months,
            annual_discount_rate=annual_discount_rate,
        )
        values = (
            float(p.purchases_90d),
            float(p.purchases_365d),
            float(p.probability_alive),
            float(p.expected_value),
            float(p.clv),
        )
    purchases_90d, purchases_365d, alive, expected_value, value = values
    return MemberClv(
        currency=currency,
        transactions=pred.transactions,
        first_purchase=_as_date(pred.first_purchase),
        last_purchase=_as_date(pred.last_purchase),
        average_repeat_value=(
            clv_data.money(pred.monetary, currency) if pred.transactions > 1 else None
        ),
        expected_purchases_90d=purchases_90d,
        expected_purchases_365d=purchases_365d,
        probability_alive=alive,
        expected_order_value=clv_data.money(expected_value, currency),
        predicted_clv=clv_data.money(value, currency),
        horizon_months=months,
        annual_discount_rate=annual_discount_rate,
        model=model,
    )


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


_cache: dict[tuple[str, int, int, float], AggregateClv] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def aggregate_clv(
    session: Session,
    *,
    currency: str,
    months: int = DEFAULT_MONTHS,
    annual_discount_rate: float = DEFAULT_DISCOUNT_RATE,
) -> AggregateClv:
    """The programme's CLV from the latest fit: stored for the defaults, else recomputed from
    the stored summaries (one streamed pass, kept per process for that fit)."""
    row = require_fit(session, currency)
    model = model_of(row)
    if (
        months == DEFAULT_MONTHS
        and annual_discount_rate == DEFAULT_DISCOUNT_RATE
        and row.aggregate is not None
    ):
        return _from_json(row.aggregate, model)
    key = (str(session.get_bind().engine.url), row.id, months, annual_discount_rate)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    members = session.scalar(select(func.count()).select_from(Member)) or 0
    result = clv_data.aggregate_parts(
        (
            _predict(model, part, months, annual_discount_rate)
            for part in _stored_summaries(session, row.id)
        ),
        model,
        members=members,
        months=months,
        rate=annual_discount_rate,
    )
    with _lock:
        if len(_cache) > 32:
            _cache.clear()
        _cache[key] = result
    return result


def _stored_summaries(session: Session, fit_id: int) -> Iterator[Summaries]:
    stmt = (
        select(
            ClvPrediction.member_id,
            ClvPrediction.frequency,
            ClvPrediction.recency,
            ClvPrediction.age,
            ClvPrediction.monetary,
        )
        .where(ClvPrediction.fit_id == fit_id)
        .order_by(ClvPrediction.member_id)
        .execution_options(yield_per=WRITE_CHUNK)
    )
    for part in session.execute(stmt).partitions(WRITE_CHUNK):
        cols = list(zip(*part, strict=True))
        yield Summaries(
            member_id=np.asarray(cols[0], dtype=np.int64),
            frequency=np.asarray(cols[1], dtype=np.float64),
            recency=np.asarray(cols[2], dtype=np.float64),
            age=np.asarray(cols[3], dtype=np.float64),
            monetary=np.asarray(cols[4], dtype=np.float64),
        )


def _from_json(data: dict[str, Any], model: FittedModel) -> AggregateClv:
    return AggregateClv(
        currency=data["currency"],
        population=data["population"],
        members=data["members"],
        members_with_purchases=data["members_with_purchases"],
        total_clv=Decimal(data["total_clv"]),
        average_clv=Decimal(data["average_clv"]),
        median_clv=Decimal(data["median_clv"]),
        expected_purchases_365d=data["expected_purchases_365d"],
        average_probability_alive=data["average_probability_alive"],
        buckets=[
            Bucket(
                lower=Decimal(b["lower"]),
                upper=Decimal(b["upper"]) if b["upper"] is not None else None,
                members=b["members"],
                clv=Decimal(b["clv"]),
            )
            for b in data["buckets"]
        ],
        quantiles={k: Decimal(v) for k, v in data["quantiles"].items()},
        horizon_months=data["horizon_months"],
        annual_discount_rate=data["annual_discount_rate"],
        model=model,
    )
