"""The projected dashboard of one simulated design, read from its throwaway database.

Definitions (money in the design's currency, points in whole points):

- ``members``: customers enrolled by the replay; ``orders``: orders recorded;
  ``revenue``: their net value (totals minus refunds).
- ``points_issued``: points ever earned (the accounts' lifetime earned, pending included
  once released); ``points_redeemed``: points spent on rewards; ``points_expired``: points
  that lapsed; ``points_outstanding``: points available to spend at ``as_of``;
  ``points_pending``: points still in their return window.
- ``liability``: (outstanding + pending) times ``cost_per_point``.
- ``coupons_issued`` and ``coupon_cost``: coupons the design issued (spend thresholds,
  redemptions) and the face value of the fixed-amount ones (a percentage coupon's cost depends
  on the order it is used on: counted, not valued).
- ``members_per_tier``: each member's tier at ``as_of``.
- Monthly (calendar months in UTC, from the first order to ``as_of``): points issued,
  redeemed and expired in the month from the ledger, outstanding at the end of the month (the
  running ledger balance), new members and orders, and the tier mix at the end of the month
  (each member's latest tier change by then; members with none are in the first tier).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from lealta.imports.service import ImportReport
from lealta.kit.db import Database
from lealta.kit.money import from_minor
from lealta.models import Account, Coupon, LedgerEntry, Member, Order, TierChange
from lealta.programme.schema import Programme

NO_TIER = "none"
MAX_MONTHS = 600
SHOWN_REJECTIONS = 20
STREAM = 10_000


@dataclass(slots=True)
class Month:
    month: str  # YYYY-MM
    new_members: int = 0
    orders: int = 0
    points_issued: int = 0
    points_redeemed: int = 0
    points_expired: int = 0
    points_outstanding: int = 0
    tier_mix: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Projection:
    programme: str
    currency: str
    as_of: datetime
    cost_per_point: Decimal
    tiers: list[str]
    rows_read: int = 0
    imported: int = 0
    rejected: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    members: int = 0
    orders: int = 0
    revenue: Decimal = Decimal(0)
    points_issued: int = 0
    points_redeemed: int = 0
    points_expired: int = 0
    points_outstanding: int = 0
    points_pending: int = 0
    liability: Decimal = Decimal(0)
    coupons_issued: int = 0
    coupon_cost: Decimal = Decimal(0)
    members_per_tier: dict[str, int] = field(default_factory=dict)
    months: list[Month] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Projection:
        """The projection :meth:`to_json` wrote (a stored console run)."""
        values = dict(data)
        for key in ("cost_per_point", "revenue", "liability", "coupon_cost"):
            values[key] = Decimal(values[key])
        values["as_of"] = datetime.fromisoformat(values["as_of"])
        values["months"] = [Month(**m) for m in values["months"]]
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: money as decimal strings, times in ISO 8601."""
        data = asdict(self)
        for key in ("cost_per_point", "revenue", "liability", "coupon_cost"):
            data[key] = str(data[key])
        data["as_of"] = self.as_of.isoformat()
        data["seconds"] = round(self.seconds, 3)
        return data


def _month(at: datetime) -> str:
    return f"{at.astimezone(UTC).year:04d}-{at.astimezone(UTC).month:02d}"


def _months(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:])
    out: list[str] = []
    while len(out) < MAX_MONTHS:
        label = f"{year:04d}-{month:02d}"
        out.append(label)
        if label >= last:
            break
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return out


