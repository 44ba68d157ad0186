"""The batch driver of the spine: many events, one engine, set-based I/O.

Used by the API's batch endpoint, the CSV import and the demo loader (and the coming
simulator and bulk operations). For one chunk of events, in one transaction:

1. check each event on its own (key, moment, attributes); a bad one is rejected alone;
2. enrol the chunk's new customers with one insert per table;
3. lock and load the complete states of the chunk's members in a handful of statements;
4. find the events already processed (replays) with one query;
5. apply the engine in event-time order, in memory, threading each member's state from one
   event to the next; an event the engine refuses is rejected and changes nothing;
6. write every outcome with one statement per table (COPY on PostgreSQL) and the event rows
   with their responses.

Given the same events, the result is the one the online driver gives event by event (a
differential test checks it); the import commits per chunk and is restartable: rows already
imported are replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import msgspec
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Table, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lealta.engine import core as engine
from lealta.engine.errors import OrderAlreadyRecorded
from lealta.engine.outcome import Outcome as EngineOutcome
from lealta.engine.state import OrderState
from lealta.events import store
from lealta.events.schemas import (
    ORDER_PAID,
    BatchItemResult,
    BatchResult,
    EventIn,
)
from lealta.events.service import (
    EventIdReused,
    IngestContext,
    crossing_handler,
    nonmember_context,
    to_engine,
    validation_error_body,
)
from lealta.kit.errors import Conflict, InvalidInput, LealtaError
from lealta.kit.idempotency import check_key, request_hash
from lealta.kit.money import from_minor
from lealta.kit.timestamps import check_moment
from lealta.members import attributes
from lealta.members import service as members
from lealta.members.newcomer import NewMember
from lealta.models import Event
from lealta.nonmembers import service as nonmembers

_events = cast(Table, Event.__table__)


@dataclass(slots=True)
class Item:
    """One event of a chunk: where it was (index or line), its key, and what became of it."""

    index: int
    event: EventIn
    key: str
    status: str = "pending"  # processed, replayed or rejected
    body: dict[str, Any] | None = None
    error: LealtaError | None = None
    digest: str = ""
    payload: dict[str, Any] | None = None

    def reject(self, error: LealtaError) -> None:
        self.status = "rejected"
        self.error = error


def process(
    session: Session, items: Sequence[Item], ctx: IngestContext, *, by_time: bool = True
) -> dict[int, Item]:
    """Process a chunk of events in the caller's transaction; each item gets its status.

    Events are applied in ``occurred_at`` order (``by_time``) or in the order given (a CSV
    history, which is chronological by contract). Returns the in-chunk duplicates (index ->
    the first item with that key or id)."""
    known = _Known([])
    _process(session, items, ctx, known, by_time=by_time)
    return known.duplicates


def _process(
    session: Session, items: Sequence[Item], ctx: IngestContext, known: _Known, *, by_time: bool
) -> None:
    live: list[Item] = []
    for item in items:
        try:
            item.key = check_key(item.key)
            check_moment(item.event.occurred_at, now=ctx.now)
            if item.event.customer is not None:
                attributes.check(ctx.programme, item.event.customer.attributes)
        except LealtaError as exc:
            item.reject(exc)
            continue
        item.payload = item.event.model_dump(mode="json", exclude_none=True)
        item.digest = request_hash(item.payload)
        live.append(item)
    if not live:
        return
    if by_time:
        live.sort(key=lambda it: (it.event.occurred_at, it.index))
    known.add(_replays(session, live))
    todo: list[Item] = []
    for item in live:
        if known.settle(item):
            continue
        todo.append(item)
    if not todo:
        return
    member_ids = members.member_ids(session, sorted({i.event.customer_id for i in todo}))
    if not ctx.auto_enrol:
        for item in todo:
            if item.event.customer_id in member_ids:
                continue
            if nonmembers.applies(item.event):
                _non_member(session, item, ctx)
            else:
                item.reject(_not_enrolled(item.event.customer_id))
        todo = [item for item in todo if item.status == "pending"]
    span: dict[int, tuple[datetime, datetime]] = {}
    for item in todo:
        m = member_ids.get(item.event.customer_id)
        if m is None:
            continue
        at = item.event.occurred_at
        first, last = span.get(m, (at, at))
        span[m] = (min(first, at), max(last, at))
    # The orders each customer's events name (their own new orders, the orders refunded):
    # looked up at once, and each state gets only its customer's (an order a state does not
    # name is never read by the engine, and a small map is cheap to copy on write).
    refs: dict[str, list[str]] = {}
    for item in todo:
        event = item.event
        ref = (
            event.order.id
            if event.order is not None
            else event.refund.order_id
            if event.refund is not None
            else None
        )
        if ref is not None:
            refs.setdefault(event.customer_id, []).append(ref)
    found_orders = store.orders(session, {ref for named in refs.values() for ref in named})
    named_orders = {ext: {ref: found_orders[ref] for ref in named} for ext, named in refs.items()}
    no_orders: dict[str, OrderState | None] = {}
    states = store.load_many(session, ctx.programme, span)
    by_member = {m: ext for ext, m in member_ids.items()}
    for m, state in states.items():
        named = named_orders.get(by_member[m])
        if named:
            states[m] = msgspec.structs.replace(state, orders=named)
    # A new customer is enrolled by its first event that the engine accepts, as the online
    # driver would: until then its state is built in memory under a provisional id.
    provisional: dict[str, int] = {}
    newcomers: dict[str, NewMember] = {}
    taken_orders: set[str] = set()
    done: list[tuple[Item, int, EngineOutcome]] = []
    for item in todo:
        event = item.event
        ext = event.customer_id
        m = member_ids.get(ext) or provisional.get(ext)
        newcomer: NewMember | None = None
        if m is None:
            newcomer = members.new_member(
                ext,
                event.customer,
                channel=event.order.channel if event.order and event.order.channel else "event",
                at=event.occurred_at,
                now=ctx.now,
            )
            state = store.new_state(
                -(len(provisional) + 1),
                newcomer,
                ctx.programme,
                orders=named_orders.get(ext, no_orders),
            )
        else:
            state = states[m]
        try:
            if event.type == ORDER_PAID and event.order and event.order.id in taken_orders:
                raise OrderAlreadyRecorded(
                    f"Order '{event.order.id}' was already recorded by another event.",
                    details={"order_id": event.order.id},
                )
            outcome = engine.apply(ctx.programme, state, to_engine(event, item.key), ctx.engine)
        except LealtaError as exc:
            item.reject(exc)
            continue
        if newcomer is not None:
            m = state.member_id
            provisional[ext] = m
            newcomers[ext] = newcomer
        assert m is not None
        states[m] = outcome.state
        if event.type == ORDER_PAID and event.order:
            taken_orders.add(event.order.id)
        item.status = "processed"
        done.append((item, m, outcome))
    if newcomers:
        ids, created = members.enrol_many(
            session,
            list(newcomers.values()),
            now=ctx.now,
            backfill=ctx.backfill,
            looked_up=True,
        )
        if len(created) != len(newcomers):  # enrolled meanwhile by a concurrent request
            raise Conflict(
                "Some of these customers were enrolled concurrently by another request; retry.",
                code="idempotency_retry",
            )
        real = {provisional[ext]: ids[ext] for ext in newcomers}
        done = [(item, real.get(m, m), outcome) for item, m, outcome in done]
    if not done:
        return
    written = store.write_all(
        session,
        [(m, outcome) for _, m, outcome in done],
        now=ctx.now,
        backfill=ctx.backfill,
        on_crossing=crossing_handler(session, ctx),
        bulk=True,
    )
    rows = []
    currency = ctx.programme.currency
    for item, m, outcome in done:
        body = _body(item, m, outcome, written, currency)
        item.body = body
        rows.append(
            {
                "idempotency_key": item.key,
                "external_id": item.event.id,
                "event_type": item.event.type,
                "member_id": m,
                "payload": item.payload,
                "occurred_at": item.event.occurred_at,
                "received_at": ctx.now,
                "request_hash": item.digest,
                "status_code": 201,
                "response": body,
            }
        )
    try:
        with session.begin_nested():
            store.insert_rows(session, _events, rows, bulk=True)
    except IntegrityError:
        # Another transaction recorded one of these events since we looked: nothing of this
        # chunk is written (the caller rolls back); sending it again replays what was done.
        raise Conflict(
            "Some of these events were processed concurrently by another request; retry.",
            code="idempotency_retry",
        ) from None


_datetime = TypeAdapter(datetime)


def _body(
    item: Item, member_id: int, outcome: EngineOutcome, written: store.Written, currency: str
) -> dict[str, Any]:
    """The stored response to a processed event: what ``result(...).model_dump(mode="json")``
    of :mod:`lealta.events.service` gives (the online driver's answer; the differential test
    compares both drivers' answers), built as plain data: validating and serialising the
    response models cost a tenth of the engine's work on a typical imported order."""
    event = item.event
    fig = outcome.state.figures
    external_id = outcome.state.profile.external_id
    by_id = {e.id: e for e in outcome.entries}
    return {
        "event_id": item.key,
        "type": event.type,
        "customer_id": external_id,
        "occurred_at": _datetime.dump_python(event.occurred_at, mode="json"),
        "postings": [
            {
                "entry_id": written.id(member_id, e.id),
                "entry_type": e.entry_type,
                "points": e.points,
                "rule_id": e.rule_id,
                "reason": e.reason,
                "shortfall": e.shortfall,
            }
            for e in (by_id[ref] for ref in outcome.postings)
        ],
        "points_delta": outcome.points_delta,
        # members.balance_of(external_id, fig, currency).model_dump(mode="json"):
        "balance": {
            "external_id": external_id,
            "available": fig.points_available,
            "pending": fig.points_pending,
            "lifetime_earned": fig.lifetime_earned,
            "lifetime_spent": fig.lifetime_spent,
            "expired": fig.points_expired,
            "shortfall": fig.points_shortfall,
            "qualifying_spend": str(from_minor(fig.qualifying_spend_minor, currency)),
            "currency": currency,
            "tier": fig.tier_id,
            "expiring_soon": 0,
            "next_expiry": None,
        },
        "thresholds_forfeited": outcome.thresholds_forfeited,
    }


class _Known:
    """Events already recorded (in the database or earlier in this chunk), by key and id."""

    def __init__(self, rows: list[Any]) -> None:
        self.by_key: dict[str, Any] = {}
        self.by_id: dict[str, Any] = {}
        self.first: dict[str, Item] = {}
        """The first item of this chunk with a key (``key``) or an event id (``id:<id>``)."""
        self.duplicates: dict[int, Item] = {}
        """Items sent twice in this chunk: index -> the first one, which answers for both."""
        self.add(rows)

    def add(self, rows: list[Any]) -> None:
        for row in rows:
            self.by_key[row.idempotency_key] = row
            if row.external_id is not None:
                self.by_id[row.external_id] = row

    def settle(self, item: Item) -> bool:
        """True when ``item`` is a replay or a reuse (settled now), False when it is new."""
        event_id = item.event.id
        row = self.by_key.get(item.key) or (self.by_id.get(event_id) if event_id else None)
        if row is not None:
            if row.request_hash == item.digest and row.response is not None:
                item.status, item.body = "replayed", row.response
            elif row.idempotency_key == item.key:
                item.reject(_key_reused(item.key))
            else:
                item.reject(_id_reused(event_id))
            return True
        earlier = self.first.get(item.key) or (
            self.first.get(f"id:{event_id}") if event_id else None
        )
        if earlier is not None:
            # The same event twice in one chunk: the second replays the first once it is done.
            if earlier.digest != item.digest:
                item.reject(
                    _key_reused(item.key) if earlier.key == item.key else _id_reused(event_id)
                )
                return True
            item.status = "duplicate"
            item.body = None
            item.error = None
            self.duplicates[item.index] = earlier
            return True
        self.first[item.key] = item
        if event_id:
            self.first[f"id:{event_id}"] = item
        return False


def _key_reused(key: str) -> Conflict:
    return Conflict(
        "This idempotency key was already used with a different request.",
        code="idempotency_key_reused",
        details={"key": key},
    )


def _id_reused(event_id: str | None) -> EventIdReused:
    return EventIdReused(
        f"Event '{event_id}' was already processed with a different body.",
        details={"event_id": event_id},
    )


def _replays(session: Session, items: list[Item]) -> list[Any]:
    keys = sorted({item.key for item in items})
    ids = sorted({item.event.id for item in items if item.event.id})
    rows: list[Any] = []
    most = max(len(keys), len(ids))
    step = max(1, most) if session.get_bind().dialect.name == "postgresql" else 500
    for start in range(0, most, step):
        clauses = []
        if keys[start : start + step]:
            clauses.append(
                store.one_of(session, _events.c.idempotency_key, keys[start : start + step])
            )
        if ids[start : start + step]:
            clauses.append(store.one_of(session, _events.c.external_id, ids[start : start + step]))
        rows.extend(
            session.execute(
                select(
                    _events.c.idempotency_key,
                    _events.c.external_id,
                    _events.c.request_hash,
                    _events.c.status_code,
                    _events.c.response,
                ).where(or_(*clauses))
            ).all()
        )
    return rows


def _non_member(session: Session, item: Item, ctx: IngestContext) -> None:
    """Keep the order or refund of a customer who is not a member (no points)."""
    try:
        with session.begin_nested():
            outcome = nonmembers.record(
                session, item.event, nonmember_context(ctx), key=item.key, digest=item.digest
            )
    except LealtaError as exc:
        item.reject(exc)
        return
    item.status = "replayed" if outcome.replayed else "processed"
    item.body = outcome.body


def _not_enrolled(external_id: str) -> LealtaError:
    return members.MemberNotFound(
        f"No member with external id '{external_id}' (implicit enrolment is off).",
        details={"external_id": external_id},
    )


# --- the API's batch ---------------------------------------------------------------------------


def ingest_raw(
    session: Session, raw_events: list[dict[str, Any]], ctx: IngestContext
) -> BatchResult:
    """Validate and process the API batch; results in the order sent."""
    results: dict[int, BatchItemResult] = {}
    items: list[Item] = []
    for index, raw in enumerate(raw_events):
        try:
            event = EventIn.model_validate(raw)
        except ValidationError as exc:
            results[index] = BatchItemResult(
                index=index, status="rejected", error=validation_error_body(exc)["error"]
            )
            continue
        if event.id is None:
            missing = InvalidInput(
                "Events in a batch need an 'id' (their idempotency key).",
                code="missing_idempotency_key",
            )
            results[index] = BatchItemResult(
                index=index, status="rejected", error=missing.to_dict()["error"]
            )
            continue
        items.append(Item(index=index, event=event, key=event.id))
    known = run_items(session, items, ctx)
    for item in items:
        results[item.index] = item_result(item, known)
    ordered = [results[i] for i in range(len(raw_events))]
    return BatchResult(
        processed=sum(r.status == "processed" for r in ordered),
        replayed=sum(r.status == "replayed" for r in ordered),
        rejected=sum(r.status == "rejected" for r in ordered),
        results=ordered,
    )


def run_items(
    session: Session, items: Sequence[Item], ctx: IngestContext, *, by_time: bool = True
) -> dict[int, Item]:
    """:func:`process`, then settle in-chunk duplicates; returns them (index -> first)."""
    duplicates = process(session, items, ctx, by_time=by_time)
    for item in items:
        if item.status == "duplicate":
            first = duplicates[item.index]
            if first.status == "processed":
                item.status, item.body = "replayed", first.body
            else:
                item.status, item.error = first.status, first.error
                item.body = first.body
    return duplicates


def item_result(item: Item, known: dict[int, Item]) -> BatchItemResult:
    if item.status == "rejected":
        assert item.error is not None
        return BatchItemResult(
            index=item.index, status="rejected", error=item.error.to_dict()["error"]
        )
    return BatchItemResult(index=item.index, status=item.status, result=item.body)


__all__ = ["Item", "ingest_raw", "process", "run_items"]
