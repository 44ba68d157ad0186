"""Segments at the database edge: the catalogue, set-wise recomputes, member-by-member
re-evaluation, static lists, previews and reads.

One model for definitions: the ``segments`` table lists every segment with its ``source``.
Those shipped in the programme (``source = programme``) are mirrored into it by
:func:`sync_programme` (run before every scheduled recompute) and are read-only over the
API; those created over the API or console are ``source = api``.

A recompute evaluates the compiled query once into a temporary table, then diffs it against
``segment_members`` with four set-wise statements (outbox rows for the newcomers and the
leavers, DELETE the leavers, INSERT the newcomers): no Python loop over members. The first
computation of a segment writes its ``segment.entered`` events marked ``backfill`` (a new
segment is not a million members "entering" something; subscribers that want them opt in).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import ValidationError
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    union_all,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.kit.db import Database, JSONType, UTCDateTime
from lealta.kit.errors import Conflict, InvalidInput, NotFound
from lealta.models import Member, OutboxMessage, Segment, SegmentCount, SegmentMember
from lealta.outbox import service as outbox
from lealta.outbox.events import SegmentEntered, SegmentLeft
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.segments import compiler
from lealta.segments.schema import Segment as SegmentDef
from lealta.segments.schema import is_population_relative

SAMPLE_SIZE = 10
MAX_STATIC_UPLOAD = 100_000

_scratch = MetaData()
segment_eval = Table(
    "segment_eval",
    _scratch,
    Column("member_id", BigInteger, primary_key=True),
    prefixes=["TEMPORARY"],
)
members_t = cast(Table, Member.__table__)
seg_members = cast(Table, SegmentMember.__table__)
outbox_t = cast(Table, OutboxMessage.__table__)


class SegmentNotFound(NotFound):
    code = "segment_not_found"


class SegmentReadOnly(Conflict):
    code = "segment_read_only"


class SegmentInvalid(InvalidInput):
    code = "segment_invalid"


@dataclass(frozen=True, slots=True)
class Recomputed:
    key: str
    members: int
    entered: int
    left: int


@dataclass(frozen=True, slots=True)
class Preview:
    count: int
    sample: list[str]
    entering: int
    leaving: int
    current: int


def definition(row: Segment) -> SegmentDef:
    return SegmentDef.model_validate(row.definition)


def parse(data: dict[str, Any]) -> SegmentDef:
    """A definition from JSON/form data; :class:`SegmentInvalid` with the first error."""
    try:
        return SegmentDef.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # Pydantic names union members and validators in the path; keep the document's path.
        where = ".".join(
            str(p) for p in first["loc"] if "[" not in str(p) and p not in ("Condition", "Group")
        )
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SegmentInvalid(
            f"{where}: {message}" if where else message,
            details=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
        ) from None


def get(session: Session, key: str) -> Segment:
    row = session.scalar(select(Segment).where(Segment.key == key))
    if row is None:
        raise SegmentNotFound(f"No segment has the key {key!r}.")
    return row


def list_segments(session: Session) -> Sequence[Segment]:
    """Every segment, programme ones first, then by key."""
    return session.scalars(select(Segment).order_by(Segment.source.desc(), Segment.key)).all()


def counts_over_time(
    session: Session, segment_ids: Sequence[int], *, days: int = 30
) -> dict[int, list[int]]:
    """The last ``days`` daily counts of each segment, oldest first."""
    if not segment_ids:
        return {}
    found: dict[int, list[tuple[Any, int]]] = {}
    rows = session.execute(
        select(SegmentCount.segment_id, SegmentCount.day, SegmentCount.members)
        .where(SegmentCount.segment_id.in_(segment_ids))
        .order_by(SegmentCount.segment_id, SegmentCount.day)
    )
    for sid, day, n in rows:
        found.setdefault(int(sid), []).append((day, int(n)))
    return {sid: [n for _, n in rows_[-days:]] for sid, rows_ in found.items()}


# --- the catalogue -----------------------------------------------------------------------


def _store(data: SegmentDef) -> dict[str, Any]:
    return data.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def sync_programme(session: Session, programme: Programme, *, now: datetime) -> None:
    """Mirror the programme's ``segments`` into the table (insert, update a changed
    definition, delete those no longer shipped); API segments with the same key win."""
    shipped = {s.id: s for s in programme.segments}
    rows = {r.key: r for r in session.scalars(select(Segment)).all()}
    for key, data in shipped.items():
        row = rows.get(key)
        stored = _store(data)
        if row is None:
            session.add(
                Segment(
                    key=key, source="programme", kind=data.kind, definition=stored,
                    member_count=0, computed_at=None, created_at=now, updated_at=now,
                )
            )  # fmt: skip
        elif row.source == "programme" and row.definition != stored:
            row.definition = stored
            row.kind = data.kind
            row.updated_at = now
    for key, row in rows.items():
        if row.source == "programme" and key not in shipped:
            session.delete(row)
    session.flush()


def create(session: Session, data: SegmentDef, *, actor: str, now: datetime) -> Segment:
    if session.scalar(select(Segment.id).where(Segment.key == data.id)) is not None:
        raise Conflict(f"A segment with the key {data.id!r} exists.", code="segment_exists")
    row = Segment(
        key=data.id, source="api", kind=data.kind, definition=_store(data), member_count=0,
        computed_at=None, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    audit.record(
        session, actor=actor, action="segment.create", target_type="segment",
        target_id=data.id, now=now, details={"kind": data.kind},
    )  # fmt: skip
    return row


def _editable(row: Segment) -> None:
    if row.source == "programme":
        raise SegmentReadOnly(
            f"Segment {row.key!r} ships with the programme: change it in the programme "
            "document, or create a segment of your own.",
        )


def update(session: Session, key: str, data: SegmentDef, *, actor: str, now: datetime) -> Segment:
    row = get(session, key)
    _editable(row)
    if data.id != key:
        raise Conflict("The key of a segment cannot change.", code="segment_key_changed")
    if data.kind != row.kind:
        raise Conflict("A segment cannot change between dynamic and static.", code="segment_kind")
    row.definition = _store(data)
    row.updated_at = now
    audit.record(
        session, actor=actor, action="segment.update", target_type="segment",
        target_id=key, now=now,
    )  # fmt: skip
    return row


def remove(session: Session, key: str, *, actor: str, now: datetime) -> None:
    row = get(session, key)
    _editable(row)
    session.execute(delete(SegmentCount).where(SegmentCount.segment_id == row.id))
    session.execute(delete(SegmentMember).where(SegmentMember.segment_id == row.id))
    session.delete(row)
    audit.record(
        session, actor=actor, action="segment.delete", target_type="segment",
        target_id=key, now=now,
    )  # fmt: skip


# --- evaluation --------------------------------------------------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def query_for(
    session: Session,
    data: SegmentDef,
    *,
    now: datetime,
    currency: str,
    member_id: int | None = None,
) -> Any:
    """The compiled ``SELECT member_id`` of a dynamic definition."""
    group = data.group()
    if group is None:
        raise SegmentInvalid("A static segment has no conditions to evaluate.")
    return compiler.compile_group(
        group, dialect=_dialect(session), now=now, currency=currency, member_id=member_id
    )


def _reset_scratch(session: Session) -> None:
    if _dialect(session) == "postgresql":
        session.execute(
            text("CREATE TEMPORARY TABLE IF NOT EXISTS segment_eval (member_id BIGINT PRIMARY KEY)")
        )
        session.execute(text("TRUNCATE segment_eval"))
    else:
        session.execute(
            text(
                "CREATE TEMPORARY TABLE IF NOT EXISTS segment_eval (member_id INTEGER PRIMARY KEY)"
            )
        )
        session.execute(text("DELETE FROM segment_eval"))


def _events_from(
    session: Session, topic: str, key: str, rows: Any, *, now: datetime, backfill: bool
) -> None:
    """``INSERT INTO outbox ... SELECT`` one event per member of ``rows`` (its only column is
    ``member_id``): every payload of one recompute is the same, so it is a bound constant."""
    event = (SegmentEntered if topic == SegmentEntered.TYPE else SegmentLeft)(key, now)
    select_rows = select(
        literal(topic, String()).label("topic"),
        literal(event.VERSION, Integer()).label("version"),
        rows.c.member_id,
        literal(event.to_payload(), JSONType).label("payload"),
        literal(backfill, Boolean()).label("backfill"),
        literal(now, UTCDateTime()).label("created_at"),
    )
    session.execute(
        insert(outbox_t).from_select(
            ["topic", "version", "member_id", "payload", "backfill", "created_at"], select_rows
        )
    )


def _apply_diff(
    session: Session, row: Segment, *, now: datetime, backfill: bool
) -> tuple[int, int, int]:
    """Diff ``segment_eval`` against the segment's members; (members, entered, left)."""
    sid = row.id
    is_member = exists().where(
        seg_members.c.segment_id == sid, seg_members.c.member_id == segment_eval.c.member_id
    )
    still = exists().where(segment_eval.c.member_id == seg_members.c.member_id)
    newcomers = select(segment_eval.c.member_id).where(~is_member).subquery("n")
    leavers = (
        select(seg_members.c.member_id).where(seg_members.c.segment_id == sid, ~still).subquery("l")
    )
    before = session.scalar(
        select(func.count()).select_from(seg_members).where(seg_members.c.segment_id == sid)
    )
    _events_from(session, SegmentEntered.TYPE, row.key, newcomers, now=now, backfill=backfill)
    _events_from(session, SegmentLeft.TYPE, row.key, leavers, now=now, backfill=False)
    deleted = session.execute(delete(seg_members).where(seg_members.c.segment_id == sid, ~still))
    left = cast(CursorResult[Any], deleted).rowcount
    session.execute(
        insert(seg_members).from_select(
            ["segment_id", "member_id", "entered_at"],
            select(
                literal(sid, BigInteger()), segment_eval.c.member_id, literal(now, UTCDateTime())
            ).where(~is_member),
        )
    )
    total = int(session.scalar(select(func.count()).select_from(segment_eval)) or 0)
    left = int(left or 0)
    # INSERT ... SELECT reports no row count through every driver: derive it.
    return total, total - (int(before or 0) - left), left


