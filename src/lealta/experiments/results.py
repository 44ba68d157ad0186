"""Per-arm results of a campaign and the lift of each variant over the holdout.

Everything is read from stored rows (``campaign_states``, ``campaign_recipients``,
``messages``, ``orders``, ``events``, ``ledger_entries``, ``coupons``/``coupon_uses``), so the
same data gives the same results whenever they are computed. Each figure family is one
set-wise query grouped by arm, whatever the audience size:

1. recipients by arm and status, with the messages they were sent (delivered, opened,
   clicked, coupons issued);
2. orders in each reached member's conversion window, summed per member in a subquery and
   then per arm: buyers, conversions, revenue and its sum of squares (the Welch interval's
   inputs, exact ``numeric`` on PostgreSQL);
3. only when the conversion event is not ``order.paid``: members with such an event in
   their window, per arm;
4. the campaign's points (ledger entries with source ``campaign:<id>:<member>``, made
   at or after the member's assignment), per arm;
5. the discounts of the campaign's coupons that were used, per arm.

Definitions (intention to treat: a member counts in the arm they were assigned, whatever
happened to their message):

- *reached*: recipients whose status is neither ``pending`` nor ``cancelled`` (the holdout's
  ``held_out`` members count as reached: they were processed at the same pace, getting
  nothing). Reached members are the denominator of every rate and per-member figure.
- the *conversion window* of a member is ``[reached_at, reached_at + conversion.days)``
  (``assigned_at`` when ``reached_at`` is missing);
- *converted*: a reached member with, in their window, a paid order not fully refunded (for
  the default conversion event ``order.paid``) or an event of the conversion type;
- *revenue*: order totals minus refunds of the orders in the window, over all reached
  members of the arm (members who bought nothing count as 0);
- *delivered*: recipients whose message has status ``sent``; *opened*: an open or an in-app
  read was recorded; *clicked*: a tracked click was recorded (opens and clicks are known
  only for the channels that report them);
- *points*: the net points of the campaign's ledger entries for the arm's members, valued at
  the configured cost of a point; *coupon cost*: the discounts given by the uses (not rolled
  back) of the coupons the campaign issued to the arm's members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Float, Numeric, and_, case, cast, func, literal, select
from sqlalchemy.orm import Session

from lealta.experiments import stats
from lealta.experiments.schema import CONTROL, HOLDOUT, Experiment
from lealta.kit.errors import NotFound
from lealta.kit.money import exponent, from_minor
from lealta.models import (
    CampaignRecipient,
    CampaignState,
    Coupon,
    CouponUse,
    Event,
    LedgerEntry,
    Message,
    Order,
)
from lealta.programme import service as programmes
from lealta.programme.types import Name, Translations

NOT_REACHED = ("pending", "cancelled")
Rc = CampaignRecipient
DEFAULT_CONFIDENCE = 0.95
DEFAULT_EVENT = "order.paid"
DEFAULT_DAYS = 14


class CampaignNotFound(NotFound):
    code = "campaign_not_found"


@dataclass(slots=True)
class ArmResult:
    """One arm's figures; money in minor units of the programme currency."""

    arm: str
    name: Name | None
    holdout: bool
    audience: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    reached: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    coupons_issued: int = 0
    conversions: int = 0
    buyers: int = 0
    revenue_minor: int = 0
    revenue_squares: int = 0
    points: int = 0
    coupon_uses: int = 0
    coupon_cost_minor: int = 0
    points_cost_minor: Decimal = Decimal(0)
    conversion_lift: stats.Estimate | None = None
    relative_lift: float | None = None
    revenue_lift: stats.Estimate | None = None

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.reached if self.reached else None

    @property
    def revenue_per_member_minor(self) -> float | None:
        return self.revenue_minor / self.reached if self.reached else None

    @property
    def moments(self) -> stats.Moments:
        return stats.Moments(self.reached, self.revenue_minor, self.revenue_squares)

    @property
    def cost_minor(self) -> Decimal:
        return self.points_cost_minor + self.coupon_cost_minor


@dataclass(slots=True)
class Results:
    campaign_id: str
    name: Name | None
    status: str
    launched_at: datetime | None
    currency: str
    point_cost: Decimal
    confidence: float
    conversion_event: str
    conversion_days: int
    experiment: bool
    arms: list[ArmResult]
    window_closes_at: datetime | None
    """When the last reached member's conversion window closes (results may still move)."""

    @property
    def holdout(self) -> ArmResult | None:
        return next((a for a in self.arms if a.holdout), None)

    def money(self, minor: int | float | Decimal | None) -> Decimal | None:
        """Minor units as a decimal amount of the currency, rounded to its minor unit."""
        if minor is None:
            return None
        return from_minor(int(Decimal(str(minor)).to_integral_value()), self.currency)


