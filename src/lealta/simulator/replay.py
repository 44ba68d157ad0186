"""Replay an order history through a design in memory, with the real engine.

The same steps as ``lealta import orders`` into a fresh Lealta followed by the points job
(:func:`lealta.jobs.service.run_due`), without a database:

- each CSV row is read and checked by the import's own parser
  (:mod:`lealta.imports.service`) and the batch driver's checks (key, moment, attributes);
  a key seen before replays (same body) or is refused (``idempotency_key_reused``);
- a new customer is enrolled by its first event the engine accepts
  (:func:`lealta.members.service.new_member`, :func:`lealta.events.store.new_state`);
- :func:`lealta.engine.core.apply` runs on the member's state, threaded from one event to the
  next (each state gets the orders its event names, looked up among every order recorded so
  far, as the batch driver does; the engine's states keep only the lots with points left
  or still pending, the lots the driver's loader reads);
- every spend threshold crossed issues its reward's coupon (counted, and valued at the
  coupon's ``amount_off`` as :func:`lealta.coupons.service.issue_many` stores it);
- at the end :func:`lealta.engine.core.catch_up` brings every member to ``as_of`` (pending
  releases, expiries, tier reviews), as the points job does for the members due.

What the figures need is accumulated from the outcomes as they come (ledger flows by month,
tier changes, orders, enrolments) and from the final states (accounts, orders); members per
segment are counted by the segments' own compiled SQL over the final members, accounts,
orders and open lots loaded into an in-memory SQLite database
(:func:`segment_counts`). Nothing is ever written to the configured database.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import multiprocessing
import multiprocessing.connection
import operator
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import msgspec
from sqlalchemy import Column, MetaData, Select, Table, create_engine, func, select
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from lealta.engine import core as engine
from lealta.engine.outcome import Crossing, Outcome
from lealta.engine.state import Figures, MemberState, OrderState
from lealta.events import batch, store
from lealta.events.schemas import EventIn
from lealta.events.service import to_engine
from lealta.imports import service as imports
from lealta.kit.db import Base, UTCDateTime, sqlite_moment
from lealta.kit.errors import Conflict, LealtaError
from lealta.kit.idempotency import check_key, request_hash
from lealta.kit.money import DEFAULT_MAX_AMOUNT, to_minor
from lealta.kit.timestamps import check_moment
from lealta.members import attributes
from lealta.members import service as members
from lealta.members.newcomer import NewMember
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
from lealta.programme.schema import Programme
from lealta.segments import compiler
from lealta.simulator import parallel
from lealta.simulator.figures import Tally

ProgressCallback = Callable[[int, int], None]


Columns = dict[str, list[Any]]
"""A table's rows column-wise: column name -> values."""


@dataclasses.dataclass(slots=True)
class Final:
    """The replay's end state, as plain data: what the figures and segments are read from."""

    report: imports.ImportReport
    tally: Tally
    accounts: list[tuple[int, int, int, int, int, str | None]]
    """Per member: lifetime earned, lifetime spent, expired, available, pending, tier."""
    coupons: int = 0
    coupon_face_minor: int = 0
    enrolled_on: list[int] = dataclasses.field(default_factory=list)
    """The line that enrolled each member (member ``n`` at index ``n - 1``)."""
    tables: list[Columns] = dataclasses.field(default_factory=lambda: [{}, {}, {}, {}])
    """Members, accounts, orders and open lots for the segments (member ids from 1), only
    the columns the segments' queries read, as sent to SQLite (:func:`_as_sent`)."""


_MISSING: Any = object()


def _key_reused(key: str) -> Conflict:
    return Conflict(
        "This idempotency key was already used with a different request.",
        code="idempotency_key_reused",
        details={"key": key},
    )


_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(list[str]).decode


def _event_of(columns: imports._Columns, line: int, kept: bytes) -> EventIn:
    """The event of a row kept by :data:`_encode` (it was valid when first read)."""
    return imports._to_event(columns, line, _decode(kept))[1]


def _digest(event: EventIn) -> str:
    return request_hash(event.model_dump(mode="json", exclude_none=True))


