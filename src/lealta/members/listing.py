"""The members list: filters, sort and keyset pagination behind ``GET /v1/members`` and the
console's member list.

Two halves. :func:`parse` turns query parameters into a :class:`ListQuery` (pure: every
value checked against the programme's tiers and declared attributes, a bad one is a ``422``
naming the parameter). :func:`page` and :func:`stream` run it with SQLAlchemy Core.

Pagination is keyset on ``(sort key, id)``: a page never repeats or skips a member, however
deep, and costs the same at any depth. The cursor is opaque and signed (HMAC of the secret
key); it names the sort, the order and a fingerprint of the filters it was issued for, so a
cursor reused with other filters is refused rather than silently paging something else.

Sort keys that may be empty (``name``, ``last_order_at``) sort empty values last when
ascending and first when descending (PostgreSQL's own order, so one b-tree serves both
directions); each page is read as up to two index-ordered segments, the filled keys and the
empty ones, rather than with an ``OR`` that no index can serve.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    false,
    func,
    or_,
    select,
    text,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB, array
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lealta.kit.errors import InvalidInput
from lealta.models import Account, Member, Segment, SegmentMember
from lealta.programme.schema import Programme

SORTS = (
    "enrolled_at",
    "external_id",
    "name",
    "points_available",
    "lifetime_earned",
    "last_order_at",
)
Sort = Literal[
    "enrolled_at", "external_id", "name", "points_available", "lifetime_earned", "last_order_at"
]
Order = Literal["asc", "desc"]
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_VALUES = 20  # tiers, tags or attributes in one request
MAX_TEXT = 200
SearchMode = Literal["contains", "prefix"]

_SINGLE = (
    "q",
    "tag_match",
    "enrolled_from",
    "enrolled_to",
    "last_order_from",
    "last_order_to",
    "points_min",
    "points_max",
    "lifetime_earned_min",
    "lifetime_earned_max",
    "sort",
    "order",
    "limit",
    "cursor",
)
_REPEATED = ("tier", "tag", "segment")
PARAMETERS = (*_REPEATED, *_SINGLE)
_ATTR = "attr."
_MAX_INT = 2**63 - 1
_TIMES = frozenset({"enrolled_at", "last_order_at"})
_INTS = frozenset({"points_available", "lifetime_earned"})
_NULLABLE = frozenset({"name", "last_order_at"})


class InvalidFilter(InvalidInput):
    code = "invalid_filter"


@dataclass(frozen=True, slots=True)
class Range:
    """``low <= value`` and ``value <= high`` (``value < high`` when ``high_open``)."""

    low: Any = None
    high: Any = None
    high_open: bool = False

    @property
    def empty(self) -> bool:
        return self.low is None and self.high is None


@dataclass(frozen=True, slots=True)
class Keyset:
    """Where the previous page stopped: its last row's sort key and id."""

    value: Any
    id: int


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A checked members-list request. ``levels`` are the programme's tier ids, lowest first
    (a member without a tier holds the lowest); ``member_ids`` widen the text search (the
    console adds the owner of a coupon code typed in the search box)."""

    tiers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    """Members in any of these segments (keys)."""
    tag_match: Literal["any", "all"] = "any"
    attributes: tuple[tuple[str, str, Any], ...] = ()  # (name, declared kind, value)
    enrolled: Range = field(default_factory=Range)
    last_order: Range = field(default_factory=Range)
    points: Range = field(default_factory=Range)
    lifetime_earned: Range = field(default_factory=Range)
    q: str = ""
    sort: Sort = "enrolled_at"
    order: Order = "desc"
    limit: int = DEFAULT_LIMIT
    after: Keyset | None = None
    levels: tuple[str, ...] = ()
    member_ids: tuple[int, ...] = ()

    def fingerprint(self) -> str:
        """A short digest of the filters (not the sort, limit or position)."""
        shape = [
            self.tiers,
            self.tags,
            self.tag_match,
            [[n, v if not isinstance(v, float) else repr(v)] for n, _, v in self.attributes],
            [
                _plain(r)
                for r in (self.enrolled, self.last_order, self.points, self.lifetime_earned)
            ],
            self.q,
            self.member_ids,
            self.segments,
        ]
        raw = json.dumps(shape, default=str, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def _plain(r: Range) -> list[Any]:
    return [r.low, r.high, r.high_open]


# --- parsing (pure) ------------------------------------------------------------------------


def parse(
    params: Iterable[tuple[str, str]],
    *,
    programme: Programme,
    secret: str,
    ignore: Iterable[str] = (),
) -> ListQuery:
    """Check the query parameters of a list request; ``422`` with a code naming the problem
    (``unknown_filter``, ``invalid_filter``, ``unknown_tier``, ``unknown_attribute``,
    ``invalid_attribute``, ``invalid_cursor``) and ``details.param``. Empty values count as
    absent (an unfilled form field)."""
    skip = set(ignore)
    single: dict[str, str] = {}
    repeated: dict[str, list[str]] = {name: [] for name in _REPEATED}
    attrs: dict[str, str] = {}
    for name, raw in params:
        if name in skip:
            continue
        value = raw.strip()
        if name in repeated:
            repeated[name].extend(v.strip() for v in value.split(",") if v.strip())
        elif name in _SINGLE:
            if name in single and value and single[name] != value:
                raise InvalidFilter(f"{name}: give it once.", details={"param": name})
            if value or name not in single:
                single[name] = value
        elif name.startswith(_ATTR):
            if value:
                attrs[name[len(_ATTR) :]] = value
        else:
            raise InvalidInput(
                f"{name[:64]}: not a filter of the members list"
                f" (filters: {', '.join(PARAMETERS)}, attr.<name>).",
                code="unknown_filter",
                details={"param": name[:64]},
            )
    single = {k: v for k, v in single.items() if v}
    levels = tuple(level.id for level in programme.tiers.levels) if programme.tiers else ()
    query = ListQuery(
        tiers=_tiers(repeated["tier"], levels),
        tags=_tags(repeated["tag"]),
        segments=_segments(repeated["segment"]),
        tag_match=_choice(single, "tag_match", ("any", "all"), "any"),  # type: ignore[arg-type]
        attributes=_attributes(attrs, dict(programme.attributes)),
        enrolled=_time_range(single, "enrolled"),
        last_order=_time_range(single, "last_order"),
        points=_int_range(single, "points"),
        lifetime_earned=_int_range(single, "lifetime_earned"),
        q=_text(single.get("q", "")),
        sort=_choice(single, "sort", SORTS, "enrolled_at"),  # type: ignore[arg-type]
        order=_choice(single, "order", ("asc", "desc"), "desc"),  # type: ignore[arg-type]
        limit=_limit(single.get("limit")),
        levels=levels,
    )
    if "cursor" in single:
        query = with_cursor(query, single["cursor"], secret=secret)
    return query


_SEGMENT_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _segments(values: list[str]) -> tuple[str, ...]:
    if len(values) > MAX_VALUES:
        raise _bad("segment", f"at most {MAX_VALUES} segments.")
    for value in values:
        if not _SEGMENT_KEY.match(value):
            raise _bad("segment", f"'{value[:64]}' is not a segment key.")
    return tuple(dict.fromkeys(values))


def _bad(param: str, message: str) -> InvalidFilter:
    return InvalidFilter(f"{param}: {message}", details={"param": param})


def _choice(single: dict[str, str], name: str, allowed: Sequence[str], default: str) -> str:
    value = single.get(name, default)
    if value not in allowed:
        raise _bad(name, f"expected one of {', '.join(allowed)}.")
    return value


def _text(value: str) -> str:
    if len(value) > MAX_TEXT:
        raise _bad("q", f"at most {MAX_TEXT} characters.")
    if "\x00" in value:
        raise _bad("q", "contains a NUL character.")
    return value


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise _bad("limit", f"a whole number from 1 to {MAX_LIMIT}.") from None
    if not 1 <= value <= MAX_LIMIT:
        raise _bad("limit", f"a whole number from 1 to {MAX_LIMIT}.")
    return value


def _tiers(values: list[str], levels: tuple[str, ...]) -> tuple[str, ...]:
    if len(values) > MAX_VALUES:
        raise _bad("tier", f"at most {MAX_VALUES} tiers.")
    for value in values:
        if value not in levels:
            known = ", ".join(levels) if levels else "none: the programme has no tiers"
            raise InvalidInput(
                f"tier: '{value[:64]}' is not a tier of the programme (tiers: {known}).",
                code="unknown_tier",
                details={"param": "tier", "value": value[:64]},
            )
    return tuple(dict.fromkeys(values))


def _tags(values: list[str]) -> tuple[str, ...]:
    if len(values) > MAX_VALUES:
        raise _bad("tag", f"at most {MAX_VALUES} tags.")
    for value in values:
        if len(value) > 64 or "\x00" in value:
            raise _bad("tag", "a tag has at most 64 characters.")
    return tuple(dict.fromkeys(values))


def _attributes(raw: dict[str, str], declared: dict[str, str]) -> tuple[tuple[str, str, Any], ...]:
    if len(raw) > MAX_VALUES:
        raise _bad("attr", f"at most {MAX_VALUES} attributes.")
    out: list[tuple[str, str, Any]] = []
    for name, value in sorted(raw.items()):
        kind = declared.get(name)
        param = f"attr.{name[:64]}"
        if kind is None:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidInput(
                f"{param}: not an attribute the programme declares (declared: {known}).",
                code="unknown_attribute",
                details={"param": param},
            )
        parsed = _attribute_value(kind, value)
        if parsed is None:
            raise InvalidInput(
                f"{param}: expected {kind}, got '{value[:64]}'.",
                code="invalid_attribute",
                details={"param": param, "expected": kind},
            )
        out.append((name, kind, parsed))
    return tuple(out)


def _attribute_value(kind: str, value: str) -> Any:
    if kind == "bool":
        return {"true": True, "false": False}.get(value.lower())
    if kind == "int":
        try:
            number = int(value)
        except ValueError:
            return None
        return number if abs(number) <= _MAX_INT else None
    if kind == "float":
        try:
            real = float(value)
        except ValueError:
            return None
        return real if math.isfinite(real) else None
    if kind == "date":
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            return None
    return value if len(value) <= MAX_TEXT and "\x00" not in value else None


def _time_range(single: dict[str, str], stem: str) -> Range:
    low = _when(single, f"{stem}_from", end=False)
    high = _when(single, f"{stem}_to", end=True)
    if low is not None and high is not None:
        (lo, _), (hi, open_) = low, high
        if lo > hi or (open_ and lo == hi):
            raise _bad(f"{stem}_from", f"after {stem}_to.")
    return Range(
        low=None if low is None else low[0],
        high=None if high is None else high[0],
        high_open=bool(high and high[1]),
    )


def _when(single: dict[str, str], name: str, *, end: bool) -> tuple[datetime, bool] | None:
    """A date (``YYYY-MM-DD``, a whole UTC day) or an ISO 8601 time (UTC when no offset).
    An end date means up to the end of that day: ``(next midnight, open)``."""
    raw = single.get(name)
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time(), tzinfo=UTC)
            return (start + timedelta(days=1), True) if end else (start, False)
        when = datetime.fromisoformat(raw)
    except (ValueError, OverflowError):
        raise _bad(
            name, "a date (2026-01-31) or an ISO 8601 time (2026-01-31T10:00:00Z)."
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC), False
    except OverflowError:
        raise _bad(name, "out of range.") from None


def _int_range(single: dict[str, str], stem: str) -> Range:
    values: list[int | None] = []
    for bound in ("min", "max"):
        name = f"{stem}_{bound}"
        raw = single.get(name)
        if raw is None:
            values.append(None)
            continue
        try:
            number = int(raw)
        except ValueError:
            raise _bad(name, "a whole number of points.") from None
        if not 0 <= number <= _MAX_INT:
            raise _bad(name, "a whole number of points, 0 or more.")
        values.append(number)
    low, high = values
    if low is not None and high is not None and low > high:
        raise _bad(f"{stem}_min", f"greater than {stem}_max.")
    return Range(low=low, high=high)


# --- cursors (pure) ------------------------------------------------------------------------


def encode_cursor(query: ListQuery, last: Keyset, *, secret: str) -> str:
    """The signed cursor of the page after ``last`` under ``query``'s filters and sort."""
    value = last.value.isoformat() if isinstance(last.value, datetime) else last.value
    body = json.dumps(
        [query.sort, query.order, query.fingerprint(), value, last.id], separators=(",", ":")
    ).encode()
    return f"{_b64(body)}.{_b64(_sign(body, secret))}"