def _definition(row: CampaignState) -> tuple[Name | None, Experiment | None]:
    data: dict[str, Any] = row.definition if isinstance(row.definition, dict) else {}
    raw = data.get("experiment")
    experiment = None
    if isinstance(raw, dict):
        try:
            experiment = Experiment.model_validate(raw)
        except ValidationError:
            experiment = None
    return _name(data.get("name")), experiment


def _name(raw: Any) -> Name | None:
    if isinstance(raw, str):
        return raw
    try:
        return Translations.model_validate(raw) if isinstance(raw, dict) else None
    except ValidationError:
        return None


def _window_end(session: Session, start: ColumnElement[Any], days: int) -> ColumnElement[Any]:
    """``start + days`` in SQL, in absolute time (24-hour days whatever the time zone)."""
    if session.get_bind().dialect.name == "postgresql":
        return start + func.make_interval(0, 0, 0, 0, days * 24)
    # SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS.ffffff': shift the date part, keep the fraction.
    shifted = func.strftime("%Y-%m-%d %H:%M:%S", start, f"+{days} days")
    return shifted.op("||")(func.substr(start, 20))


def compute(session: Session, campaign_id: str, *, currency: str, point_cost: Decimal) -> Results:
    """Every figure of every arm of ``campaign_id`` (see the module's definitions)."""
    state = session.get(CampaignState, campaign_id)
    if state is None:
        raise CampaignNotFound(f"No campaign {campaign_id[:64]!r}.")
    name, experiment = _definition(state)
    confidence = experiment.confidence if experiment else DEFAULT_CONFIDENCE
    event = experiment.conversion.event if experiment else DEFAULT_EVENT
    days = experiment.conversion.days if experiment else DEFAULT_DAYS

    arms: dict[str, ArmResult] = {}
    if experiment is not None:
        if experiment.holdout_percent > 0:
            arms[HOLDOUT] = ArmResult(HOLDOUT, None, True)
        for v in experiment.variants:
            arms[v.id] = ArmResult(v.id, v.name, False)

    def arm(key: str) -> ArmResult:
        if key not in arms:
            arms[key] = ArmResult(key, None, key == HOLDOUT)
        return arms[key]

    mine = Rc.campaign_id == campaign_id
    reached = Rc.status.notin_(NOT_REACHED)
    start = func.coalesce(Rc.reached_at, Rc.assigned_at)

    # 1. recipients, messages, opens, clicks, coupons issued; the last window start.
    coupon_code = Rc.detail["coupon_code"].as_string()
    rows = session.execute(
        select(
            Rc.arm,
            Rc.status,
            func.count(),
            func.sum(case((Message.status == "sent", 1), else_=0)),
            func.sum(case((Rc.opened_at.isnot(None) | Message.read_at.isnot(None), 1), else_=0)),
            func.sum(case((Rc.clicked_at.isnot(None), 1), else_=0)),
            func.sum(case((coupon_code.isnot(None), 1), else_=0)),
            func.max(start),
        )
        .outerjoin(Message, Message.id == Rc.message_id)
        .where(mine)
        .group_by(Rc.arm, Rc.status)
    ).all()
    last_start: datetime | None = None
    for key, status, count, sent, opened, clicked, coupons, latest in rows:
        a = arm(key)
        a.statuses[status] = int(count)
        a.audience += int(count)
        a.delivered += int(sent or 0)
        a.opened += int(opened or 0)
        a.clicked += int(clicked or 0)
        a.coupons_issued += int(coupons or 0)
        if status not in NOT_REACHED:
            a.reached += int(count)
            if latest is not None:
                latest = _aware(latest)
                last_start = latest if last_start is None else max(last_start, latest)

    # 2. orders in each reached member's window, summed per member, then per arm.
    end = _window_end(session, start, days)
    window = and_(
        Order.member_id == Rc.member_id, Order.occurred_at >= start, Order.occurred_at < end
    )
    per_member = (
        select(
            Rc.arm.label("arm"),
            func.sum(Order.total_minor - Order.refunded_minor).label("net"),
            func.max(case((Order.status != "refunded", 1), else_=0)).label("paid"),
        )
        .join(Order, window)
        .where(mine, reached)
        .group_by(Rc.arm, Rc.member_id)
        .subquery()
    )
    net = per_member.c.net
    for key, buyers, paid, revenue, squares in session.execute(
        select(
            per_member.c.arm,
            func.count(),
            _sum0(per_member.c.paid),
            _sum0(net),
            _sum0(_squared(session, net)),
        ).group_by(per_member.c.arm)
    ).all():
        a = arm(key)
        a.buyers, a.revenue_minor = int(buyers), int(revenue)
        a.revenue_squares = _exact(squares)
        if event == DEFAULT_EVENT:
            a.conversions = int(paid)

    # 3. a conversion event other than a paid order: members with one in their window.
    if event != DEFAULT_EVENT:
        in_window = and_(
            Event.member_id == Rc.member_id,
            Event.event_type == event,
            Event.occurred_at >= start,
            Event.occurred_at < end,
        )
        for key, count in session.execute(
            select(Rc.arm, func.count(func.distinct(Rc.member_id)))
            .join(Event, in_window)
            .where(mine, reached)
            .group_by(Rc.arm)
        ).all():
            arm(key).conversions = int(count)

    # 4. the campaign's points, attributed by source_ref 'campaign:<id>:<member>'.
    prefix = f"campaign:{campaign_id}:"
    for key, points in session.execute(
        select(Rc.arm, func.coalesce(func.sum(LedgerEntry.points), 0))
        .join(
            LedgerEntry,
            and_(
                LedgerEntry.member_id == Rc.member_id,
                LedgerEntry.occurred_at >= Rc.assigned_at,
                LedgerEntry.source_type == "campaign",
                func.substr(LedgerEntry.source_ref, 1, len(prefix)) == literal(prefix),
            ),
        )
        .where(mine)
        .group_by(Rc.arm)
    ).all():
        arm(key).points = int(points)

    # 5. discounts of the campaign's coupons that were used (not rolled back).
    for key, uses, discount in session.execute(
        select(Rc.arm, func.count(CouponUse.id), _sum0(CouponUse.discount_minor))
        .join(Coupon, and_(Coupon.code == coupon_code, Coupon.source == "campaign"))
        .join(CouponUse, and_(CouponUse.coupon_id == Coupon.id, CouponUse.rolled_back_at.is_(None)))
        .where(mine)
        .group_by(Rc.arm)
    ).all():
        a = arm(key)
        a.coupon_uses, a.coupon_cost_minor = int(uses), int(discount)

    scale = Decimal(10) ** exponent(currency)
    for a in arms.values():
        a.points_cost_minor = Decimal(a.points) * point_cost * scale
    ordered = [arms[HOLDOUT]] if HOLDOUT in arms else []
    ordered += [a for k, a in arms.items() if k != HOLDOUT]
    _lift(ordered, confidence)
    return Results(
        campaign_id=campaign_id,
        name=name,
        status=state.status,
        launched_at=state.launched_at,
        currency=currency,
        point_cost=point_cost,
        confidence=confidence,
        conversion_event=event,
        conversion_days=days,
        experiment=experiment is not None,
        arms=ordered,
        window_closes_at=last_start + timedelta(days=days) if last_start else None,
    )