def _replay_part(
    programme: Programme,
    path: Path,
    *,
    as_of: datetime,
    actor: str,
    auto_enrol: bool,
    max_amount: Decimal,
    on_progress: ProgressCallback | None,
    chunk_size: int,
    segment_sql: str,
    routes: Mapping[str, int] | None = None,
    part: int = 0,
    lines: Sequence[int] | None = None,
) -> Final:
    """Replay the rows of the CSV at ``path`` that belong to ``part`` (all of them when
    ``routes`` is None; else the rows of the customers ``routes`` gives to ``part``, and to
    part 0 the rows without a usable customer id) and catch up to ``as_of``. ``lines``: the
    number in the original file of each line of ``path`` (a part's file of a split)."""
    report = imports.ImportReport()
    ctx = engine.Context(actor=actor, max_amount=max_amount)
    currency = programme.currency
    tally = Tally()
    ids: dict[str, int] = {}
    # The members' profiles, kept only if a segment reads the members table (else each
    # would stay alive, and be walked by every collection, for nothing).
    profiles: list[NewMember] | None = [] if _used(segment_sql)("members") else None
    states: dict[int, MemberState] = {}
    orders: dict[str, OrderState] = {}
    channels: dict[str, tuple[str | None, str | None]] = {}
    # Each key's row, as bytes: a str or bytes is never walked by the garbage collector, and
    # the EventIn it made (a tree of models, dicts and lists) would be, for every row kept.
    seen: dict[str, bytes] = {}
    final = Final(report, tally, [])
    rewards = {r.id: r for r in programme.rewards}

    def record(m: int, outcome: Outcome) -> None:
        for e in outcome.entries:
            tally.entry(e.occurred_at, e.entry_type, e.points)
        for o in outcome.orders:
            orders[o.external_id] = o
        for new in outcome.new_orders:
            channels[new.order.external_id] = (new.channel, new.store)
        for move in outcome.tier_moves:
            tally.tier_change(move.occurred_at, m, move.to_tier)
        for ev in outcome.events:
            if isinstance(ev, Crossing):
                reward = rewards.get(ev.reward_id)
                if reward is None or (reward.coupon is None and reward.type != "free_shipping"):
                    continue
                final.coupons += 1
                spec = reward.coupon
                if spec is not None and spec.amount_off is not None:
                    final.coupon_face_minor += to_minor(spec.amount_off, currency)
        states[m] = outcome.state

    with (
        imports._open(path) as raw,
        imports._collections_between_chunks(survivors_stay=True) as collect,
    ):
        source = imports._Lines(raw)
        reader = csv.reader(source, strict=True)
        columns = imports._Columns.from_header(imports._read_header(reader))
        rows = imports._rows(reader)
        stopped: LealtaError | None = None
        width, who = columns.width, columns.index["customer_id"]
        while True:
            chunk, stopped = imports._next_chunk(rows, chunk_size)
            for line, cells in chunk:
                if lines is not None:
                    line = lines[line - 1]
                if routes is not None:
                    owner = routes.get(cells[who].strip(), 0) if len(cells) == width else 0
                    if owner != part:
                        continue
                item = imports._to_item(columns, line, cells, report)
                if item is None:
                    continue
                ev = item.event
                try:
                    item.key = key = check_key(item.key)
                    check_moment(ev.occurred_at, now=as_of)
                    if ev.customer is not None:
                        attributes.check(programme, ev.customer.attributes)
                    earlier = seen.get(key)
                    if earlier is not None:
                        if _digest(_event_of(columns, line, earlier)) != _digest(ev):
                            raise _key_reused(key)
                        report.replayed += 1
                        continue
                    ext = ev.customer_id
                    m = ids.get(ext)
                    newcomer: NewMember | None = None
                    ref = (
                        ev.order.id
                        if ev.order is not None
                        else ev.refund.order_id
                        if ev.refund is not None
                        else None
                    )
                    known = orders.get(ref) if ref is not None else None
                    named = {ref: known} if ref is not None else {}
                    if m is None:
                        if not auto_enrol:
                            raise batch._not_enrolled(ext)
                        newcomer = members.new_member(
                            ext,
                            ev.customer,
                            channel=ev.order.channel if ev.order and ev.order.channel else "event",
                            at=ev.occurred_at,
                            now=as_of,
                        )
                        state = store.new_state(
                            len(final.enrolled_on) + 1, newcomer, programme, orders=named
                        )
                    else:
                        state = states[m]
                        # The engine reads only the order its event names: the member's own
                        # map holds it already (the same value) unless another member has it
                        # (a new order's id absent from the map reads as not recorded).
                        if ref is not None:
                            have = state.orders.get(ref, _MISSING)
                            absent_is_none = have is _MISSING and ev.order is not None
                            if have is not known and not (absent_is_none and known is None):
                                state = msgspec.structs.replace(state, orders=named)
                    outcome = engine.apply(programme, state, to_engine(ev, key), ctx)
                except LealtaError as exc:
                    report.reject(line, exc.code, exc.message)
                    continue
                if newcomer is not None:
                    final.enrolled_on.append(line)
                    if profiles is not None:
                        profiles.append(newcomer)
                    m = ids[ext] = len(final.enrolled_on)
                    tally.member(ev.occurred_at)
                assert m is not None
                seen[key] = _encode(cells)
                report.imported += 1
                record(m, outcome)
            last = len(chunk) < chunk_size
            chunk, cells = [], []  # gone before the collection, which would walk (and freeze) them
            collect()
            if on_progress is not None:
                on_progress(report.rows_read, source.bytes_read)
            if stopped is not None:
                raise stopped
            if last:
                break
        report.rejected.sort()
        # The points job: releases, expiries and tier reviews due by as_of.
        for m in range(1, len(final.enrolled_on) + 1):
            record(m, engine.catch_up(programme, states[m], as_of))
    for o in orders.values():
        tally.order(o.occurred_at, o.total_minor - o.refunded_minor)
    figures_of = [states[m].figures for m in range(1, len(final.enrolled_on) + 1)]
    final.accounts = [
        (
            f.lifetime_earned,
            f.lifetime_spent,
            f.points_expired,
            f.points_available,
            f.points_pending,
            f.tier_id,
        )
        for f in figures_of
    ]
    if segment_sql:
        tables = _segment_tables(
            profiles or [], figures_of, states, orders, channels, as_of=as_of, text=segment_sql
        )
        final.tables = [
            _as_sent(_table(model), columns)
            for model, columns in zip(_SEGMENT_MODELS, tables, strict=True)
        ]
    return final