def with_cursor(query: ListQuery, cursor: str, *, secret: str) -> ListQuery:
    """``query`` resumed after the position ``cursor`` names; ``422 invalid_cursor`` unless the
    cursor was issued by this server for the same filters, sort and order."""
    invalid = InvalidInput(
        "cursor: not a cursor this server issued for these filters and this sort;"
        " start again without it.",
        code="invalid_cursor",
        details={"param": "cursor"},
    )
    try:
        head, _, tail = cursor.partition(".")
        body = _unb64(head)
        if not hmac.compare_digest(_unb64(tail), _sign(body, secret)):
            raise ValueError("bad signature")
        sort, order, fingerprint, value, row_id = json.loads(body)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise invalid from None
    if (sort, order, fingerprint) != (query.sort, query.order, query.fingerprint()):
        raise invalid
    if not isinstance(row_id, int) or isinstance(row_id, bool) or not 0 <= row_id <= _MAX_INT:
        raise invalid
    key = _key_value(query.sort, value)
    if key is _INVALID:
        raise invalid
    return _replace(query, after=Keyset(key, row_id))


_INVALID = object()


def _key_value(sort: str, value: Any) -> Any:
    if value is None:
        return None if sort in _NULLABLE else _INVALID
    if sort in _TIMES:
        if not isinstance(value, str):
            return _INVALID
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return _INVALID
        return when if when.tzinfo is not None else _INVALID
    if sort in _INTS:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INT
        return value if ok else _INVALID
    return value if isinstance(value, str) and len(value) <= MAX_TEXT else _INVALID


