"""The projected dashboard of one simulated design (from the replay, or from a Lealta database).

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
- ``members_per_segment``: members in each of the design's ``segments`` at ``as_of``, by the
  segment's compiled SQL (the recompute job's) over the final members, accounts, orders and
  lots; a static segment (an uploaded list) holds none of the replayed members.
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
    members_per_segment: dict[str, int] = field(default_factory=dict)
    segment_names: dict[str, str] = field(default_factory=dict)
    segment_names_es: dict[str, str] = field(default_factory=dict)
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
    """``YYYY-MM`` of ``at`` in UTC (called for every ledger line replayed: labels are
    made once per month)."""
    if at.tzinfo is not UTC and at.utcoffset():  # UTC already (Pydantic's UTC is another
        at = at.astimezone(UTC)  # tzinfo): no conversion
    key = at.year * 12 + at.month
    label = _LABELS.get(key)
    if label is None:
        label = _LABELS[key] = f"{at.year:04d}-{at.month:02d}"
    return label


_LABELS: dict[int, str] = {}


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


class Tally:
    """The monthly series, accumulated row by row (from a database or from a replay) and
    bucketed at the end: calendar months in UTC from the first order's to ``as_of``'s."""

    __slots__ = ("changes", "enrolled", "first_order", "flows", "net_minor", "order_months")

    def __init__(self) -> None:
        self.enrolled: Counter[str] = Counter()
        self.order_months: Counter[str] = Counter()
        self.flows: dict[str, list[int]] = {}
        """Month -> [issued, redeemed, expired, balance change] of the ledger."""
        self.changes: list[tuple[datetime, int, int, str]] = []
        """(moment, sequence, member, tier) of every tier change, in the order made."""
        self.first_order: datetime | None = None
        self.net_minor = 0

    def member(self, enrolled_at: datetime) -> None:
        self.enrolled[_month(enrolled_at)] += 1

    def order(self, at: datetime, net_minor: int) -> None:
        self.order_months[_month(at)] += 1
        self.net_minor += net_minor
        if self.first_order is None or at < self.first_order:
            self.first_order = at

    def entry(self, at: datetime, kind: str, points: int) -> None:
        label = _month(at)
        flow = self.flows.get(label)
        if flow is None:
            flow = self.flows[label] = [0, 0, 0, 0]
        flow[3] += points
        if kind == "earn":
            flow[0] += points
        elif kind == "redeem":
            flow[1] -= points
        elif kind == "expire":
            flow[2] -= points

    def tier_change(self, at: datetime, member_id: int, tier: str) -> None:
        self.changes.append((at, len(self.changes), member_id, tier))

    def months(self, as_of: datetime, levels: list[str], shown: list[str]) -> list[Month]:
        """The series, each month's tier mix keyed by ``shown`` (then any other tier)."""
        if self.first_order is None:
            return []
        labels = _months(_month(self.first_order), _month(as_of))
        months = {label: Month(label) for label in labels}
        last_label = labels[-1]
        for label, n in self.enrolled.items():
            if (m := months.get(min(label, last_label))) is not None:
                m.new_members += n
        for label, n in self.order_months.items():
            if (m := months.get(min(label, last_label))) is not None:
                m.orders += n
        delta: Counter[str] = Counter()
        for label, (issued, redeemed, expired, change) in sorted(self.flows.items()):
            label = min(label, last_label)
            if label not in months:
                label = labels[0]
            m = months[label]
            delta[label] += change
            m.points_issued += issued
            m.points_redeemed += redeemed
            m.points_expired += expired
        changes: dict[str, list[tuple[int, str]]] = {}
        for at, _, member_id, tier in sorted(self.changes):
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
            m.tier_mix = {t: mix.get(t, 0) for t in shown} | {
                t: n for t, n in mix.items() if t not in shown and n
            }
        return [months[label] for label in labels]


def start(
    programme: Programme, *, as_of: datetime, cost_per_point: Decimal, report: ImportReport
) -> Projection:
    """A projection with the design's names and the replay's counts, figures still zero."""
    levels = [t.id for t in programme.tiers.levels] if programme.tiers else []
    return Projection(
        programme=programme.name,
        currency=programme.currency,
        as_of=as_of,
        cost_per_point=cost_per_point,
        tiers=levels or [NO_TIER],
        rows_read=report.rows_read,
        imported=report.imported,
        rejected=report.rejected_count,
        rejections=[r._asdict() for r in report.rejected[:SHOWN_REJECTIONS]],
        segment_names={s.id: _segment_name(s) for s in programme.segments},
        segment_names_es={s.id: _segment_name(s, "es") for s in programme.segments},
    )