# --- members per segment -----------------------------------------------------------------------


_FIGURES = [f.name for f in msgspec.structs.fields(Figures) if f.name != "member_id"]


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def _as_sent(table: Table, columns: Columns) -> Columns:
    """``columns`` of ``table`` as SQLAlchemy would send them to SQLite: each value converted
    by its column type's bind processor (done in each replaying process, in parallel, so that
    the counting only inserts)."""
    out: Columns = {}
    for name, values in columns.items():
        column_type = table.c[name].type
        if isinstance(column_type, UTCDateTime):
            out[name] = [None if v is None else sqlite_moment(v) for v in values]
            continue
        found = column_type.dialect_impl(_SQLITE).bind_processor(_SQLITE)
        if found is None:
            out[name] = values
            continue
        process: Callable[[Any], Any] = found
        out[name] = [process(v) for v in values]
    return out


_SQLITE = sqlite_dialect()


def _insert(raw: Any, table: Table, columns: Columns) -> None:
    """Insert column-wise data (:func:`_as_sent`) into ``table`` with one ``executemany`` on
    the driver's connection."""
    names = list(columns)
    if not names or not columns[names[0]]:
        return
    marks = ", ".join("?" * len(names))
    statement = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"  # noqa: S608
    raw.executemany(statement, zip(*(columns[name] for name in names), strict=True))


def segment_queries(programme: Programme, *, as_of: datetime) -> dict[str, Select[Any] | None]:
    """Each segment's compiled query on SQLite (None for a static list)."""
    out: dict[str, Select[Any] | None] = {}
    for segment in programme.segments:
        group = segment.group()
        out[segment.id] = (
            None
            if group is None
            else compiler.compile_group(
                group, dialect="sqlite", now=as_of, currency=programme.currency
            )
        )
    return out