def _record_count(session: Session, row: Segment, members: int, now: datetime) -> None:
    day = now.date()
    session.execute(
        delete(SegmentCount).where(SegmentCount.segment_id == row.id, SegmentCount.day == day)
    )
    session.execute(insert(SegmentCount).values(segment_id=row.id, day=day, members=members))
    row.member_count = members
    row.computed_at = now


def recompute(session: Session, row: Segment, *, now: datetime, currency: str) -> Recomputed:
    """Re-evaluate one segment over every member, set-wise, in the caller's transaction."""
    data = definition(row)
    if data.kind == "static":
        n = session.scalar(
            select(func.count()).select_from(seg_members).where(seg_members.c.segment_id == row.id)
        )
        _record_count(session, row, int(n or 0), now)
        return Recomputed(row.key, int(n or 0), 0, 0)
    _reset_scratch(session)
    query = query_for(session, data, now=now, currency=currency)
    session.execute(insert(segment_eval).from_select(["member_id"], query))
    if _dialect(session) == "postgresql":
        session.execute(text("ANALYZE segment_eval"))
    members, entered, left = _apply_diff(session, row, now=now, backfill=row.computed_at is None)
    _record_count(session, row, members, now)
    return Recomputed(row.key, members, entered, left)


def recompute_all(
    session: Session, *, now: datetime, keys: Iterable[str] | None = None
) -> list[Recomputed]:
    """Mirror the programme's segments and recompute every one (or only ``keys``)."""
    programme = programmes.current(session, now=now)
    sync_programme(session, programme, now=now)
    wanted = set(keys) if keys is not None else None
    done: list[Recomputed] = []
    for row in list_segments(session):
        if wanted is not None and row.key not in wanted:
            continue
        done.append(recompute(session, row, now=now, currency=programme.currency))
    if wanted is not None and (missing := wanted - {d.key for d in done}):
        raise SegmentNotFound(f"No segment has the key {sorted(missing)[0]!r}.")
    return done