def _replace(query: ListQuery, **changes: Any) -> ListQuery:
    return replace(query, **changes)


def _sign(body: bytes, secret: str) -> bytes:
    key = hashlib.sha256(b"lealta members cursor\x00" + secret.encode()).digest()
    return hmac.new(key, body, hashlib.sha256).digest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text_: str) -> bytes:
    if not text_ or len(text_) > 2000:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4))


# --- the query (SQLAlchemy Core) -----------------------------------------------------------

COLUMNS = (
    Member.id,
    Member.external_id,
    Member.name,
    Member.email,
    Member.phone,
    Member.tags,
    Member.attributes,
    Member.enrolled_at,
    Account.tier_id,
    Account.points_available,
    Account.points_pending,
    Account.lifetime_earned,
    Account.orders_count,
    Account.last_order_at,
)


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    external_id: str
    name: str | None
    email: str | None
    phone: str | None
    tags: list[str]
    attributes: dict[str, Any]
    enrolled_at: datetime
    tier: str | None
    points_available: int
    points_pending: int
    lifetime_earned: int
    orders_count: int
    last_order_at: datetime | None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Row]
    next_cursor: str | None


def _sort_columns(sort: str) -> tuple[Any, Any]:
    """The sort key and its tie-break id, from the same table so that one index serves both."""
    key = {
        "enrolled_at": Member.enrolled_at,
        "external_id": Member.external_id,
        "name": Member.name,
        "points_available": Account.points_available,
        "lifetime_earned": Account.lifetime_earned,
        "last_order_at": Account.last_order_at,
    }[sort]
    ident = Account.member_id if key.class_ is Account else Member.id
    return key, ident