def _used(text: str) -> Callable[[str], bool]:
    """Whether a column name appears as a word in the segments' SQL ``text`` (qualified or
    under an alias: over-inclusion costs a little, a missing column would fail the query)."""
    words = set(re.findall(r"\w+", text))
    return words.__contains__


def _segment_tables(
    people: list[NewMember],
    figs: list[Figures],
    states: dict[int, MemberState],
    orders: dict[str, OrderState],
    channels: dict[str, tuple[str | None, str | None]],
    *,
    as_of: datetime,
    text: str,
) -> list[Columns]:
    """The columns of members, accounts, orders and open lots the queries in ``text`` read
    (members are numbered from 1 in enrolment order); a table no query names is left empty
    (``people``, the members' profiles, is read only if a query names the members table)."""
    used = _used(text)
    n = len(figs)
    out: list[Columns] = [{}, {}, {}, {}]

    def fill(i: int, columns: dict[str, Callable[[], list[Any]]]) -> None:
        out[i] = {name: make() for name, make in columns.items() if used(name)}
        if out[i]:  # the key the tables are joined on, and counted by
            out[i].setdefault("member_id" if i else "id", columns["member_id" if i else "id"]())

    if used("members"):
        member_columns: dict[str, Callable[[], list[Any]]] = {
            "id": lambda: list(range(1, n + 1)),
            "session_generation": lambda: [0] * n,
        }
        for name in _MEMBER_COLUMNS:
            member_columns[name] = functools.partial(_attribute_of, people, name)
        fill(0, member_columns)
    if used("accounts"):
        account_columns: dict[str, Callable[[], list[Any]]] = {
            "member_id": lambda: list(range(1, n + 1)),
            "updated_at": lambda: [as_of] * n,
        }
        for name in _FIGURES:
            account_columns[name] = functools.partial(_attribute_of, figs, name)
        fill(1, account_columns)
    if used("orders"):
        kept = list(orders.values())
        order_columns: dict[str, Callable[[], list[Any]]] = {
            "channel": lambda: [channels.get(o.external_id, (None, None))[0] for o in kept],
            "store": lambda: [channels.get(o.external_id, (None, None))[1] for o in kept],
            "recorded_at": lambda: [as_of] * len(kept),
        }
        for name in _ORDER_COLUMNS:
            order_columns[name] = functools.partial(_attribute_of, kept, name)
        fill(2, order_columns)
    if used("point_lots"):
        lots = [(m, lot) for m, state in states.items() for lot in state.lots]
        lot_columns: dict[str, Callable[[], list[Any]]] = {
            "member_id": lambda: [m for m, _ in lots],
            "entry_id": lambda: [0] * len(lots),
        }
        for name in _LOT_COLUMNS:
            lot_columns[name] = functools.partial(_attribute_of, [lot for _, lot in lots], name)
        fill(3, lot_columns)
    return out


_SEGMENT_MODELS = (Member, Account, Order, PointLot)
"""The tables of :attr:`Final.tables`, in order."""

_MEMBER_COLUMNS = (
    "external_id", "language", "timezone", "attributes", "tags", "enrolled_at",
    "enrolment_channel", "created_at", "updated_at", "plan_id", "plan_until", "email", "phone",
    "name", "birthday",
)  # fmt: skip
_ORDER_COLUMNS = (
    "member_id", "external_id", "total_minor", "refunded_minor", "currency", "status",
    "points_earned", "points_reversed", "occurred_at",
)  # fmt: skip
_LOT_COLUMNS = ("points", "remaining", "earned_at", "expires_at", "pending", "available_at")


def _attribute_of(rows: list[Any], name: str) -> list[Any]:
    get = operator.attrgetter(name)
    return [get(row) for row in rows]