def reevaluate_member(session: Session, member_id: int, *, now: datetime) -> tuple[int, int]:
    """Re-evaluate one member's dynamic segments with the compiled queries filtered to the
    member (one UNION ALL round trip), and apply the difference; (entered, left).

    Population-relative segments (RFM, deciles) are left to the scheduled recompute: one
    member's order moves everyone's rank."""
    rows = [r for r in list_segments(session) if r.kind == "dynamic" and r.computed_at is not None]
    if not rows:
        return 0, 0
    programme = programmes.current(session, now=now)
    checks = []
    evaluated: set[int] = set()
    for row in rows:
        data = definition(row)
        group = data.group()
        if group is None or is_population_relative(group):
            continue
        evaluated.add(row.id)
        q = query_for(session, data, now=now, currency=programme.currency, member_id=member_id)
        checks.append(select(literal(row.id, BigInteger()).label("sid")).where(exists(q)))
    if not checks:
        return 0, 0
    inside = {int(s) for s in session.scalars(union_all(*checks) if len(checks) > 1 else checks[0])}
    current = {
        int(s)
        for s in session.scalars(
            select(seg_members.c.segment_id).where(seg_members.c.member_id == member_id)
        )
    } & evaluated
    by_id = {r.id: r for r in rows}
    entered = inside - current
    left = current - inside
    if left:
        session.execute(
            delete(seg_members).where(
                seg_members.c.member_id == member_id, seg_members.c.segment_id.in_(left)
            )
        )
    if entered:
        session.execute(
            insert(seg_members),
            [{"segment_id": s, "member_id": member_id, "entered_at": now} for s in entered],
        )
    outbox.emit_many(
        session,
        [(SegmentEntered(by_id[s].key, now), member_id) for s in sorted(entered)]
        + [(SegmentLeft(by_id[s].key, now), member_id) for s in sorted(left)],
        now=now,
        backfill=False,
    )
    for s in entered:
        by_id[s].member_count += 1
    for s in left:
        by_id[s].member_count -= 1
    return len(entered), len(left)


