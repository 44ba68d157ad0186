"""A segment's conditions compiled to ONE SQL query (SQLAlchemy Core, SQLite and PostgreSQL).

The query selects ``member_id`` from ``members`` joined to ``accounts``; each derived metric a
condition needs is one outer-joined aggregate (orders in a window, open lots expiring, events
counted, the latest CLV predictions) or one window-function subquery (RFM quintiles and spend
deciles with ``NTILE``), built once per distinct window however many conditions read it. Time
is a bound ``now``: "days since" becomes a comparison of the timestamp with ``now - N days``, so
the same SQL runs on both engines and uses the indexes on the timestamps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from typing import cast as typed

from sqlalchemy import (
    Float,
    Table,
    and_,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Select, Subquery

from lealta.kit.money import exponent
from lealta.kit.periods import add_months, start_of_year
from lealta.models import (
    Account,
    ClvFit,
    ClvPrediction,
    Consent,
    Event,
    Member,
    Order,
    PointLot,
)
from lealta.segments.schema import (
    DEFAULT_EXPIRING_DAYS,
    DEFAULT_WINDOW_DAYS,
    Condition,
    Group,
)

members = typed(Table, Member.__table__)
accounts = typed(Table, Account.__table__)
orders = typed(Table, Order.__table__)
lots = typed(Table, PointLot.__table__)
events = typed(Table, Event.__table__)
consents = typed(Table, Consent.__table__)
predictions = typed(Table, ClvPrediction.__table__)
fits = typed(Table, ClvFit.__table__)


def window_bounds(c: Condition, now: datetime) -> tuple[datetime, datetime | None]:
    """``[since, until)`` of a windowed condition: the last ``days`` (default 365) or a
    calendar period in UTC."""
    if c.period is None:
        return now - timedelta(days=c.days or DEFAULT_WINDOW_DAYS), None
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    year = start_of_year(now).replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if c.period == "this_month":
        return month, None
    if c.period == "last_month":
        return add_months(month, -1), month
    if c.period == "this_year":
        return year, None
    return year.replace(year=year.year - 1), year


def window_days(c: Condition, now: datetime) -> float:
    since, until = window_bounds(c, now)
    return max(((until or now) - since).total_seconds() / 86400, 1.0)


@dataclass
class _Build(ABC):
    now: datetime
    currency: str
    member_id: int | None
    joins: dict[tuple[Any, ...], Subquery] = field(default_factory=dict)
    needs_member: bool = False
    """Whether a condition reads ``members`` (the query starts from ``accounts`` otherwise:
    one row per member too, and the figures most conditions read)."""

    def minor(self, value: Any) -> Any:
        """Currency units to integer minor units (what the tables hold)."""
        return Decimal(str(value)).scaleb(exponent(self.currency))

    def orders_in(self, c: Condition) -> Subquery:
        since, until = window_bounds(c, self.now)
        key = ("orders", since, until)
        if key not in self.joins:
            net = orders.c.total_minor - orders.c.refunded_minor
            stmt = (
                select(
                    orders.c.member_id,
                    func.count().label("n"),
                    func.sum(net).label("spend"),
                )
                .where(orders.c.occurred_at >= since, orders.c.occurred_at <= self.now, net > 0)
                .group_by(orders.c.member_id)
            )
            if until is not None:
                stmt = stmt.where(orders.c.occurred_at < until)
            if self.member_id is not None:
                stmt = stmt.where(orders.c.member_id == self.member_id)
            self.joins[key] = stmt.subquery(f"o{len(self.joins)}")
        return self.joins[key]

    def _window_agg(self, since: datetime, name: str) -> Any:
        """Orders and net spend per member since ``since``, over everyone (ranks need the
        whole population even when one member is evaluated)."""
        net = orders.c.total_minor - orders.c.refunded_minor
        return (
            select(orders.c.member_id, func.count().label("n"), func.sum(net).label("spend"))
            .where(orders.c.occurred_at >= since, orders.c.occurred_at <= self.now, net > 0)
            .group_by(orders.c.member_id)
            .subquery(name)
        )

    def ranks(self, c: Condition) -> Subquery:
        """RFM quintiles over members who ever ordered (R by last order, F and M by orders
        and net spend in the window); ties broken by member id (deterministic)."""
        since, _ = window_bounds(c, self.now)
        key = ("ranks", since)
        if key not in self.joins:
            agg = self._window_agg(since, f"ra{len(self.joins)}")
            n = func.coalesce(agg.c.n, 0)
            spend = func.coalesce(agg.c.spend, 0)
            who = accounts.c.member_id
            self.joins[key] = (
                select(
                    who.label("member_id"),
                    func.ntile(5).over(order_by=(accounts.c.last_order_at, who)).label("r"),
                    func.ntile(5).over(order_by=(n, who)).label("f"),
                    func.ntile(5).over(order_by=(spend, who)).label("m"),
                )
                .select_from(accounts.outerjoin(agg, agg.c.member_id == who))
                .where(accounts.c.last_order_at.is_not(None))
            ).subquery(f"r{len(self.joins)}")
        return self.joins[key]

    def deciles(self, c: Condition) -> Subquery:
        """Spend deciles (10 = top) among members who spent in the window."""
        since, _ = window_bounds(c, self.now)
        key = ("deciles", since)
        if key not in self.joins:
            agg = self._window_agg(since, f"da{len(self.joins)}")
            self.joins[key] = (
                select(
                    agg.c.member_id,
                    func.ntile(10).over(order_by=(agg.c.spend, agg.c.member_id)).label("d"),
                ).where(agg.c.spend > 0)
            ).subquery(f"d{len(self.joins)}")
        return self.joins[key]

    def expiring(self, c: Condition) -> Subquery:
        horizon = self.now + timedelta(days=c.days or DEFAULT_EXPIRING_DAYS)
        key = ("expiring", horizon)
        if key not in self.joins:
            stmt = (
                select(lots.c.member_id, func.sum(lots.c.remaining).label("points"))
                .where(
                    lots.c.remaining > 0,
                    lots.c.pending.is_(False),
                    lots.c.expires_at.is_not(None),
                    lots.c.expires_at > self.now,
                    lots.c.expires_at <= horizon,
                )
                .group_by(lots.c.member_id)
            )
            if self.member_id is not None:
                stmt = stmt.where(lots.c.member_id == self.member_id)
            self.joins[key] = stmt.subquery(f"x{len(self.joins)}")
        return self.joins[key]

    def event_counts(self, c: Condition) -> Subquery:
        since = self.now - timedelta(days=c.days) if c.days else None
        key = ("events", c.field, since)
        if key not in self.joins:
            kind = (
                events.c.event_type == "review.posted"
                if c.field == "reviews"
                else events.c.event_type.like("referral.%")
            )
            stmt = (
                select(events.c.member_id, func.count().label("n"))
                .where(kind, events.c.occurred_at <= self.now)
                .group_by(events.c.member_id)
            )
            if since is not None:
                stmt = stmt.where(events.c.occurred_at >= since)
            if self.member_id is not None:
                stmt = stmt.where(events.c.member_id == self.member_id)
            self.joins[key] = stmt.subquery(f"e{len(self.joins)}")
        return self.joins[key]

    def clv(self) -> Subquery:
        key = ("clv",)
        if key not in self.joins:
            latest = select(func.max(fits.c.id)).where(fits.c.status == "ok").scalar_subquery()
            self.joins[key] = (
                select(
                    predictions.c.member_id,
                    predictions.c.clv,
                    predictions.c.probability_alive,
                ).where(predictions.c.fit_id == latest)
            ).subquery(f"c{len(self.joins)}")
        return self.joins[key]

    # --- conditions --------------------------------------------------------------------

    def group(self, g: Group) -> ColumnElement[bool]:
        parts = [self.group(i) if isinstance(i, Group) else self.condition(i) for i in g.items]
        return and_(true(), *parts) if g.all is not None else or_(false(), *parts)

    def condition(self, c: Condition) -> ColumnElement[bool]:
        f = c.field
        if f == "tier":
            return _compare(accounts.c.tier_id, c.op, c.value)
        if f in ("language", "tag", "attribute", "enrolled_days"):
            self.needs_member = True
        if f == "language":
            return _compare(members.c.language, c.op, c.value)
        if f == "tag":
            return self.tag(c)
        if f == "attribute":
            assert c.key is not None
            item = members.c.attributes[c.key]
            if c.op in ("gt", "gte", "lt", "lte"):
                return _compare(item.as_float(), c.op, c.value)
            if c.op in ("is_set", "is_not_set"):
                return _compare(item.as_string(), c.op, None)
            value = [str(v).lower() if isinstance(v, bool) else str(v) for v in _list(c.value)]
            return _compare(item.as_string(), c.op, value if c.op in ("in", "not_in") else value[0])
        if f == "consent":
            return self.consent(c)
        if f == "enrolled_days":
            return _days_since(members.c.enrolled_at, c.op, c.value, self.now)
        if f == "days_since_last_order":
            return _days_since(accounts.c.last_order_at, c.op, c.value, self.now)
        if f == "activity":
            return self.activity(c)
        if f in ("orders", "spend", "aov", "frequency"):
            agg = self.orders_in(c)
            n = _zero_or(agg.c.n, c)
            spend = _zero_or(agg.c.spend, c)
            if f == "orders":
                return _compare(n, c.op, c.value)
            if f == "spend":
                return _compare(spend, c.op, self.money(c.value))
            if f == "aov":
                aov = cast(agg.c.spend, Float) / cast(func.nullif(agg.c.n, 0), Float)
                return _compare(aov, c.op, self.money(c.value))
            per_year = cast(n, Float) * (365.0 / window_days(c, self.now))
            return _compare(per_year, c.op, c.value)
        if f in ("rfm_r", "rfm_f", "rfm_m"):
            return _compare(self.ranks(c).c[f[-1]], c.op, c.value)
        if f == "spend_decile":
            return _compare(self.deciles(c).c.d, c.op, c.value)
        if f == "points_balance":
            return _compare(accounts.c.points_available, c.op, c.value)
        if f == "points_expiring":
            return _compare(_zero_or(self.expiring(c).c.points, c), c.op, c.value)
        if f in ("referrals", "reviews"):
            return _compare(_zero_or(self.event_counts(c).c.n, c), c.op, c.value)
        if f == "clv":
            minor = None if c.value is None else self.money(c.value)
            return _compare(self.clv().c.clv * 10 ** exponent(self.currency), c.op, minor)
        if f == "probability_alive":
            return _compare(self.clv().c.probability_alive, c.op, c.value)
        raise ValueError(f"unknown field {f!r}")  # pragma: no cover - the schema checks

    def money(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.minor(v) for v in value]
        return self.minor(value)

    @abstractmethod
    def tag(self, c: Condition) -> ColumnElement[bool]:
        """Whether the member has the tag ``c.value`` (JSON arrays differ per dialect)."""

    def consent(self, c: Condition) -> ColumnElement[bool]:
        later = consents.alias("later")
        granted = exists(
            select(literal(1))
            .select_from(consents)
            .where(
                consents.c.member_id == accounts.c.member_id,
                consents.c.purpose == c.key,
                consents.c.granted.is_(True),
                ~exists(
                    select(literal(1))
                    .select_from(later)
                    .where(
                        later.c.member_id == consents.c.member_id,
                        later.c.purpose == consents.c.purpose,
                        later.c.id > consents.c.id,
                    )
                ),
            )
        )
        wanted = bool(c.value) if c.op == "eq" else not bool(c.value)
        return granted if wanted else not_(granted)

    def activity(self, c: Condition) -> ColumnElement[bool]:
        last = accounts.c.last_order_at
        active_since = self.now - timedelta(days=c.active_days)
        inactive_since = self.now - timedelta(days=c.inactive_days)
        bands: dict[str, ColumnElement[bool]] = {
            "active": last > active_since,
            "at_risk": and_(last <= active_since, last > inactive_since),
            "inactive": or_(last.is_(None), last <= inactive_since),
        }
        chosen = [bands[str(v)] for v in _list(c.value)]
        hit = or_(*chosen) if len(chosen) > 1 else chosen[0]
        return not_(hit) if c.op in ("ne", "not_in") else hit


class _SqliteBuild(_Build):
    def tag(self, c: Condition) -> ColumnElement[bool]:
        each = func.json_each(members.c.tags).table_valued("value")
        has = exists(select(literal(1)).select_from(each).where(each.c.value == c.value))
        return has if c.op == "has" else not_(has)


class _PgBuild(_Build):
    def tag(self, c: Condition) -> ColumnElement[bool]:
        has = members.c.tags.contains([c.value])
        return has if c.op == "has" else not_(has)


def _holds_at_zero(op: str, value: Any) -> bool:
    """Whether a count or sum of nothing (0) satisfies ``op value``."""
    values = [float(v) for v in _list(value) if isinstance(v, int | float)]
    if not values:
        return op in ("ne", "not_in")
    v = values[0]
    return {
        "eq": v == 0, "ne": v != 0, "gt": v < 0, "gte": v <= 0, "lt": v > 0, "lte": v >= 0,
        "in": 0 in values, "not_in": 0 not in values,
        "between": len(values) == 2 and values[0] <= 0 <= values[1],
    }.get(op, True)  # fmt: skip


def _zero_or(column: Any, c: Condition) -> Any:
    """A per-member aggregate outer-joined: members without rows count as 0. When 0 cannot
    satisfy the condition the bare column is compared instead (NULL fails just the same),
    which lets PostgreSQL turn the outer join into an inner one."""
    return func.coalesce(column, 0) if _holds_at_zero(c.op, c.value) else column


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    """``column <op> value``; NULL (no data) satisfies nothing but ``ne``/``not_in`` of a
    value it is not, and ``is_not_set``."""
    if op == "eq":
        return column == value  # type: ignore[no-any-return]
    if op == "ne":
        return or_(column.is_(None), column != value)
    if op == "gt":
        return column > value  # type: ignore[no-any-return]
    if op == "gte":
        return column >= value  # type: ignore[no-any-return]
    if op == "lt":
        return column < value  # type: ignore[no-any-return]
    if op == "lte":
        return column <= value  # type: ignore[no-any-return]
    if op == "in":
        return column.in_(_list(value))  # type: ignore[no-any-return]
    if op == "not_in":
        return or_(column.is_(None), column.not_in(_list(value)))
    if op == "between":
        low, high = value
        return and_(column >= low, column <= high)
    if op == "is_set":
        return column.is_not(None)  # type: ignore[no-any-return]
    if op == "is_not_set":
        return column.is_(None)  # type: ignore[no-any-return]
    raise ValueError(f"unknown op {op!r}")  # pragma: no cover


def _days_since(column: Any, op: str, value: Any, now: datetime) -> ColumnElement[bool]:
    """Whole days elapsed since ``column`` (NULL stays NULL) compared without date maths in
    SQL: ``days >= n`` is ``column <= now - n days``, and so on."""

    def at(n: Any) -> datetime:
        return now - timedelta(days=float(n))

    if op == "is_set":
        return column.is_not(None)  # type: ignore[no-any-return]
    if op == "is_not_set":
        return column.is_(None)  # type: ignore[no-any-return]
    if op == "gte":
        return column <= at(value)  # type: ignore[no-any-return]
    if op == "gt":
        return column <= at(int(value) + 1)  # type: ignore[no-any-return]
    if op == "lte":
        return column > at(int(value) + 1)  # type: ignore[no-any-return]
    if op == "lt":
        return column > at(value)  # type: ignore[no-any-return]
    if op == "eq":
        return and_(column <= at(value), column > at(int(value) + 1))
    if op == "between":
        low, high = value
        return and_(column <= at(low), column > at(int(high) + 1))
    if op in ("in", "not_in"):
        hit = or_(*[_days_since(column, "eq", v, now) for v in _list(value)])
        return hit if op == "in" else not_(hit)
    if op == "ne":
        return not_(_days_since(column, "eq", value, now))
    raise ValueError(f"unknown op {op!r}")  # pragma: no cover


def compile_group(
    group: Group,
    *,
    dialect: str,
    now: datetime,
    currency: str,
    member_id: int | None = None,
) -> Select[Any]:
    """``SELECT accounts.member_id AS member_id`` of the members matching ``group`` at ``now``
    (only member ``member_id`` when given: the incremental re-evaluation)."""
    build: _Build = (_PgBuild if dialect == "postgresql" else _SqliteBuild)(
        now, currency, member_id
    )
    where = build.group(group)
    who = accounts.c.member_id
    source: Any = accounts
    if build.needs_member:
        source = source.join(members, members.c.id == who)
    for joined in build.joins.values():
        source = source.outerjoin(joined, joined.c.member_id == who)
    stmt = select(who.label("member_id")).select_from(source).where(where)
    if member_id is not None:
        stmt = stmt.where(who == member_id)
    return stmt
