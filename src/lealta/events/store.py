"""Member states in, outcomes out: the I/O at both ends of the engine, in SQLAlchemy Core.

Loading: :func:`lock_and_load` reads one member, its account (locked) and the lots due by a
moment in one statement; :func:`load_part` adds what the engine asked for
(:class:`~lealta.engine.state.StateIncomplete`); :func:`load_many` reads the complete states
of many members (the batch driver) in a handful of statements.

Writing: :func:`write` turns outcomes into one statement per table: ids for new orders,
entries and lots are reserved up front (a sequence on PostgreSQL, the table's maximum under
SQLite's write lock), then rows are inserted with executemany (COPY on PostgreSQL when
``bulk``) and changed rows updated with executemany.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import msgspec
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    String,
    Table,
    and_,
    any_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import array as pg_array
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from lealta.engine.core import TIER_ENTRY_PREFIX
from lealta.engine.errors import OrderAlreadyRecorded
from lealta.engine.outcome import Crossing, Outcome
from lealta.engine.state import (
    Contribution,
    Figures,
    Lot,
    MemberState,
    OrderState,
    Profile,
    Qualifying,
    RuleCounter,
    StateIncomplete,
)
from lealta.kit.db import (
    UTCDateTime,
    fetch,
    insert_ignore,
    insert_ignoring,
    json_bytes,
    run_on_psycopg,
    sqlite_moment,
)
from lealta.members.newcomer import NewMember
from lealta.models import (
    Account,
    CampaignRecipient,
    Event,
    LedgerEntry,
    LotAllocation,
    Member,
    Order,
    OrderItem,
    OutboxMessage,
    PointLot,
    Segment,
    SegmentMember,
    TierChange,
)
from lealta.outbox.events import DomainEvent
from lealta.programme.schema import Programme
from lealta.programme.service import in_force_digest
from lealta.rules.engine import Boost, compiled_for
from lealta.tiers import maths as tier_maths

_members = cast(Table, Member.__table__)
_accounts = cast(Table, Account.__table__)
_lots = cast(Table, PointLot.__table__)
_entries = cast(Table, LedgerEntry.__table__)
_allocations = cast(Table, LotAllocation.__table__)
_orders = cast(Table, Order.__table__)
_items = cast(Table, OrderItem.__table__)
_tier_changes = cast(Table, TierChange.__table__)
_outbox = cast(Table, OutboxMessage.__table__)
_events = cast(Table, Event.__table__)

_FIGURES = [f.name for f in msgspec.structs.fields(Figures)]
_DIGEST = in_force_digest(cast(datetime, bindparam("programme_at", type_=UTCDateTime()))).label(
    "digest"
)


class _KeysOf(FunctionElement[str]):
    """Keys joined with commas: ``string_agg`` on PostgreSQL, ``group_concat`` on SQLite."""

    type = String()
    inherit_cache = True


@compiles(_KeysOf)
def _keys_of(element: _KeysOf, compiler: Any, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


@compiles(_KeysOf, "postgresql")
def _keys_of_pg(element: _KeysOf, compiler: Any, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, ',')"


_segment_members = cast(Table, SegmentMember.__table__)
_segments = cast(Table, Segment.__table__)
_SEGMENT_KEYS = (
    select(_KeysOf(_segments.c.key))
    .select_from(_segment_members.join(_segments, _segments.c.id == _segment_members.c.segment_id))
    .where(_segment_members.c.member_id == _members.c.id)
    .scalar_subquery()
    .label("segment_keys")
)
"""The member's segment keys (``member.segments`` in rules): one lookup on the
``segment_members`` member index, folded into the state query."""


class _BoostsOf(FunctionElement[str]):
    """A member's campaign multipliers as ``campaign|factor|from|until`` (epoch seconds),
    comma-joined: ``string_agg`` on PostgreSQL, ``group_concat`` on SQLite."""

    type = String()
    inherit_cache = True


_EPOCH_SQLITE = "((julianday({0}) - 2440587.5) * 86400.0)"
_BAR = " || '|' || "


@compiles(_BoostsOf)
def _boosts_of(element: _BoostsOf, compiler: Any, **kw: Any) -> str:
    parts = [
        "campaign_id",
        "boost_factor",
        _EPOCH_SQLITE.format("reached_at"),
        _EPOCH_SQLITE.format("boost_until"),
    ]
    return f"group_concat({_BAR.join(parts)}, ',')"


@compiles(_BoostsOf, "postgresql")
def _boosts_of_pg(element: _BoostsOf, compiler: Any, **kw: Any) -> str:
    parts = [
        "campaign_id",
        "boost_factor",
        "extract(epoch from reached_at)::text",
        "extract(epoch from boost_until)::text",
    ]
    return f"string_agg({_BAR.join(parts)}, ',')"


_recipients = cast(Table, CampaignRecipient.__table__)
_BOOSTS = (
    select(_BoostsOf())
    .select_from(_recipients)
    .where(_recipients.c.member_id == _members.c.id, _recipients.c.boost_until.is_not(None))
    .scalar_subquery()
    .label("boosts")
)
"""The member's campaign multipliers (``boosts``): a probe of the partial index on
``campaign_recipients`` (members a multiplier reached), folded into the state query."""


def _boosts(text: str | None) -> tuple[Boost, ...]:
    if not text:
        return ()
    found = []
    for item in text.split(","):
        campaign_id, factor, starts, until = item.split("|")
        found.append(
            Boost(
                campaign_id,
                Decimal(factor),
                datetime.fromtimestamp(round(float(starts), 3), UTC),
                datetime.fromtimestamp(round(float(until), 3), UTC),
            )
        )
    return tuple(sorted(found, key=lambda b: b.campaign_id))


_PROFILE_COLUMNS = [
    _members.c.external_id,
    _members.c.tags,
    _members.c.attributes,
    _members.c.timezone,
    _members.c.language,
    _members.c.plan_id,
    _members.c.plan_until,
    _SEGMENT_KEYS,
    _BOOSTS,
]
"""A member's profile, in the order ``_profile`` reads it."""
_P = 1 + len(_PROFILE_COLUMNS)
"""Where the account figures start in a member row."""
_MEMBER_COLUMNS = [_members.c.id, *_PROFILE_COLUMNS, *[_accounts.c[name] for name in _FIGURES]]
"""A member's id, profile (see ``_profile``) and account figures, in this order."""
_LOT_COLUMNS = [
    _lots.c.id,
    _lots.c.entry_id,
    _lots.c.order_id,
    _lots.c.points,
    _lots.c.remaining,
    _lots.c.earned_at,
    _lots.c.expires_at,
    _lots.c.pending,
    _lots.c.available_at,
]


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def one_of(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``: one bound array whatever
    the number of values, so the statement's text is the same every time (psycopg converts
    and prepares it once, where an IN list of a thousand ids is a new statement of a
    thousand placeholders to parse on every call). One value alone is ``column = value``
    (see :func:`_among`: a prepared array form is planned afresh at every call)."""
    wanted = list(values)
    pg = _is_pg(session)
    if pg and len(wanted) == 1:
        return cast(ColumnElement[bool], column == bindparam(None, wanted[0], type_=column.type))
    if pg:
        return cast(
            ColumnElement[bool],
            column == any_(bindparam(None, wanted, type_=ARRAY(column.type))),
        )
    return cast(ColumnElement[bool], column.in_(wanted))


def _among(column: Any, name: str, pg: bool, one: bool = False) -> ColumnElement[bool]:
    """:func:`one_of` for a statement built once and run by ``kit.db.fetch``: ``column``
    among the values bound to ``name`` (an array on PostgreSQL, an expanding IN on SQLite).
    The batch driver reads thousands of rows this way, without SQLAlchemy's per-row
    result processing on PostgreSQL.

    ``one`` (PostgreSQL): ``column`` equal to the one value bound to ``name`` (see
    :func:`_ids`). An online event or a redemption loads one member, and PostgreSQL's one
    plan of a prepared statement counts ten values in an array of unknown length, so it
    planned the array form afresh at every run (0.15-0.3 ms of its CPU each)."""
    if pg and one:
        return cast(ColumnElement[bool], column == bindparam(name, type_=column.type))
    if pg:
        return cast(ColumnElement[bool], column == any_(bindparam(name, type_=ARRAY(column.type))))
    return cast(ColumnElement[bool], column.in_(bindparam(name, expanding=True)))


def _ids(session: Session, ids: Sequence[Any]) -> tuple[bool, bool, Any]:
    """For a statement on :func:`_among`: whether the session is on PostgreSQL, whether it
    takes its one value alone (``one``), and the value to bind."""
    pg = _is_pg(session)
    one = pg and len(ids) == 1
    return pg, one, ids[0] if one else list(ids)


# --- loading ---------------------------------------------------------------------------------


def _due_lots(at: datetime | Any) -> Any:
    return or_(
        and_(_lots.c.pending.is_(True), _lots.c.available_at <= at),
        and_(_lots.c.remaining > 0, _lots.c.expires_at <= at),
    )


@dataclass(frozen=True, slots=True)
class Loaded:
    """What :func:`lock_and_load` found: the state (None: no such member), the id of the event
    row it claimed (None: not asked, or the key or id was taken), and ids reserved ahead."""

    state: MemberState | None
    claimed: int | None = None
    reserved: Mapping[str, list[int]] = dataclasses.field(default_factory=dict)
    digest: str | None = None
    """The digest of the programme in force (when asked for; None: the default rules)."""


TYPICAL_EVENT = {"orders": 1, "entries": 4, "lots": 4}
"""Ids reserved with the state on PostgreSQL: enough for most events (an order, its rules'
postings, a tier bonus); an event that needs more reserves the rest when it writes."""


def _jsonb(value: Any, dumps: Callable[[Any], bytes]) -> Any:
    """``value`` as a ``jsonb`` parameter for psycopg (imported only where PostgreSQL runs)."""
    from psycopg.types.json import Jsonb

    return Jsonb(value, dumps=dumps)


def lock_and_load(
    session: Session,
    external_id: str | None,
    at: datetime,
    *,
    member_id: int | None = None,
    claim: Mapping[str, Any] | None = None,
    reserve: Mapping[str, int] | None = None,
    programme_at: datetime | None = None,
) -> Loaded:
    """The member with this shop id (or ``member_id``), its account locked, and the lots due
    by ``at``, in one statement.

    ``claim`` (the values of an ``events`` row without ``member_id``) inserts the event row
    for the member unless its key or id is taken; ``reserve`` reserves ids for new rows. On
    PostgreSQL both ride in the same statement (a data-modifying CTE and ``nextval``
    subqueries); on SQLite the claim is a second statement and ids are reserved when written.
    ``programme_at`` reads the digest of the programme in force at that moment as well.

    On PostgreSQL, a statement that waited for the lock sees the account as the transaction
    that held it left it, but every other row as of when the statement began: lots that
    transaction expired, released or spent would read as they were (and be expired twice).
    The statement tells whether the account moved meanwhile (its row version against the
    one it began with); if it did, the due lots are read again, under the lock.
    """
    pg = _is_pg(session)
    kinds = tuple(k for k, n in (reserve or {}).items() if n > 0) if pg else ()
    with_digest = programme_at is not None
    stmt = _load_statement(member_id is not None, claim is not None and pg, kinds, pg, with_digest)
    params: dict[str, Any] = {"at": at, "programme_at": programme_at}
    if member_id is None:
        params["external_id"] = external_id
    else:
        params["member_id"] = member_id
    if claim is not None and pg:
        params.update({f"c_{k}": claim.get(k) for k in CLAIM_COLUMNS})
    params.update({f"n_{kind}": (reserve or {})[kind] for kind in kinds})
    extra_count = int(pg) + int(with_digest) + int(claim is not None and pg) + len(kinds)
    if pg and claim is not None:
        params["c_payload"] = _jsonb(params["c_payload"], dumps=json_bytes)
    rows = fetch(session, stmt, params)
    if not rows:
        if with_digest:  # no member yet: the programme is still wanted
            digest = session.scalar(select(_DIGEST), {"programme_at": programme_at})
            return Loaded(None, digest=digest)
        return Loaded(None)
    first = rows[0]
    width = _P + len(_FIGURES)
    lots = tuple(_lot(row[-9:]) for row in rows if row[-9] is not None)
    state = MemberState(
        member_id=first[0],
        profile=_profile(first[1:_P]),
        figures=Figures(*first[_P:width]),
        lots=lots,
        lots_complete=False,
    )
    tail = list(first[width : width + extra_count])
    if pg and tail.pop(0):  # the account moved while this statement waited for its lock
        fresh = fetch(session, _DUE_LOTS, {"member_id": state.member_id, "at": at})
        state = msgspec.structs.replace(state, lots=tuple(_lot(row) for row in fresh))
    digest = tail.pop(0) if with_digest else None
    claimed: int | None = None
    if claim is not None:
        claimed = tail.pop(0) if pg else _claim(session, {**claim, "member_id": state.member_id})
    reserved = {kind: list(ids or []) for kind, ids in zip(kinds, tail, strict=True)}
    return Loaded(state, claimed, reserved, digest)


CLAIM_COLUMNS = (
    "idempotency_key",
    "external_id",
    "event_type",
    "payload",
    "occurred_at",
    "received_at",
    "request_hash",
)
"""The columns of an event row :func:`lock_and_load` claims (``member_id`` is its own)."""


@functools.cache
def _load_statement(
    by_id: bool, claim: bool, kinds: tuple[str, ...], pg: bool, digest: bool
) -> Any:
    """The statement of :func:`lock_and_load` for one shape, built once: every value is a
    bound parameter, so each call only binds (building a select costs more than running it)."""
    which = (
        _members.c.id == bindparam("member_id")
        if by_id
        else _members.c.external_id == bindparam("external_id")
    )
    extra: list[Any] = [_MOVED] if pg else []
    if digest:
        extra.append(_DIGEST)
    claim_cte = None
    if claim:
        source = select(
            *[bindparam(f"c_{k}", type_=_events.c[k].type).label(k) for k in CLAIM_COLUMNS],
            _members.c.id.label("member_id"),
        ).where(which)
        claim_cte = (
            pg_insert(_events)
            .on_conflict_do_nothing()
            .from_select([*CLAIM_COLUMNS, "member_id"], source)
            .returning(_events.c.id)
            .cte("claim")
        )
        extra.append(select(claim_cte.c.id).scalar_subquery().label("claimed"))
    extra.extend(_reserved(kind) for kind in kinds)
    members = _members.join(_accounts, _accounts.c.member_id == _members.c.id)
    if pg:
        members = members.join(_AS_BEGUN, _AS_BEGUN.c.member_id == _members.c.id)
    stmt = (
        select(
            *_MEMBER_COLUMNS,
            *extra,
            *_LOT_COLUMNS,
        )
        .select_from(
            members.outerjoin(
                _lots,
                and_(
                    _lots.c.member_id == _members.c.id,
                    _due_lots(bindparam("at", type_=_lots.c.expires_at.type)),
                ),
            )
        )
        .where(which)
    )
    if claim_cte is not None:
        stmt = stmt.add_cte(claim_cte)
    if pg:
        stmt = stmt.with_for_update(of=_accounts)
    return stmt


_AS_BEGUN = _accounts.alias("as_begun")
_MOVED: Any = literal_column("accounts.xmin <> as_begun.xmin").label("moved")
"""Whether the locked account row is another version than the one the statement began with
(the same row joined again without a lock keeps the statement's snapshot): the lock was held
by a transaction that changed it, and committed, while this statement waited."""
_DUE_LOTS = select(*_LOT_COLUMNS).where(
    _lots.c.member_id == bindparam("member_id"),
    _due_lots(bindparam("at", type_=_lots.c.expires_at.type)),
)
"""The member's lots due by ``at`` (read again by :func:`lock_and_load` after a wait)."""


def _claim(session: Session, values: Mapping[str, Any]) -> int | None:
    """Insert an event row unless its key or id is taken; its id, or None."""
    return insert_ignore(session, Event, values)


def members_due(session: Session, *, at: datetime, limit: int) -> list[int]:
    """Members with a pending release, an expiry or a tier review due by ``at``."""
    lots = select(_lots.c.member_id).where(_due_lots(at))
    tiers = select(_accounts.c.member_id).where(_accounts.c.tier_held_until <= at)
    ids = {row[0] for row in session.execute(lots.union(tiers).limit(limit))}
    return sorted(ids)


def _profile(row: Sequence[Any]) -> Profile:
    (
        external_id, tags, attributes, timezone, language, plan_id, plan_until, segment_keys,
        boosts,
    ) = row  # fmt: skip
    return Profile(
        external_id=external_id,
        tags=tuple(tags or ()),
        attributes=dict(attributes or {}),
        timezone=timezone or "UTC",
        language=language or "es",
        plan_id=plan_id,
        plan_until=_utc(plan_until),
        segments=tuple(sorted(segment_keys.split(","))) if segment_keys else (),
        boosts=_boosts(boosts),
    )


def _lot(row: Sequence[Any]) -> Lot:
    return Lot(*row)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def load_part(
    session: Session,
    programme: Programme,
    state: MemberState,
    missing: StateIncomplete,
    *,
    at: datetime,
    order_ids: Iterable[str] = (),
) -> MemberState:
    """``state`` with the part the engine asked for, loaded as of ``at``."""
    member = [state.member_id]
    if missing.part == "lots":
        return msgspec.structs.replace(
            state, lots=open_lots(session, member)[state.member_id], lots_complete=True
        )
    if missing.part == "orders":
        wanted = {*order_ids, *([missing.detail] if missing.detail else [])}
        return msgspec.structs.replace(state, orders={**state.orders, **orders(session, wanted)})
    if missing.part == "counters":
        rules = _capped_rules(programme)
        loaded = counters(session, rules, {state.member_id: at})[state.member_id]
        return msgspec.structs.replace(state, counters=loaded)
    if missing.part == "qualifying":
        since = {state.member_id: _since(programme, state.figures, at, at)}
        return msgspec.structs.replace(
            state, qualifying=qualifying(session, programme, since)[state.member_id]
        )
    if missing.part == "tier_entries":
        return msgspec.structs.replace(
            state, tier_entries_paid=tier_entries(session, member)[state.member_id]
        )
    raise ValueError(f"unknown state part {missing.part!r}")  # pragma: no cover


def open_lots(session: Session, member_ids: Sequence[int]) -> dict[int, tuple[Lot, ...]]:
    """Every lot with points left or still pending, per member."""
    found: dict[int, list[Lot]] = {m: [] for m in member_ids}
    pg, one, bound = _ids(session, member_ids)
    for row in fetch(session, _open_lots_statement(pg, one), {"ids": bound}):
        found[row[0]].append(_lot(row[1:]))
    return {m: tuple(lots) for m, lots in found.items()}


@functools.cache
def _open_lots_statement(pg: bool, one: bool) -> Any:
    return (
        select(_lots.c.member_id, *_LOT_COLUMNS)
        .where(
            _among(_lots.c.member_id, "ids", pg, one),
            or_(_lots.c.remaining > 0, _lots.c.pending.is_(True)),
        )
        .order_by(_lots.c.member_id, _lots.c.id)
    )


def orders(session: Session, external_ids: Iterable[str]) -> dict[str, OrderState | None]:
    """Orders by the shop's id (None for those not found), whoever they belong to."""
    wanted = sorted(set(external_ids))
    found: dict[str, OrderState | None] = dict.fromkeys(wanted)
    step = max(1, len(wanted)) if _is_pg(session) else 1000
    for start in range(0, len(wanted), step):
        rows = session.execute(
            select(
                _orders.c.id,
                _orders.c.member_id,
                _orders.c.external_id,
                _orders.c.total_minor,
                _orders.c.refunded_minor,
                _orders.c.currency,
                _orders.c.points_earned,
                _orders.c.points_reversed,
                _orders.c.occurred_at,
                _orders.c.status,
            ).where(one_of(session, _orders.c.external_id, wanted[start : start + step]))
        )
        for row in rows:
            found[row.external_id] = OrderState(
                id=row.id,
                member_id=row.member_id,
                external_id=row.external_id,
                total_minor=row.total_minor,
                refunded_minor=row.refunded_minor,
                currency=row.currency,
                points_earned=row.points_earned,
                points_reversed=row.points_reversed,
                occurred_at=row.occurred_at,
                status=row.status,
            )
    return found


def _capped_rules(programme: Programme) -> list[str]:
    return [r.rule.id for r in compiled_for(programme).rules if r.rule.caps is not None]


def counters(
    session: Session, rules: Sequence[str], at: Mapping[int, datetime]
) -> dict[int, dict[str, RuleCounter]]:
    """Per member, what each capped rule gave: every earning since the start of the UTC month
    of the member's ``at``, and the lifetime totals. Capped rules earn rarely by design, so
    rows are read and summed here rather than per member and day in SQL."""
    out: dict[int, dict[str, RuleCounter]] = {}
    since: dict[int, datetime] = {}
    for member_id, moment in at.items():
        start = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        since[member_id] = start
        out[member_id] = {rule: RuleCounter(since=start) for rule in rules}
    if not rules or not at:
        return out
    pg, one, bound = _ids(session, list(at))
    rows = fetch(session, _counters_statement(pg, one), {"ids": bound, "rules": list(rules)})
    for member_id, rule_id, occurred_at, points in rows:
        occurred = cast(datetime, _utc(occurred_at))
        c = out[member_id][rule_id]
        recent = (*c.earned, (occurred, points)) if occurred >= since[member_id] else c.earned
        out[member_id][rule_id] = msgspec.structs.replace(
            c,
            earned=recent,
            points_lifetime=c.points_lifetime + points,
            times_lifetime=c.times_lifetime + 1,
        )
    return out


@functools.cache
def _counters_statement(pg: bool, one: bool) -> Any:
    return (
        select(_entries.c.member_id, _entries.c.rule_id, _entries.c.occurred_at, _entries.c.points)
        .where(
            _among(_entries.c.member_id, "ids", pg, one),
            _among(_entries.c.rule_id, "rules", pg),
            _entries.c.entry_type == "earn",
        )
        .order_by(_entries.c.occurred_at, _entries.c.id)
    )


def _since(programme: Programme, figures: Figures, first: datetime, last: datetime) -> datetime:
    """The horizon a member's qualifying history must be loaded from for events between
    ``first`` and ``last``: the start of the earliest window a review or upgrade may sum."""
    tiers = programme.tiers
    assert tiers is not None
    earliest = first
    held = figures.tier_held_until
    if held is not None and held <= last:
        earliest = min(earliest, tier_maths.review_period_end(tiers, held))
    start = tier_maths.window_start(tiers, earliest)
    return earliest if start is None else start


def qualifying(
    session: Session, programme: Programme, since: Mapping[int, datetime]
) -> dict[int, Qualifying]:
    """Per member, the qualifying history after ``since`` one by one and the sum before."""
    tiers = programme.tiers
    assert tiers is not None
    out = {m: Qualifying(horizon=at, base=0, recent=()) for m, at in since.items()}
    if not since:
        return out
    ids = list(since)
    pg, one, bound = _ids(session, ids)
    recent: dict[int, list[Contribution]] = defaultdict(list)
    base: dict[int, int] = defaultdict(int)
    rows = fetch(session, _qualifying_statement(tiers.basis, pg, one), {"ids": bound})
    if tiers.basis == "spend":
        for member_id, order_id, occurred_at, net in rows:
            at = cast(datetime, _utc(occurred_at))
            if at > since[member_id]:
                recent[member_id].append(Contribution(at, int(net), order_id))
            else:
                base[member_id] += int(net)
    else:
        for member_id, occurred_at, points in rows:
            at = cast(datetime, _utc(occurred_at))
            if at > since[member_id]:
                recent[member_id].append(Contribution(at, int(points)))
            else:
                base[member_id] += int(points)
    for member_id in ids:
        out[member_id] = Qualifying(
            horizon=since[member_id],
            base=base[member_id],
            recent=tuple(sorted(recent[member_id], key=lambda c: c.at)),
        )
    return out


@functools.cache
def _qualifying_statement(basis: str, pg: bool, one: bool) -> Any:
    """The qualifying history of members: their orders' net spend (``spend``), else their
    earned and reversed points."""
    if basis == "spend":
        return select(
            _orders.c.member_id,
            _orders.c.id,
            _orders.c.occurred_at,
            _orders.c.total_minor - _orders.c.refunded_minor,
        ).where(_among(_orders.c.member_id, "ids", pg, one))
    return select(_entries.c.member_id, _entries.c.occurred_at, _entries.c.points).where(
        _among(_entries.c.member_id, "ids", pg, one),
        # Not IN (…): its expanding parameter cannot run precompiled (kit.db.PgStatement).
        or_(_entries.c.entry_type == "earn", _entries.c.entry_type == "reverse"),
    )


def tier_entries(session: Session, member_ids: Sequence[int]) -> dict[int, frozenset[str]]:
    """Per member, the tiers whose one-off entry points were already credited."""
    found: dict[int, set[str]] = {m: set() for m in member_ids}
    rows = session.execute(
        select(_entries.c.member_id, _entries.c.rule_id).where(
            one_of(session, _entries.c.member_id, member_ids),
            _entries.c.rule_id.like(f"{TIER_ENTRY_PREFIX}%"),
        )
    )
    for member_id, rule_id in rows:
        found[member_id].add(rule_id.removeprefix(TIER_ENTRY_PREFIX))
    return {m: frozenset(t) for m, t in found.items()}


def new_state(
    member_id: int,
    member: NewMember,
    programme: Programme,
    *,
    orders: Mapping[str, OrderState | None],
) -> MemberState:
    """The complete state of a customer not enrolled yet (nothing earned, nothing spent)."""
    tiers = programme.tiers
    return MemberState(
        member_id=member_id,
        profile=Profile(
            external_id=member.external_id,
            tags=tuple(member.tags or ()),
            attributes=dict(member.attributes or {}),
            timezone=member.timezone or "UTC",
            language=member.language or "es",
            plan_id=member.plan_id,
            plan_until=_utc(member.plan_until),
        ),
        figures=Figures(member_id=member_id),
        lots_complete=True,
        orders=dict(orders),
        counters={rule: RuleCounter(since=_EPOCH) for rule in _capped_rules(programme)},
        qualifying=Qualifying() if tiers is not None else None,
        tier_entries_paid=frozenset(),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def load_many(
    session: Session,
    programme: Programme,
    span: Mapping[int, tuple[datetime, datetime]],
    *,
    orders: Mapping[str, OrderState | None] | None = None,
) -> dict[int, MemberState]:
    """Complete states of the members in ``span`` (member id -> first and last moment of
    their events in the batch), their accounts locked in id order."""
    ids = sorted(span)
    states: dict[int, MemberState] = {}
    if not ids:
        return states
    pg, one, bound = _ids(session, ids)
    rows = fetch(session, _states_statement(pg, one), {"ids": bound})
    lots = open_lots(session, ids)
    found_orders = dict(orders or {})
    rules = _capped_rules(programme)
    loaded_counters = counters(session, rules, {m: span[m][0] for m in ids}) if rules else {}
    tiers = programme.tiers
    loaded_qualifying: dict[int, Qualifying] = {}
    entries_paid: dict[int, frozenset[str]] = {}
    if tiers is not None:
        figures = {row[0]: Figures(*row[_P : _P + len(_FIGURES)]) for row in rows}
        since = {m: _since(programme, figures[m], *span[m]) for m in figures}
        loaded_qualifying = qualifying(session, programme, since)
        if any(level.entry_points > 0 for level in tiers.levels):
            entries_paid = tier_entries(session, ids)
    for row in rows:
        member_id = row[0]
        states[member_id] = MemberState(
            member_id=member_id,
            profile=_profile(row[1:_P]),
            figures=Figures(*row[_P : _P + len(_FIGURES)]),
            lots=lots[member_id],
            lots_complete=True,
            orders=found_orders,
            counters=loaded_counters.get(member_id, {}),
            qualifying=loaded_qualifying.get(member_id),
            tier_entries_paid=entries_paid.get(member_id, frozenset()),
        )
    return states


@functools.cache
def _states_statement(pg: bool, one: bool) -> Any:
    """Members' profiles and figures (:func:`load_many`), their accounts locked in id order."""
    stmt = (
        select(*_MEMBER_COLUMNS)
        .select_from(_members.join(_accounts, _accounts.c.member_id == _members.c.id))
        .where(_among(_members.c.id, "ids", pg, one))
        .order_by(_members.c.id)
    )
    return stmt.with_for_update(of=_accounts) if pg else stmt


# --- writing ---------------------------------------------------------------------------------

_SEQUENCES = {
    "orders": "orders_id_seq",
    "entries": "ledger_entries_id_seq",
    "lots": "point_lots_id_seq",
}
_TABLES = {"orders": _orders, "entries": _entries, "lots": _lots}


def _reserved(kind: str) -> Any:
    """``n_<kind>`` fresh ids of a sequence as one array column (PostgreSQL).

    The rows to number are the ``unnest`` of an array of ``n`` elements rather than a
    ``generate_series(1, n)``: PostgreSQL's one plan of a prepared statement counts a thousand
    rows for a series of unknown length (against 10 for an array), so the statement that
    reserves ids along with the member's lock (:func:`lock_and_load`) was planned afresh at
    every event (about 1 ms of the database's CPU)."""
    n = bindparam(f"n_{kind}", type_=Integer())
    series = func.unnest(func.array_fill(1, pg_array([n]))).table_valued("g")
    return (
        select(func.array_agg(func.nextval(_SEQUENCES[kind])))
        .select_from(series)
        .scalar_subquery()
        .label(f"ids_{kind}")
    )


def reserve_ids(session: Session, counts: Mapping[str, int]) -> dict[str, list[int]]:
    """``counts[kind]`` fresh ids for new orders, entries and lots, in one statement."""
    wanted = {kind: n for kind, n in counts.items() if n > 0}
    out: dict[str, list[int]] = {kind: [] for kind in counts}
    if not wanted:
        return out
    if _is_pg(session):
        row = session.execute(
            select(*[_reserved(kind) for kind in wanted]),
            {f"n_{kind}": n for kind, n in wanted.items()},
        ).one()
        out.update({kind: list(ids) for kind, ids in zip(wanted, row, strict=True)})
        return out
    # SQLite: writers hold the database lock (BEGIN IMMEDIATE), so the maximum is ours.
    tops = session.execute(
        select(
            *[
                select(func.coalesce(func.max(_TABLES[kind].c.id), 0)).scalar_subquery()
                for kind in wanted
            ]
        )
    ).one()
    for top, (kind, n) in zip(tops, wanted.items(), strict=True):
        out[kind] = list(range(int(top) + 1, int(top) + 1 + n))
    return out


@dataclass(frozen=True, slots=True)
class Written:
    """What the writer assigned: real ids by (member id, provisional id)."""

    ids: Mapping[tuple[int, int], int]

    def id(self, member_id: int, ref: int) -> int:
        return ref if ref > 0 else self.ids[(member_id, ref)]


CrossingHandler = Callable[[Sequence[tuple[int, Crossing]]], list[DomainEvent]]
"""Issues the rewards of threshold crossings (member id, crossing) all at once; returns the
event to emit for each, in order."""


def assign_ids(
    session: Session,
    outcomes: Sequence[tuple[int, Outcome]],
    reserved: Mapping[str, list[int]] | None = None,
) -> Written:
    """Real ids for the rows the outcomes create, from ``reserved`` (see :func:`lock_and_load`)
    and, for what those do not cover, newly reserved ones (the same order of creation)."""
    new_orders = [(m, o.order.id) for m, out in outcomes for o in out.new_orders]
    entries = [(m, e.id) for m, out in outcomes for e in out.entries]
    seen: set[tuple[int, int]] = set()
    new_lots = []
    for m, out in outcomes:
        for lot in out.lots:
            if lot.id < 0 and (m, lot.id) not in seen:
                seen.add((m, lot.id))
                new_lots.append((m, lot.id))
    wanted = {"orders": new_orders, "entries": entries, "lots": new_lots}
    have = {kind: list((reserved or {}).get(kind, [])) for kind in wanted}
    more = reserve_ids(
        session, {kind: max(0, len(refs) - len(have[kind])) for kind, refs in wanted.items()}
    )
    ids: dict[tuple[int, int], int] = {}
    for kind, refs in wanted.items():
        pool = have[kind] + more.get(kind, [])
        ids.update(zip(refs, pool[: len(refs)], strict=True))
    return Written(ids)


def write_all(
    session: Session,
    outcomes: Sequence[tuple[int, Outcome]],
    *,
    now: datetime,
    backfill: bool,
    on_crossing: CrossingHandler,
    bulk: bool = False,
    reserved: Mapping[str, list[int]] | None = None,
) -> Written:
    """:func:`assign_ids` (from ``reserved`` first, see :func:`lock_and_load`), then
    :func:`write`."""
    written = assign_ids(session, outcomes, reserved)
    write(
        session, outcomes, written, now=now, backfill=backfill, on_crossing=on_crossing, bulk=bulk
    )
    return written


def write(
    session: Session,
    outcomes: Sequence[tuple[int, Outcome]],
    written: Written,
    *,
    now: datetime,
    backfill: bool,
    on_crossing: CrossingHandler,
    bulk: bool = False,
    updates: Sequence[Rows] = (),
) -> None:
    """Write ``(member id, outcome)`` pairs, in order, one statement per table, then the
    ``updates`` (more rows to change, such as the event row's stored response).

    How the rows travel depends on the database and the size of the write: a bulk write
    (the batch driver) uses COPY on PostgreSQL and a driver-level executemany on SQLite; an
    online write on PostgreSQL is one prepared statement (every table's rows as arrays,
    one data-modifying CTE per table: one parse, one round trip); on SQLite, one executemany
    per table."""
    # Coupons for threshold crossings first: issuing reads back the codes it drew.
    crossings = [(m, e) for m, out in outcomes for e in out.events if isinstance(e, Crossing)]
    announced = on_crossing(crossings) if crossings else []
    ops = [*_rows(outcomes, written, now, backfill, announced), *updates]
    ops = [op for op in ops if op.rows]
    if bulk or not _is_pg(session):
        for op in ops:
            if op.key is not None:
                _update(session, op.table, op.rows, key=op.key)
            elif op.table is _orders:
                _insert_orders(session, op.rows, bulk=bulk)
            else:
                insert_rows(session, op.table, op.rows, bulk=bulk)
        return
    try:
        _send_as_one(session, ops)
    except IntegrityError as exc:
        new_orders = [row["external_id"] for op in ops if op.table is _orders and op.key is None
                      for row in op.rows]  # fmt: skip
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        if constraint == "orders_external_id_key" and new_orders:
            raise OrderAlreadyRecorded(
                f"Order '{new_orders[0]}' was already recorded by another event.",
                details={"order_id": new_orders[0]},
            ) from None
        raise


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows for one table, all with the same keys: new rows (``key`` None) or changes to rows
    found by ``key`` (each row carries ``_<key>``, the value to find it by)."""

    table: Table
    rows: list[dict[str, Any]]
    key: str | None = None


def _rows(
    outcomes: Sequence[tuple[int, Outcome]],
    written: Written,
    now: datetime,
    backfill: bool,
    announced: list[DomainEvent],
) -> list[Rows]:
    """The rows the outcomes insert and change, per table, in an order foreign keys accept."""
    new_orders = [(m, o) for m, out in outcomes for o in out.new_orders]
    entries = [(m, e) for m, out in outcomes for e in out.entries]
    final_lots: dict[tuple[int, int], Lot] = {}
    final_orders: dict[tuple[int, int], OrderState] = {}
    for m, out in outcomes:
        for lot in out.lots:
            final_lots[(m, lot.id)] = lot
        for order in out.orders:
            final_orders[(m, order.id)] = order
    ids = written.ids

    def real(member_id: int, ref: int | None) -> int | None:
        return None if ref is None else written.id(member_id, ref)

    order_rows = []
    for m, new in new_orders:
        o = final_orders[(m, new.order.id)]
        order_rows.append(
            {
                "id": ids[(m, o.id)],
                "member_id": m,
                "external_id": o.external_id,
                "total_minor": o.total_minor,
                "refunded_minor": o.refunded_minor,
                "currency": o.currency,
                "channel": new.channel,
                "store": new.store,
                "status": o.status,
                "points_earned": o.points_earned,
                "points_reversed": o.points_reversed,
                "occurred_at": o.occurred_at,
                "recorded_at": now,
            }
        )
    by_crossing = iter(announced)
    outbox = []
    for m, out in outcomes:
        for event in out.events:
            domain_event = next(by_crossing) if isinstance(event, Crossing) else event
            outbox.append(
                {
                    "topic": domain_event.topic,
                    "version": domain_event.VERSION,
                    "member_id": m,
                    "payload": domain_event.to_payload(),
                    "backfill": backfill,
                    "created_at": now,
                    "processed_at": None,
                }
            )
    final_figures: dict[int, Figures] = {}
    for m, out in outcomes:
        final_figures[m] = out.state.figures
    return [
        Rows(_orders, order_rows),
        Rows(
            _items,
            [
                {
                    "order_id": ids[(m, new.order.id)],
                    "member_id": m,
                    "sku": line.sku,
                    "category": line.category,
                    "quantity": line.quantity,
                    "unit_price_minor": line.unit_price_minor,
                }
                for m, new in new_orders
                for line in new.lines
            ],
        ),
        Rows(
            _orders,
            [
                {
                    "_id": o.id,
                    "refunded_minor": o.refunded_minor,
                    "points_reversed": o.points_reversed,
                    "status": o.status,
                }
                for (m, ref), o in final_orders.items()
                if ref > 0
            ],
            key="id",
        ),
        Rows(
            _entries,
            [
                {
                    "id": ids[(m, e.id)],
                    "member_id": m,
                    "entry_type": e.entry_type,
                    "points": e.points,
                    "balance_after": e.balance_after,
                    "shortfall": e.shortfall,
                    "reason": e.reason,
                    "source_type": e.source_type,
                    "source_ref": (
                        str(real(m, e.source_lot)) if e.source_lot is not None else e.source_ref
                    ),
                    "order_id": real(m, e.order_id),
                    "rule_id": e.rule_id,
                    "actor": e.actor,
                    "details": dict(e.details),
                    "occurred_at": e.occurred_at,
                    "recorded_at": now,
                }
                for m, e in entries
            ],
        ),
        Rows(
            _lots,
            [
                {
                    "id": ids[(m, ref)],
                    "member_id": m,
                    "entry_id": real(m, lot.entry_id),
                    "order_id": real(m, lot.order_id),
                    "points": lot.points,
                    "remaining": lot.remaining,
                    "earned_at": lot.earned_at,
                    "expires_at": lot.expires_at,
                    "pending": lot.pending,
                    "available_at": lot.available_at,
                }
                for (m, ref), lot in final_lots.items()
                if ref < 0
            ],
        ),
        Rows(
            _lots,
            [
                {"_id": ref, "remaining": lot.remaining, "pending": lot.pending}
                for (m, ref), lot in final_lots.items()
                if ref > 0
            ],
            key="id",
        ),
        Rows(
            _allocations,
            [
                {
                    "entry_id": real(m, a.entry_id),
                    "member_id": m,
                    "lot_id": real(m, a.lot_id),
                    "points": a.points,
                }
                for m, out in outcomes
                for a in out.allocations
            ],
        ),
        Rows(
            _accounts,
            [
                {
                    "_member_id": m,
                    **{n: getattr(fig, n) for n in _FIGURES if n != "member_id"},
                    "updated_at": now,
                }
                for m, fig in final_figures.items()
            ],
            key="member_id",
        ),
        Rows(
            _tier_changes,
            [
                {
                    "member_id": m,
                    "from_tier": t.from_tier,
                    "to_tier": t.to_tier,
                    "direction": t.direction,
                    "qualifying_value": t.qualifying_value,
                    "reason": t.reason,
                    "occurred_at": t.occurred_at,
                    "recorded_at": now,
                }
                for m, out in outcomes
                for t in out.tier_moves
            ],
        ),
        Rows(_outbox, outbox),
    ]


def _send_as_one(session: Session, ops: Sequence[Rows]) -> None:
    """Every table's rows in one prepared statement (PostgreSQL): the rows travel as one JSON
    document, and a data-modifying CTE per table turns its part back into rows of the table's
    own type (``jsonb_populate_recordset``). The statement's text depends only on which tables
    and columns are written, so a handful of shapes cover all online writes, each parsed and
    planned once per connection. Foreign keys are checked at the end of the statement, when
    every table has its rows.

    An update of one row (an online event's account, its event's answer) reads that row with
    ``jsonb_populate_record``, which the planner knows to be one row: from a recordset it
    would assume a hundred, and join them to a small table (the accounts of a young
    programme, the events of its first days) by reading the whole table for each event."""
    shape = tuple(
        (op.table.name, op.key, tuple(op.rows[0]), op.key is not None and len(op.rows) == 1)
        for op in ops
    )
    document = {f"w{n}": _keyed(op) for n, op in enumerate(ops)}
    run_on_psycopg(session, _one_statement(shape), {"rows": _jsonb(document, dumps=_dumps)})


def _keyed(op: Rows) -> list[dict[str, Any]]:
    """The rows of ``op`` with an update's ``_<key>`` under the column's own name."""
    if op.key is None:
        return op.rows
    mark = f"_{op.key}"
    return [{(op.key if c == mark else c): v for c, v in row.items()} for row in op.rows]


def _dumps(document: Any) -> bytes:
    return json_bytes(document, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")  # pragma: no cover


@functools.cache
def _one_statement(shape: tuple[tuple[str, str | None, tuple[str, ...], bool], ...]) -> str:
    ctes = []
    for n, (table, key, columns, single) in enumerate(shape):
        if single:
            source = f"jsonb_populate_record(NULL::{table}, %(rows)s::jsonb -> 'w{n}' -> 0)"
        else:
            source = f"jsonb_populate_recordset(NULL::{table}, %(rows)s::jsonb -> 'w{n}')"
        if key is None:
            names = ", ".join(columns)
            body = f"INSERT INTO {table} ({names}) SELECT {names} FROM {source}"  # noqa: S608
        else:
            sets = ", ".join(f"{c} = v.{c}" for c in columns if c != f"_{key}")
            where = f"t.{key} = v.{key}"
            body = f"UPDATE {table} AS t SET {sets} FROM {source} AS v WHERE {where}"  # noqa: S608
        ctes.append(f"w{n} AS ({body})")
    # Table and column names come from the models, never from input.
    return f"WITH {', '.join(ctes)} SELECT 1"


def _insert_orders(session: Session, rows: list[dict[str, Any]], *, bulk: bool) -> None:
    """New orders; an order id recorded already (by another member's event, or a concurrent
    one) is ``409 order_already_recorded`` and the caller's transaction rolls back. On
    PostgreSQL the unique index says so (see :func:`write`), on SQLite the insert's result."""
    if bulk or not rows or _is_pg(session):  # the batch driver checked its ids under its locks
        insert_rows(session, _orders, rows, bulk=bulk)
        return
    stmt = insert_ignoring(session, _orders).returning(_orders.c.external_id)
    inserted = set(session.execute(stmt, rows).scalars())
    for row in rows:
        if row["external_id"] not in inserted:
            raise OrderAlreadyRecorded(
                f"Order '{row['external_id']}' was already recorded by another event.",
                details={"order_id": row["external_id"]},
            )


_JSON_COLUMNS = {"details", "payload", "response", "attributes", "tags"}


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]], *, bulk: bool) -> None:
    """Insert ``rows`` (all with the same keys) into ``table``: one executemany, or for
    ``bulk`` writes COPY on PostgreSQL and a driver-level executemany on SQLite (the values
    converted here as SQLAlchemy's types would, without its per-value overhead)."""
    if not rows:
        return
    if bulk and _is_pg(session) and len(rows) > 50:
        _copy(session, table, rows)
    elif bulk and not _is_pg(session):
        _executemany_sqlite(session, table, rows)
    else:
        session.connection().execute(_insert_statement(table), rows)