def preview(session: Session, data: SegmentDef, *, now: datetime) -> Preview:
    """How many members ``data`` selects now, a sample of their customer ids, and how that
    differs from the saved segment of the same key (entering / leaving)."""
    programme = programmes.current(session, now=now)
    query = query_for(session, data, now=now, currency=programme.currency).subquery("q")
    count = session.scalar(select(func.count()).select_from(query)) or 0
    sample = list(
        session.scalars(
            select(members_t.c.external_id)
            .join(query, query.c.member_id == members_t.c.id)
            .order_by(members_t.c.id)
            .limit(SAMPLE_SIZE)
        )
    )
    row = session.scalar(select(Segment).where(Segment.key == data.id))
    current = entering = leaving = 0
    if row is not None:
        mine = select(seg_members.c.member_id).where(seg_members.c.segment_id == row.id)
        current = session.scalar(select(func.count()).select_from(mine.subquery())) or 0
        entering = (
            session.scalar(
                select(func.count()).select_from(query).where(query.c.member_id.not_in(mine))
            )
            or 0
        )
        leaving = (
            session.scalar(
                select(func.count())
                .select_from(seg_members)
                .where(
                    seg_members.c.segment_id == row.id,
                    seg_members.c.member_id.not_in(select(query.c.member_id)),
                )
            )
            or 0
        )
    else:
        entering = count
    return Preview(int(count), sample, int(entering), int(leaving), int(current))


# --- static lists ------------------------------------------------------------------------