def _segment_name(segment: Any, language: str = "en") -> str:
    name = segment.name
    if name is None:
        return str(segment.id)
    if isinstance(name, str):
        return name
    first = getattr(name, language, None)
    return str(first or getattr(name, "es", None) or segment.id)


def finish(
    p: Projection,
    programme: Programme,
    tally: Tally,
    *,
    accounts: list[tuple[int, int, int, int, int, str | None]],
    coupons: int,
    coupon_face_minor: int,
    segments: dict[str, int],
) -> Projection:
    """Fill ``p`` from the tally, the accounts (lifetime earned, lifetime spent, expired,
    available, pending, tier) and the coupons issued."""
    currency = p.currency
    levels = [t.id for t in programme.tiers.levels] if programme.tiers else []
    p.members = len(accounts)
    p.orders = sum(tally.order_months.values())
    p.revenue = from_minor(tally.net_minor, currency)
    p.points_issued = sum(a[0] for a in accounts)
    p.points_redeemed = sum(a[1] for a in accounts)
    p.points_expired = sum(a[2] for a in accounts)
    p.points_outstanding = sum(a[3] for a in accounts)
    p.points_pending = sum(a[4] for a in accounts)
    p.liability = (Decimal(p.points_outstanding + p.points_pending) * p.cost_per_point).quantize(
        Decimal("0.01")
    )
    p.coupons_issued, p.coupon_cost = coupons, from_minor(coupon_face_minor, currency)
    tiers = Counter((a[5] or NO_TIER) for a in accounts)
    p.members_per_tier = {t: tiers.get(t, 0) for t in p.tiers} | {
        t: n for t, n in tiers.items() if t not in p.tiers
    }
    p.members_per_segment = {key: segments.get(key, 0) for key in p.segment_names}
    p.months = tally.months(p.as_of, levels, p.tiers)
    return p


def read(
    db: Database,
    programme: Programme,
    *,
    as_of: datetime,
    cost_per_point: Decimal,
    report: ImportReport,
    segments: dict[str, int] | None = None,
) -> Projection:
    """Every figure of the projection from a Lealta database (streamed reads): the reference
    the in-memory replay is tested against (a real import into a fresh Lealta)."""
    p = start(programme, as_of=as_of, cost_per_point=cost_per_point, report=report)
    tally = Tally()
    with db.unit_of_work(write=False) as session:
        accounts = [
            (a, b, c, d, e, t)
            for a, b, c, d, e, t in session.execute(
                select(
                    Account.lifetime_earned,
                    Account.lifetime_spent,
                    Account.points_expired,
                    Account.points_available,
                    Account.points_pending,
                    Account.tier_id,
                )
            )
        ]
        coupons, face = session.execute(
            select(func.count(), func.coalesce(func.sum(Coupon.amount_off_minor), 0))
        ).one()
        for (at,) in session.execute(
            select(Member.enrolled_at).execution_options(yield_per=STREAM)
        ):
            tally.member(at)
        for at, net in session.execute(
            select(Order.occurred_at, Order.total_minor - Order.refunded_minor).execution_options(
                yield_per=STREAM
            )
        ):
            tally.order(at, int(net))
        for at, kind, points in session.execute(
            select(
                LedgerEntry.occurred_at, LedgerEntry.entry_type, LedgerEntry.points
            ).execution_options(yield_per=STREAM)
        ):
            tally.entry(at, kind, points)
        for member_id, at, tier in session.execute(
            select(TierChange.member_id, TierChange.occurred_at, TierChange.to_tier)
            .order_by(TierChange.occurred_at, TierChange.id)
            .execution_options(yield_per=STREAM)
        ):
            tally.tier_change(at, member_id, tier)
    return finish(
        p,
        programme,
        tally,
        accounts=accounts,
        coupons=int(coupons),
        coupon_face_minor=int(face or 0),
        segments=segments or {},
    )


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
    """Each headline figure of both designs, their members per tier and per segment."""
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
    for segment in dict.fromkeys([*a.members_per_segment, *b.members_per_segment]):
        out.append(
            Difference(
                f"segment:{segment}",
                Decimal(a.members_per_segment.get(segment, 0)),
                Decimal(b.members_per_segment.get(segment, 0)),
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