def read(
    db: Database,
    programme: Programme,
    *,
    as_of: datetime,
    cost_per_point: Decimal,
    report: ImportReport,
) -> Projection:
    """Every figure of the projection, from the simulation's database (streamed reads)."""
    currency = programme.currency
    levels = [t.id for t in programme.tiers.levels] if programme.tiers else []
    p = Projection(
        programme=programme.name,
        currency=currency,
        as_of=as_of,
        cost_per_point=cost_per_point,
        tiers=levels or [NO_TIER],
        rows_read=report.rows_read,
        imported=report.imported,
        rejected=report.rejected_count,
        rejections=[r._asdict() for r in report.rejected[:SHOWN_REJECTIONS]],
    )
    with db.unit_of_work(write=False) as session:
        p.members = session.scalar(select(func.count()).select_from(Member)) or 0
        orders, net = session.execute(
            select(
                func.count(), func.coalesce(func.sum(Order.total_minor - Order.refunded_minor), 0)
            )
        ).one()
        p.orders, p.revenue = int(orders), from_minor(int(net), currency)
        sums = session.execute(
            select(
                func.coalesce(func.sum(Account.lifetime_earned), 0),
                func.coalesce(func.sum(Account.lifetime_spent), 0),
                func.coalesce(func.sum(Account.points_expired), 0),
                func.coalesce(func.sum(Account.points_available), 0),
                func.coalesce(func.sum(Account.points_pending), 0),
            )
        ).one()
        (
            p.points_issued,
            p.points_redeemed,
            p.points_expired,
            p.points_outstanding,
            p.points_pending,
        ) = (int(v) for v in sums)
        p.liability = (Decimal(p.points_outstanding + p.points_pending) * cost_per_point).quantize(
            Decimal("0.01")
        )
        coupons, face = session.execute(
            select(func.count(), func.coalesce(func.sum(Coupon.amount_off_minor), 0))
        ).one()
        p.coupons_issued, p.coupon_cost = int(coupons), from_minor(int(face or 0), currency)
        tiers = Counter(
            {
                (tier or NO_TIER): int(n)
                for tier, n in session.execute(
                    select(Account.tier_id, func.count()).group_by(Account.tier_id)
                )
            }
        )
        p.members_per_tier = {t: tiers.get(t, 0) for t in p.tiers} | {
            t: n for t, n in tiers.items() if t not in p.tiers
        }
        first = session.scalar(select(func.min(Order.occurred_at)))
        if first is None:
            return p
        labels = _months(_month(first), _month(as_of))
        months = {label: Month(label) for label in labels}
        last_label = labels[-1]

        def bucket(at: datetime) -> Month | None:
            label = _month(at)
            return months.get(label if label <= last_label else last_label)

        for (at,) in session.execute(
            select(Member.enrolled_at).execution_options(yield_per=STREAM)
        ):
            if (m := bucket(at)) is not None:
                m.new_members += 1
        for (at,) in session.execute(select(Order.occurred_at).execution_options(yield_per=STREAM)):
            if (m := bucket(at)) is not None:
                m.orders += 1
        delta: Counter[str] = Counter()
        for at, kind, points in session.execute(
            select(
                LedgerEntry.occurred_at, LedgerEntry.entry_type, LedgerEntry.points
            ).execution_options(yield_per=STREAM)
        ):
            label = min(_month(at), last_label)
            if label not in months:
                label = labels[0]
            m = months[label]
            delta[label] += points
            if kind == "earn":
                m.points_issued += points
            elif kind == "redeem":
                m.points_redeemed -= points
            elif kind == "expire":
                m.points_expired -= points
        changes: dict[str, list[tuple[int, str]]] = {}
        for member_id, at, tier in session.execute(
            select(TierChange.member_id, TierChange.occurred_at, TierChange.to_tier)
            .order_by(TierChange.occurred_at, TierChange.id)
            .execution_options(yield_per=STREAM)
        ):
            changes.setdefault(min(_month(at), last_label), []).append((member_id, tier))
    running = 0
    current: dict[int, str] = {}
    base = levels[0] if levels else NO_TIER
    enrolled = 0
    for label in labels:
        m = months[label]
        running += delta[label]
        m.points_outstanding = running
        enrolled += m.new_members
        for member_id, tier in changes.get(label, []):
            current[member_id] = tier
        mix = Counter(current.values())
        mix[base] += enrolled - len(current)
        m.tier_mix = {t: mix.get(t, 0) for t in p.tiers} | {
            t: n for t, n in mix.items() if t not in p.tiers and n
        }
    p.months = [months[label] for label in labels]
    return p


# --- comparison --------------------------------------------------------------------------------

COMPARED = (
    "members",
    "orders",
    "revenue",
    "points_issued",
    "points_redeemed",
    "points_expired",
    "points_outstanding",
    "points_pending",
    "liability",
    "coupons_issued",
    "coupon_cost",
)


@dataclass(frozen=True, slots=True)
class Difference:
    figure: str
    first: Decimal
    second: Decimal

    @property
    def change(self) -> Decimal:
        return self.second - self.first

    @property
    def percent(self) -> Decimal | None:
        if self.first == 0:
            return None
        return (self.change * 100 / abs(self.first)).quantize(Decimal("0.1"))


def differences(a: Projection, b: Projection) -> list[Difference]:
    """Each headline figure of both designs, and of each tier's members."""
    out = [
        Difference(name, Decimal(getattr(a, name)), Decimal(getattr(b, name))) for name in COMPARED
    ]
    for tier in dict.fromkeys([*a.members_per_tier, *b.members_per_tier]):
        out.append(
            Difference(
                f"tier:{tier}",
                Decimal(a.members_per_tier.get(tier, 0)),
                Decimal(b.members_per_tier.get(tier, 0)),
            )
        )
    return out


def comparison_json(a: Projection, b: Projection) -> dict[str, Any]:
    return {
        "designs": [a.to_json(), b.to_json()],
        "differences": [
            {
                "figure": d.figure,
                "first": str(d.first),
                "second": str(d.second),
                "change": str(d.change),
                "percent": str(d.percent) if d.percent is not None else None,
            }
            for d in differences(a, b)
        ],
    }