def _slim(table: Table, columns: Columns, metadata: MetaData) -> Table:
    """``table`` with only ``columns`` and its primary key (which the queries join on),
    without other constraints: the segments' queries read nothing else, and filling every
    column cost more than the counting."""
    wanted = {*columns, *(c.name for c in table.primary_key)}
    return Table(
        table.name,
        metadata,
        *(Column(c.name, c.type, primary_key=c.primary_key) for c in table.c if c.name in wanted),
    )


def segment_counts(final: Final, programme: Programme, *, as_of: datetime) -> dict[str, int]:
    """Members in each of the design's segments at ``as_of``: each dynamic segment's compiled
    query (:func:`lealta.segments.compiler.compile_group`, the SQL the recompute job runs)
    over the final members, accounts, orders and open lots in an in-memory SQLite database.
    A static segment (an uploaded list) holds no replayed member: 0."""
    queries = segment_queries(programme, as_of=as_of)
    if not queries:
        return {}
    db = create_engine("sqlite://")
    metadata = MetaData()
    tables = [
        _slim(_table(m), c, metadata) for m, c in zip(_SEGMENT_MODELS, final.tables, strict=True)
    ]
    # Read by conditions on consents, counted events and CLV: none in a replayed history.
    empty = [_table(Consent), _table(Event), _table(ClvFit), _table(ClvPrediction)]
    metadata.create_all(db)
    Base.metadata.create_all(db, tables=empty)
    counts: dict[str, int] = {}
    with db.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for table, columns in zip(tables, final.tables, strict=True):
            _insert(raw, table, columns)
        for key, query in queries.items():
            if query is None:
                counts[key] = 0
                continue
            found = conn.scalar(select(func.count()).select_from(query.subquery()))
            counts[key] = int(found or 0)
    db.dispose()
    return counts


# --- the replay, in one process or in several --------------------------------------------------


def replay(
    programme: Programme,
    path: Path,
    *,
    as_of: datetime,
    actor: str,
    auto_enrol: bool = True,
    max_amount: Decimal = DEFAULT_MAX_AMOUNT,
    on_progress: ProgressCallback | None = None,
    chunk_size: int = imports.DEFAULT_CHUNK_SIZE,
    workers: int = 1,
    split: parallel.Split | None = None,
) -> Final:
    """Replay the CSV at ``path`` and catch up to ``as_of``; raises the import's file errors
    (``unreadable_file``, ``invalid_csv_header``, ``invalid_csv``).

    With ``workers`` > 1 (on a system that can fork), customers are
    split into independent groups, each replayed by a forked process: customers whose rows
    name the same order id (a refund of someone else's order, an order id reused, hence also
    the same idempotency key) are in one group, so every lookup a row makes (its member, the
    order it names, its key) stays inside its group and each member's rows are replayed in
    file order, as in one process; the parts are then added up. ``split``: the groups
    (:func:`lealta.simulator.parallel.split` for ``workers`` parts) when already read, with
    each part's rows in a file of its own if they were copied."""
    started = time.perf_counter()
    queries = segment_queries(programme, as_of=as_of)
    text = " ".join(str(q) for q in queries.values() if q is not None) or (" " if queries else "")
    options: dict[str, Any] = {
        "as_of": as_of,
        "actor": actor,
        "auto_enrol": auto_enrol,
        "max_amount": max_amount,
        "chunk_size": chunk_size,
        "segment_sql": text,
    }
    parts = max(1, workers)
    if parts == 1 or "fork" not in multiprocessing.get_all_start_methods():
        final = _replay_part(programme, path, on_progress=on_progress, **options)
    else:
        if split is None or split.parts != parts:
            split = parallel.split(path, parts)
        final = _merge(_in_parallel(programme, path, split, on_progress, options))
    final.report.elapsed_seconds = time.perf_counter() - started
    return final


def _work(conn: Any, programme: Programme, path: Path, part: int, **kwargs: Any) -> None:
    """A forked part: replay, send the result (or the error) back."""
    progress = kwargs.pop("progress")

    def report(rows: int, done: int) -> None:
        progress[2 * part] = rows
        progress[2 * part + 1] = done

    try:
        result: Any = (
            "done",
            _replay_part(programme, path, part=part, on_progress=report, **kwargs),
        )
    except LealtaError as exc:
        result = ("error", (type(exc), exc.message, exc.code, exc.details))
    except BaseException as exc:  # reported to the parent, which raises
        result = ("crash", repr(exc))
    conn.send(result)
    conn.close()