def search_mode(session: Session) -> SearchMode:
    """``contains`` where the text search has its trigram indexes (PostgreSQL with pg_trgm)
    or needs none (SQLite); ``prefix`` on a PostgreSQL without pg_trgm, whose b-tree indexes
    on ``lower()`` serve only prefixes. Looked up once per database."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return "contains"
    engine = bind if isinstance(bind, Engine) else bind.engine
    key = engine.url.render_as_string(hide_password=True)
    mode = _modes.get(key)
    if mode is None:
        found = session.scalar(text("SELECT to_regclass('ix_members_name_trgm') IS NOT NULL"))
        mode = "contains" if found else "prefix"
        _modes[key] = mode
    return mode


_modes: dict[str, SearchMode] = {}


def conditions(query: ListQuery, *, dialect: str, mode: SearchMode) -> list[ColumnElement[bool]]:
    """The WHERE conditions of the filters (no position)."""
    where: list[ColumnElement[bool]] = []
    if query.tiers:
        held: ColumnElement[bool] = Account.tier_id.in_(query.tiers)
        if query.levels and query.levels[0] in query.tiers:
            # No tier recorded (or one a programme edit removed) means the lowest tier.
            held = or_(held, Account.tier_id.is_(None), Account.tier_id.not_in(query.levels))
        where.append(held)
    if query.tags:
        where.append(_tag_condition(query.tags, query.tag_match, dialect))
    if query.attributes:
        where.append(_attribute_condition(query.attributes, dialect))
    if query.segments:
        where.append(
            exists()
            .where(SegmentMember.member_id == Member.id)
            .where(SegmentMember.segment_id == Segment.id)
            .where(Segment.key.in_(query.segments))
        )
    where += _range(Member.enrolled_at, query.enrolled)
    where += _range(Account.last_order_at, query.last_order)
    where += _range(Account.points_available, query.points)
    where += _range(Account.lifetime_earned, query.lifetime_earned)
    if query.q or query.member_ids:
        where.append(_search(query.q, query.member_ids, mode))
    return where


def _range(column: Any, bounds: Range) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if bounds.low is not None:
        out.append(column >= bounds.low)
    if bounds.high is not None:
        out.append(column < bounds.high if bounds.high_open else column <= bounds.high)
    return out


def _tag_condition(tags: tuple[str, ...], match: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        as_jsonb = type_coerce(Member.tags, JSONB())
        if match == "all":
            contains: ColumnElement[bool] = as_jsonb.contains(list(tags))
            return contains
        has_any: ColumnElement[bool] = as_jsonb.has_any(array(list(tags)))
        return has_any
    each = func.json_each(Member.tags).table_valued("value")
    if match == "all":
        return and_(*(exists(select(1).select_from(each).where(each.c.value == t)) for t in tags))
    return exists(select(1).select_from(each).where(each.c.value.in_(tags)))


def _attribute_condition(
    attributes: tuple[tuple[str, str, Any], ...], dialect: str
) -> ColumnElement[bool]:
    if dialect == "postgresql":
        wanted = {name: value for name, _, value in attributes}
        return type_coerce(Member.attributes, JSONB()).contains(wanted)
    out: list[ColumnElement[bool]] = []
    for name, kind, value in attributes:
        path = f'$."{name}"'  # names are slugs: [a-z0-9_-]
        if kind == "bool":
            out.append(func.json_type(Member.attributes, path) == ("true" if value else "false"))
        else:
            extracted = func.json_extract(Member.attributes, path)
            if kind in ("int", "float"):
                out.append(func.json_type(Member.attributes, path).in_(("integer", "real")))
            else:
                out.append(func.json_type(Member.attributes, path) == "text")
            out.append(extracted == value)
    return and_(*out)


def _search(q: str, member_ids: tuple[int, ...], mode: SearchMode) -> ColumnElement[bool]:
    matches: list[ColumnElement[bool]] = []
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        columns = (Member.external_id, Member.email, Member.name)
        if mode == "contains":
            pattern = f"%{escaped}%"
            matches += [c.ilike(pattern, escape="\\") for c in columns]
        else:
            pattern = f"{escaped.lower()}%"
            matches += [func.lower(c).like(pattern, escape="\\") for c in columns]
    if member_ids:
        matches.append(Member.id.in_(member_ids))
    return or_(*matches) if matches else false()


def segments(query: ListQuery, *, dialect: str, mode: SearchMode) -> list[Select[Any]]:
    """The statements one page reads, in order; each is limited to ``limit + 1`` rows and a
    page takes rows from them until it has that many (see the module docstring)."""
    key, ident = _sort_columns(query.sort)
    base = (
        select(*COLUMNS)
        .join(Account, Account.member_id == Member.id)
        .where(*conditions(query, dialect=dialect, mode=mode))
    )
    desc = query.order == "desc"
    after = query.after

    def filled() -> Select[Any]:
        stmt = base.where(key.is_not(None)) if query.sort in _NULLABLE else base
        if after is not None and after.value is not None:
            if query.sort == "external_id":  # unique: the key alone is the position
                stmt = stmt.where(key < after.value if desc else key > after.value)
            else:
                position = tuple_(key, ident)
                mark = tuple_(after.value, after.id)
                stmt = stmt.where(position < mark if desc else position > mark)
        order = (key.desc(), ident.desc()) if desc else (key.asc(), ident.asc())
        return stmt.order_by(*order)

    def empty() -> Select[Any]:
        stmt = base.where(key.is_(None))
        if after is not None and after.value is None:
            stmt = stmt.where(ident < after.id if desc else ident > after.id)
        return stmt.order_by(ident.desc() if desc else ident.asc())

    if query.sort not in _NULLABLE:
        parts = [filled()]
    elif desc:  # empty keys first
        at_empty = after is None or after.value is None
        parts = [empty(), filled()] if at_empty else [filled()]
    else:  # empty keys last
        parts = [empty()] if after is not None and after.value is None else [filled(), empty()]
    return [part.limit(query.limit + 1) for part in parts]


def page(session: Session, query: ListQuery, *, secret: str) -> Page:
    """One page of members and the cursor of the next page (``None`` at the end)."""
    dialect = session.get_bind().dialect.name
    rows: list[Any] = []
    wanted = query.limit + 1
    for stmt in segments(query, dialect=dialect, mode=search_mode(session)):
        rows += session.execute(stmt.limit(wanted - len(rows))).all()
        if len(rows) >= wanted:
            break
    items = [_row(r, query.levels) for r in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = items[-1]
        next_cursor = encode_cursor(
            query, Keyset(sort_value(last, query.sort), last.id), secret=secret
        )
    return Page(items, next_cursor)


def stream(
    session: Session, query: ListQuery, *, secret: str, chunk: int = MAX_LIMIT
) -> Iterator[Row]:
    """Every member matching ``query``, in its order, read a page at a time (bounded memory;
    each page its own statement, so no transaction needs to stay open between them)."""
    current = _replace(query, limit=chunk)
    while True:
        result = page(session, current, secret=secret)
        yield from result.items
        if result.next_cursor is None:
            return
        last = result.items[-1]
        current = _replace(current, after=Keyset(sort_value(last, current.sort), last.id))


def count(session: Session, query: ListQuery, *, cap: int) -> int:
    """How many members match, counting no further than ``cap`` (bounded work)."""
    dialect = session.get_bind().dialect.name
    inner = (
        select(Member.id)
        .join(Account, Account.member_id == Member.id)
        .where(*conditions(query, dialect=dialect, mode=search_mode(session)))
        .limit(cap)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)


def sort_value(row: Row, sort: str) -> Any:
    """The sort key of ``row`` (what a cursor after it records)."""
    return getattr(row, sort)


def _row(raw: Any, levels: tuple[str, ...]) -> Row:
    (ident, external_id, name, email, phone, tags, attributes, enrolled_at, tier_id,
     available, pending, lifetime, orders, last_order) = raw  # fmt: skip
    tier = (tier_id if tier_id in levels else levels[0]) if levels else None
    return Row(
        id=ident,
        external_id=external_id,
        name=name,
        email=email,
        phone=phone,
        tags=list(tags or []),
        attributes=dict(attributes or {}),
        enrolled_at=enrolled_at,
        tier=tier,
        points_available=available,
        points_pending=pending,
        lifetime_earned=lifetime,
        orders_count=orders,
        last_order_at=last_order,
    )


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "PARAMETERS",
    "SORTS",
    "InvalidFilter",
    "Keyset",
    "ListQuery",
    "Page",
    "Range",
    "Row",
    "count",
    "encode_cursor",
    "page",
    "parse",
    "segments",
    "stream",
    "with_cursor",
]
