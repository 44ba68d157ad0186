"""API shapes of a campaign's results, and the same figures as CSV rows (shared by the API,
the CLI and the console's CSV link). Money is a decimal string in the programme currency."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from lealta.experiments import stats
from lealta.experiments.results import ArmResult, Results
from lealta.programme.types import Translations


class DifferenceOut(BaseModel):
    """Variant minus holdout, with its interval at the experiment's confidence (``low`` and
    ``high`` null, and ``reason`` set, when it cannot be computed)."""

    value: float | str | None
    low: float | str | None
    high: float | str | None
    reason: str | None
    detectable: bool | None = Field(
        description="True when the interval excludes 0 (a detectable difference), null without"
        " an interval."
    )


class LiftOut(BaseModel):
    conversion_rate: DifferenceOut = Field(
        description="Difference of conversion rates (0.031 = 3.1 points), Newcombe hybrid score"
        " interval."
    )
    relative_conversion: float | None = Field(
        description="(variant rate - holdout rate) / holdout rate; null when the holdout never"
        " converted."
    )
    revenue_per_member: DifferenceOut = Field(
        description="Difference of net revenue per reached member (currency), Welch t interval."
    )


class ArmOut(BaseModel):
    arm: str
    name: str | dict[str, Any] | None
    holdout: bool
    audience: int = Field(description="Recipients assigned to the arm.")
    statuses: dict[str, int]
    reached: int
    delivered: int
    opened: int
    clicked: int
    coupons_issued: int
    conversions: int
    conversion_rate: float | None
    revenue: str
    revenue_per_member: str | None
    points: int
    points_cost: str
    coupons_used: int
    coupon_cost: str
    lift: LiftOut | None = Field(description="Against the holdout; null for the holdout itself.")


class ConversionOut(BaseModel):
    event: str
    days: int


class ResultsOut(BaseModel):
    campaign_id: str
    name: str | dict[str, Any] | None
    status: str
    launched_at: datetime | None
    experiment: bool
    currency: str
    point_cost: str
    confidence: float
    conversion: ConversionOut
    window_closes_at: datetime | None
    complete: bool = Field(
        description="Every reached member's conversion window has closed: figures are final."
    )
    arms: list[ArmOut]


def _name(name: Any) -> str | dict[str, Any] | None:
    return name.model_dump(exclude_none=True) if isinstance(name, Translations) else name


def _money(r: Results, minor: int | float | Decimal | None) -> str | None:
    value = r.money(minor)
    return None if value is None else str(value)


def _diff(e: stats.Estimate | None, money: Any = None) -> DifferenceOut:
    if e is None:
        return DifferenceOut(value=None, low=None, high=None, reason=None, detectable=None)

    def fmt(v: float | None) -> float | str | None:
        if v is None:
            return None
        return money(v) if money is not None else round(v, 6)

    return DifferenceOut(
        value=fmt(e.value),
        low=fmt(e.low),
        high=fmt(e.high),
        reason=e.reason,
        detectable=None if e.direction is None else e.direction != 0,
    )


def arm_out(r: Results, a: ArmResult) -> ArmOut:
    lift = None
    if a.conversion_lift is not None or a.revenue_lift is not None:
        lift = LiftOut(
            conversion_rate=_diff(a.conversion_lift),
            relative_conversion=None if a.relative_lift is None else round(a.relative_lift, 6),
            revenue_per_member=_diff(a.revenue_lift, lambda v: _money(r, v)),
        )
    return ArmOut(
        arm=a.arm,
        name=_name(a.name),
        holdout=a.holdout,
        audience=a.audience,
        statuses=dict(sorted(a.statuses.items())),
        reached=a.reached,
        delivered=a.delivered,
        opened=a.opened,
        clicked=a.clicked,
        coupons_issued=a.coupons_issued,
        conversions=a.conversions,
        conversion_rate=None if a.conversion_rate is None else round(a.conversion_rate, 6),
        revenue=str(r.money(a.revenue_minor)),
        revenue_per_member=_money(r, a.revenue_per_member_minor),
        points=a.points,
        points_cost=str(r.money(a.points_cost_minor)),
        coupons_used=a.coupon_uses,
        coupon_cost=str(r.money(a.coupon_cost_minor)),
        lift=lift,
    )


def results_out(r: Results, *, now: datetime) -> ResultsOut:
    return ResultsOut(
        campaign_id=r.campaign_id,
        name=_name(r.name),
        status=r.status,
        launched_at=r.launched_at,
        experiment=r.experiment,
        currency=r.currency,
        point_cost=str(r.point_cost),
        confidence=r.confidence,
        conversion=ConversionOut(event=r.conversion_event, days=r.conversion_days),
        window_closes_at=r.window_closes_at,
        complete=r.window_closes_at is not None and r.window_closes_at <= now,
        arms=[arm_out(r, a) for a in r.arms],
    )


CSV_COLUMNS = [
    "arm", "holdout", "audience", "reached", "delivered", "opened", "clicked",
    "coupons_issued", "conversions", "conversion_rate", "revenue", "revenue_per_member",
    "points", "points_cost", "coupons_used", "coupon_cost",
    "conversion_rate_diff", "conversion_rate_diff_low", "conversion_rate_diff_high",
    "relative_conversion_lift", "revenue_per_member_diff", "revenue_per_member_diff_low",
    "revenue_per_member_diff_high", "confidence", "currency",
]  # fmt: skip


def csv_rows(out: ResultsOut) -> list[list[Any]]:
    """The table as CSV rows (header first); empty cells where a figure does not apply."""

    def cell(v: Any) -> Any:
        return "" if v is None else v

    rows: list[list[Any]] = [CSV_COLUMNS]
    for a in out.arms:
        c = a.lift.conversion_rate if a.lift else None
        m = a.lift.revenue_per_member if a.lift else None
        row = [
            a.arm, "true" if a.holdout else "false", a.audience, a.reached, a.delivered,
            a.opened, a.clicked, a.coupons_issued, a.conversions, a.conversion_rate,
            a.revenue, a.revenue_per_member, a.points, a.points_cost, a.coupons_used,
            a.coupon_cost,
            c.value if c else None, c.low if c else None, c.high if c else None,
            a.lift.relative_conversion if a.lift else None,
            m.value if m else None, m.low if m else None, m.high if m else None,
            out.confidence, out.currency,
        ]  # fmt: skip
        rows.append([cell(v) for v in row])
    return rows