def _in_parallel(
    programme: Programme,
    path: Path,
    split: parallel.Split,
    on_progress: ProgressCallback | None,
    options: dict[str, Any],
) -> list[Final]:
    parts, files = split.parts, split.files
    context = multiprocessing.get_context("fork")
    progress = context.Array("q", 2 * parts, lock=False)  # rows and bytes read, per part
    pipes = []
    processes = []
    for part in range(parts):
        mine, theirs = context.Pipe(duplex=False)
        # A part reads its own file of the split, else the whole file keeping its rows.
        source, which = (
            (path, {"routes": split.routes})
            if files is None
            else (files[part][0], {"lines": files[part][1]})
        )
        process = context.Process(
            target=_work,
            args=(theirs, programme, source, part),
            kwargs={**options, **which, "progress": progress},
            daemon=True,
        )
        process.start()
        theirs.close()
        pipes.append(mine)
        processes.append(process)
    results: dict[int, Any] = {}
    waiting: dict[Any, int] = {pipe: part for part, pipe in enumerate(pipes)}
    try:
        while waiting:
            # Woken by the first part that answers (or every 0.2 s to report progress).
            for pipe in multiprocessing.connection.wait(list(waiting), timeout=0.2):
                results[waiting.pop(pipe)] = cast(Any, pipe).recv()
            if on_progress is not None:
                done = progress[1::2]
                # Each part reads the whole file, or its own share of it.
                on_progress(sum(progress[0::2]), min(done) if files is None else sum(done))
    except EOFError:
        raise RuntimeError("a simulator worker process died") from None
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    finals: list[Final] = []
    for part in range(parts):
        kind, value = results[part]
        if kind == "error":
            cls, message, code, details = value
            raise cls(message, code=code, details=details)
        if kind == "crash":
            raise RuntimeError(f"a simulator worker failed: {value}")
        finals.append(value)
    return finals


def _merge(finals: list[Final]) -> Final:
    """One result from the parts': counts added, rejections in line order, members numbered
    in the order of the lines that enrolled them (as one process, and a database, number
    them: the segments' quintiles and deciles break ties by member id)."""
    report = imports.ImportReport()
    tally = Tally()
    merged = Final(report, tally, [])
    enrolments = sorted(
        (line, part, local)
        for part, final in enumerate(finals)
        for local, line in enumerate(final.enrolled_on, start=1)
    )
    numbers: list[dict[int, int]] = [{} for _ in finals]
    for member_id, (line, part, local) in enumerate(enrolments, start=1):
        numbers[part][local] = member_id
        merged.enrolled_on.append(line)
    for final, number in zip(finals, numbers, strict=True):
        r = final.report
        report.rows_read += r.rows_read
        report.imported += r.imported
        report.replayed += r.replayed
        report.rejected_count += r.rejected_count
        report.out_of_order += r.out_of_order
        report.rejected.extend(r.rejected)
        t = final.tally
        tally.enrolled.update(t.enrolled)
        tally.order_months.update(t.order_months)
        for label, flow in t.flows.items():
            mine = tally.flows.setdefault(label, [0, 0, 0, 0])
            for i, value in enumerate(flow):
                mine[i] += value
        tally.changes.extend((at, seq, number[m], tier) for at, seq, m, tier in t.changes)
        if t.first_order is not None and (
            tally.first_order is None or t.first_order < tally.first_order
        ):
            tally.first_order = t.first_order
        tally.net_minor += t.net_minor
        merged.accounts.extend(final.accounts)
        merged.coupons += final.coupons
        merged.coupon_face_minor += final.coupon_face_minor
        for table, columns in zip(merged.tables, final.tables, strict=True):
            for name, values in columns.items():
                if name in ("id", "member_id"):  # members' "id"; the others' have none
                    values = [number[v] for v in values]
                table.setdefault(name, []).extend(values)
    report.rejected.sort()
    del report.rejected[imports.MAX_REJECTED_KEPT :]
    return merged