def _lift(arms: list[ArmResult], confidence: float) -> None:
    base = next((a for a in arms if a.holdout), None)
    if base is None:
        return
    for a in arms:
        if a.holdout:
            continue
        a.conversion_lift = stats.rate_difference(
            a.conversions, a.reached, base.conversions, base.reached, confidence
        )
        a.relative_lift = stats.relative_lift(
            a.conversions, a.reached, base.conversions, base.reached
        )
        a.revenue_lift = stats.welch_moments(a.moments, base.moments, confidence)


def _sum0(column: Any) -> Any:
    return func.coalesce(func.sum(column), 0)


def _squared(session: Session, value: Any) -> Any:
    """``value²`` without overflow: exact ``numeric`` on PostgreSQL; on SQLite a double
    (exact while sums of squares stay below 2⁵³, i.e. for any SQLite-sized programme)."""
    if session.get_bind().dialect.name == "postgresql":
        exact = cast(value, Numeric)
        return exact * exact
    return cast(value, Float) * value


def _exact(value: Any) -> int:
    """A sum of squares as an integer (PostgreSQL returns a Decimal, SQLite a float)."""
    return int(Decimal(str(value or 0)).to_integral_value())


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


__all__ = ["CONTROL", "CampaignNotFound", "Results", "compute"]


def load(session: Session, campaign_id: str, *, now: datetime, point_cost: Decimal) -> Results:
    """:func:`compute` in the currency of the programme in force at ``now``."""
    currency = programmes.current(session, now=now).currency
    return compute(session, campaign_id, currency=currency, point_cost=point_cost)