def upload(
    session: Session,
    key: str,
    customer_ids: Sequence[str],
    *,
    mode: Literal["replace", "add", "remove"],
    actor: str,
    now: datetime,
) -> tuple[Recomputed, list[str]]:
    """Set a static segment's members from customer ids; unknown ids are returned, not
    guessed. ``replace`` makes the list exactly these members."""
    row = get(session, key)
    if row.kind != "static":
        raise Conflict(
            f"Segment {key!r} is dynamic: its members follow its conditions.",
            code="segment_not_static",
        )
    ids = list(dict.fromkeys(c.strip() for c in customer_ids if c.strip()))
    if len(ids) > MAX_STATIC_UPLOAD:
        raise InvalidInput(
            f"At most {MAX_STATIC_UPLOAD} customer ids per upload.", code="segment_upload_too_large"
        )
    found: dict[str, int] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        rows = session.execute(
            select(members_t.c.external_id, members_t.c.id).where(
                members_t.c.external_id.in_(chunk)
            )
        )
        found.update({str(ext): int(mid) for ext, mid in rows})
    unknown = [c for c in ids if c not in found]
    _reset_scratch(session)
    current: list[int] = []
    if mode != "replace":
        current = list(
            session.scalars(
                select(seg_members.c.member_id).where(seg_members.c.segment_id == row.id)
            )
        )
    wanted = set(current)
    if mode == "remove":
        wanted -= set(found.values())
    else:
        wanted |= set(found.values())
    if wanted:
        session.execute(insert(segment_eval), [{"member_id": m} for m in sorted(wanted)])
    members, entered, left = _apply_diff(session, row, now=now, backfill=False)
    _record_count(session, row, members, now)
    audit.record(
        session, actor=actor, action="segment.upload", target_type="segment", target_id=key,
        now=now, details={"mode": mode, "entered": entered, "left": left, "unknown": len(unknown)},
    )  # fmt: skip
    return Recomputed(key, members, entered, left), unknown


# --- reads -------------------------------------------------------------------------------


def members_page(
    session: Session, row: Segment, *, after: tuple[datetime, int] | None, limit: int
) -> list[tuple[Member, datetime]]:
    """Members of a segment, newest entry first, ``limit`` after the cursor."""
    stmt = (
        select(Member, SegmentMember.entered_at)
        .join(SegmentMember, SegmentMember.member_id == Member.id)
        .where(SegmentMember.segment_id == row.id)
        .order_by(SegmentMember.entered_at.desc(), Member.id.desc())
        .limit(limit)
    )
    if after is not None:
        at, mid = after
        stmt = stmt.where(
            (SegmentMember.entered_at < at) | ((SegmentMember.entered_at == at) & (Member.id < mid))
        )
    return [(m, e) for m, e in session.execute(stmt)]


def segments_of(session: Session, member_id: int) -> list[tuple[Segment, datetime]]:
    """The segments a member is in, with when they entered."""
    rows = session.execute(
        select(Segment, SegmentMember.entered_at)
        .join(SegmentMember, SegmentMember.segment_id == Segment.id)
        .where(SegmentMember.member_id == member_id)
        .order_by(Segment.key)
    )
    return [(s, e) for s, e in rows]


def segment_keys_of(session: Session, member_id: int) -> list[str]:
    """The keys of a member's segments (one indexed lookup): what rules read as
    ``member.segments``."""
    return list(
        session.scalars(
            select(Segment.key)
            .join(SegmentMember, SegmentMember.segment_id == Segment.id)
            .where(SegmentMember.member_id == member_id)
            .order_by(Segment.key)
        )
    )


EXPORT_COLUMNS = ("customer_id", "name", "email", "language", "entered_at")
EXPORT_CHUNK = 1000


def _cell(value: str) -> str:
    """A spreadsheet must not run a cell as a formula (CSV injection)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def export_csv(db: Database, key: str) -> Iterator[bytes]:
    """The members of segment ``key`` as CSV, newest entry first, a page per statement."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    after: tuple[datetime, int] | None = None
    while True:
        with db.unit_of_work(write=False) as session:
            page = members_page(session, get(session, key), after=after, limit=EXPORT_CHUNK)
        for member, entered_at in page:
            writer.writerow(
                (
                    _cell(member.external_id),
                    _cell(member.name or ""),
                    _cell(member.email or ""),
                    member.language,
                    entered_at.isoformat(),
                )
            )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(page) < EXPORT_CHUNK:
            return
        after = (page[-1][1], page[-1][0].id)