def insert_new(
    session: Session, table: Table, rows: list[dict[str, Any]], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (all with the same keys) but those a unique key refuses; the
    ``returning`` columns of the rows inserted, in no particular order.

    On PostgreSQL one prepared statement whatever the number of rows: the rows travel as one
    JSON document (as :func:`_send_as_one` sends them), where an executemany with RETURNING
    is a new statement of thousands of placeholders for psycopg to parse on every call. Ids
    from the table's sequence are still drawn in the order of ``rows``."""
    if not rows:
        return []
    if _is_pg(session):
        sql = _insert_new_statement(table.name, tuple(rows[0]), tuple(returning))
        return run_on_psycopg(session, sql, {"rows": _jsonb(rows, dumps=_dumps)})
    stmt = insert_ignoring(session, table).returning(*[table.c[c] for c in returning])
    return [tuple(row) for row in session.execute(stmt, rows)]


@functools.cache
def _insert_new_statement(table: str, columns: tuple[str, ...], returning: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    # Table and column names come from the models, never from input.
    return (
        f"INSERT INTO {table} ({names}) SELECT {names}"  # noqa: S608
        f" FROM jsonb_populate_recordset(NULL::{table}, %(rows)s::jsonb)"
        f" ON CONFLICT DO NOTHING RETURNING {', '.join(returning)}"
    )


def _sqlite_tuples(
    table: Table, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> list[tuple[Any, ...]]:
    """The rows' values (named by ``columns``, ``_x`` meaning column ``x``) as SQLite stores
    them (see ``kit.db.UTCDateTime``, JSON), converted as SQLAlchemy's types would, without
    its per-value overhead. A chunk repeats a handful of moments (``now``, an event's time on
    each of its rows), so each datetime is formatted once."""
    formatted: dict[datetime, str] = {}

    def moment(v: datetime | None) -> str | None:
        if v is None:
            return None
        text = formatted.get(v)
        if text is None:
            text = formatted[v] = sqlite_moment(v)
        return text

    def as_json(v: Any) -> str | None:
        return None if v is None else _dumps(v).decode()

    convert: list[tuple[int, Callable[[Any], Any]]] = []
    for i, name in enumerate(columns):
        column = table.c[name.removeprefix("_")]
        if isinstance(column.type, UTCDateTime):
            convert.append((i, moment))
        elif column.name in _JSON_COLUMNS:
            convert.append((i, as_json))
    pick = operator.itemgetter(*columns)
    out: list[tuple[Any, ...]] = []
    for row in rows:
        values = list(pick(row)) if len(columns) > 1 else [pick(row)]
        for i, f in convert:
            values[i] = f(values[i])
        out.append(tuple(values))
    return out


def _executemany_sqlite(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    marks = ", ".join("?" for _ in columns)
    # Table and column names come from the models, never from input.
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
    session.connection().exec_driver_sql(sql, _sqlite_tuples(table, rows, columns))


def _copy(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """``COPY table FROM STDIN`` on the session's own connection (same transaction)."""
    columns = list(rows[0])
    raw = session.connection().connection.driver_connection
    assert raw is not None
    names = ", ".join(columns)
    # JSON travels as its text (orjson), which the column's input function parses: cheaper
    # than a Jsonb wrapper and psycopg's dumper per value.
    as_json = [i for i, c in enumerate(columns) if c in _JSON_COLUMNS]
    pick = operator.itemgetter(*columns)
    with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        write = copy.write_row
        for row in rows:
            values = list(pick(row)) if len(columns) > 1 else [pick(row)]
            for i in as_json:
                v = values[i]
                if v is not None:
                    values[i] = _dumps(v).decode()
            write(values)


def _update(session: Session, table: Table, rows: list[dict[str, Any]], *, key: str = "id") -> None:
    """Change rows found by ``_<key>``, all setting the same columns: on PostgreSQL one
    statement whatever the number of rows (the rows as JSON, as :func:`_send_as_one` sends
    them), on SQLite one driver-level executemany."""
    if not rows:
        return
    columns = tuple(c for c in rows[0] if not c.startswith("_"))
    if _is_pg(session):
        _send_as_one(session, [Rows(table, rows, key=key)])
        return
    sets = ", ".join(f"{c} = ?" for c in columns)
    sql = f"UPDATE {table.name} SET {sets} WHERE {key} = ?"  # noqa: S608
    session.connection().exec_driver_sql(sql, _sqlite_tuples(table, rows, [*columns, f"_{key}"]))


@functools.cache
def _insert_statement(table: Table) -> Any:
    """A plain INSERT (``inline``: no implicit RETURNING of the key, so it can be pipelined)."""
    return insert(table).inline()
