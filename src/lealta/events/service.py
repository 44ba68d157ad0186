"""The online driver of the spine: one event in, one transaction, the engine's outcome out.

``ingest`` locks the member's account and reads the lots due by the event's moment in one
statement (enrolling the customer first if needed), claims the event row (its own
idempotency record: the transport key and the event's natural ``id`` are both unique on it),
asks the pure engine (:mod:`lealta.engine.core`) what the event does, and writes the outcome
with one statement per table (:mod:`lealta.events.store`). When the engine needs more of the
member's state than was loaded (all lots for a refund, rule counters, tier history) the
driver loads that part and applies again.

The batch driver (:mod:`lealta.events.batch`) applies the same engine to many events at once;
the API's batch endpoint, the CSV import and the demo loader use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session

from lealta.coupons import service as coupons
from lealta.engine import core as engine
from lealta.engine.errors import (
    OrderAlreadyRecorded,
    OrderNotFound,
    RefundBeforeOrder,
    RefundExceedsOrder,
)
from lealta.engine.outcome import Crossing
from lealta.engine.outcome import Outcome as EngineOutcome
from lealta.engine.state import MemberState, StateIncomplete
from lealta.events import store
from lealta.events.schemas import (
    ORDER_PAID,
    ORDER_REFUNDED,
    EventIn,
    EventResult,
    PostingOut,
)
from lealta.kit.errors import Conflict, validation_body
from lealta.kit.idempotency import Outcome, check_key, request_hash
from lealta.kit.money import DEFAULT_MAX_AMOUNT
from lealta.kit.timestamps import check_moment
from lealta.members import attributes
from lealta.members import service as members
from lealta.models import Event
from lealta.nonmembers import service as nonmembers
from lealta.outbox.events import DomainEvent, ThresholdReached
from lealta.programme import service as programmes
from lealta.programme.schema import CouponSpec, Programme

__all__ = [
    "EventIdReused",
    "IngestContext",
    "OrderAlreadyRecorded",
    "OrderNotFound",
    "RefundBeforeOrder",
    "RefundExceedsOrder",
    "ingest",
]

_events = cast(Table, Event.__table__)


@dataclass(frozen=True, slots=True)
class IngestContext:
    programme: Programme
    now: datetime
    actor: str
    auto_enrol: bool = True
    max_amount: Decimal = DEFAULT_MAX_AMOUNT
    """Largest order total, item price or refund, in major units (``LEALTA_MAX_ORDER_AMOUNT``)."""
    backfill: bool = False
    """History replayed from outside (CSV import, demo load): its domain events are marked so
    that subscribers can skip what must not fire. Live traffic (API, till) is ``False``."""
    programme_in_force: bool = False
    """Use the programme in force at ``now``, read by the statement that locks the member (the
    online endpoints: no round trip of its own); ``programme`` is then only a first guess."""

    @property
    def engine(self) -> engine.Context:
        return engine.Context(actor=self.actor, max_amount=self.max_amount)


class EventIdReused(Conflict):
    code = "event_id_reused"


def ingest(session: Session, event: EventIn, ctx: IngestContext, *, key: str | None) -> Outcome:
    """Process one event exactly once; a replay returns the first response unchanged.

    Two keys guard an event: the transport key (the ``Idempotency-Key`` header, else the
    event id) and the event's own ``id``, its natural key. One event id is processed once,
    whatever header comes with it: the same event sent again with a fresh header replays the
    first response; the same id with a different body is a ``409 event_id_reused``. A refused
    event raises, and the caller's transaction rolls back whatever it had begun.
    """
    key = check_key(key if key is not None else event.id)
    check_moment(event.occurred_at, now=ctx.now)
    payload = event.model_dump(mode="json", exclude_none=True)
    digest = request_hash(payload)
    at = event.occurred_at
    claim = {
        "idempotency_key": key,
        "external_id": event.id,
        "event_type": event.type,
        "payload": payload,
        "occurred_at": at,
        "received_at": ctx.now,
        "request_hash": digest,
    }
    # One statement: the member's account locked, the lots due by the event, the event row
    # claimed (its key and id are unique), and ids reserved for what it will create.
    programme_at = ctx.now if ctx.programme_in_force else None
    loaded = store.lock_and_load(
        session,
        event.customer_id,
        at,
        claim=claim,
        reserve=store.TYPICAL_EVENT,
        programme_at=programme_at,
    )
    if programme_at is not None:
        ctx = dataclasses.replace(
            ctx, programme=programmes.by_digest(session, loaded.digest), programme_in_force=False
        )
    if event.customer is not None:
        attributes.check(ctx.programme, event.customer.attributes)
    if loaded.state is None and not ctx.auto_enrol and nonmembers.applies(event):
        # A customer who is not a member: their order is kept for the dashboard, no points.
        return nonmembers.record(session, event, nonmember_context(ctx), key=key, digest=digest)
    if loaded.state is None:
        members.get_or_enrol(
            session,
            event.customer_id,
            profile=event.customer,
            channel=(event.order.channel if event.order and event.order.channel else "event"),
            at=at,
            now=ctx.now,
            auto_enrol=ctx.auto_enrol,
            backfill=ctx.backfill,
        )
        session.flush()
        loaded = store.lock_and_load(
            session, event.customer_id, at, claim=claim, reserve=store.TYPICAL_EVENT
        )
    state = loaded.state
    assert state is not None
    if loaded.claimed is None:
        return replay(session, key, event.id, digest)
    order_ids: list[str] = []
    if event.type == ORDER_REFUNDED:
        # A refund takes points back from lots: load them all, and the order, at once.
        assert event.refund is not None
        order_ids = [event.refund.order_id]
        state = store.load_part(session, ctx.programme, state, StateIncomplete("lots"), at=at)
        state = store.load_part(
            session, ctx.programme, state, StateIncomplete("orders"), at=at, order_ids=order_ids
        )
    outcome = apply_loading(session, ctx, state, to_engine(event, key), order_ids=order_ids)
    outcomes = [(state.member_id, outcome)]
    written = store.assign_ids(session, outcomes, loaded.reserved)
    body = result(event, key, state.profile.external_id, outcome, written, ctx).model_dump(
        mode="json"
    )
    store.write(
        session,
        outcomes,
        written,
        now=ctx.now,
        backfill=ctx.backfill,
        on_crossing=crossing_handler(session, ctx),
        updates=[
            store.Rows(
                _events, [{"_id": loaded.claimed, "status_code": 201, "response": body}], key="id"
            )
        ],
    )
    return Outcome(201, body, replayed=False)


def nonmember_context(ctx: IngestContext) -> nonmembers.Context:
    return nonmembers.Context(
        currency=ctx.programme.currency, max_amount=ctx.max_amount, now=ctx.now
    )


def apply_loading(
    session: Session,
    ctx: IngestContext,
    state: MemberState,
    event: engine.EngineEvent,
    *,
    order_ids: list[str],
) -> EngineOutcome:
    """Apply the engine to ``event``, loading each part of the state it asks for."""
    return run_loading(
        session,
        ctx.programme,
        state,
        lambda s: engine.apply(ctx.programme, s, event, ctx.engine),
        at=event.occurred_at,
        order_ids=order_ids,
    )


def run_loading(
    session: Session,
    programme: Programme,
    state: MemberState,
    step: Callable[[MemberState], EngineOutcome],
    *,
    at: datetime,
    order_ids: list[str] | None = None,
) -> EngineOutcome:
    """Run an engine ``step`` on ``state``; when it asks for a part of the state that was not
    loaded, load it and run again (the engine is pure: a run that stopped changed nothing)."""
    for _ in range(8):
        try:
            return step(state)
        except StateIncomplete as missing:
            state = store.load_part(
                session, programme, state, missing, at=at, order_ids=order_ids or []
            )
    raise RuntimeError("the engine kept asking for more state")  # pragma: no cover


def replay(session: Session, key: str, event_id: str | None, digest: str) -> Outcome:
    """The stored response of the event that holds this key or id, if the request is the same;
    else ``409 idempotency_key_reused`` (same header) or ``409 event_id_reused`` (same id)."""
    clauses = [_events.c.idempotency_key == key]
    if event_id is not None:
        clauses.append(_events.c.external_id == event_id)
    rows = session.execute(
        select(
            _events.c.idempotency_key,
            _events.c.request_hash,
            _events.c.status_code,
            _events.c.response,
        ).where(or_(*clauses))
    ).all()
    if not rows:  # pragma: no cover - only if the other transaction rolled back meanwhile
        raise Conflict(
            "A concurrent request with the same event id failed; retry.",
            code="idempotency_retry",
        )
    for row in rows:
        if row.request_hash == digest and row.response is not None:
            return Outcome(row.status_code or 201, row.response, replayed=True)
    if any(row.idempotency_key == key for row in rows):
        raise Conflict(
            "This idempotency key was already used with a different request.",
            code="idempotency_key_reused",
            details={"key": key},
        )
    raise EventIdReused(
        f"Event '{event_id}' was already processed with a different body.",
        details={"event_id": event_id},
    )


def to_engine(event: EventIn, key: str) -> engine.EngineEvent:
    """The engine's view of a validated event."""
    if event.type == ORDER_PAID:
        assert event.order is not None
        o = event.order
        return engine.PaidOrder(
            key=key,
            occurred_at=event.occurred_at,
            order_id=o.id,
            total=o.total,
            currency=o.currency,
            lines=tuple([engine.Line(i.sku, i.category, i.quantity, i.unit_price) for i in o.items])
            if o.items
            else (),
            channel=o.channel,
            store=o.store,
            properties=event.properties,
        )
    if event.type == ORDER_REFUNDED:
        assert event.refund is not None
        r = event.refund
        return engine.Refund(
            key=key,
            occurred_at=event.occurred_at,
            order_id=r.order_id,
            amount=r.amount,
            currency=r.currency,
            properties=event.properties,
        )
    return engine.Custom(
        key=key, type=event.type, occurred_at=event.occurred_at, properties=event.properties
    )


def crossing_handler(session: Session, ctx: IngestContext) -> store.CrossingHandler:
    """Issue thresholds' rewards (unique coupons, free of points) and say so in the outbox.

    A coupon is valid from the order's moment for the reward's ``valid_days``, so a replayed
    history issues the windows it would have issued live. A reward without coupon terms (a
    product, say) is only announced; fulfilment follows from the outbox message.
    """

    def handle(crossings: Sequence[tuple[int, Crossing]]) -> list[DomainEvent]:
        wanted: list[coupons.Issue] = []
        with_coupon: list[bool] = []
        for member_id, crossing in crossings:
            reward = ctx.programme.reward(crossing.reward_id)
            gives = reward is not None and (
                reward.coupon is not None or reward.type == "free_shipping"
            )
            with_coupon.append(gives)
            if reward is not None and gives:
                wanted.append(
                    coupons.Issue(
                        reward.coupon or CouponSpec(free_shipping=True),
                        reward_id=crossing.reward_id,
                        member_id=member_id,
                        source="threshold",
                        currency=ctx.programme.currency,
                        valid_from=crossing.at,
                    )
                )
        codes = iter(coupons.issue_many(session, wanted, now=ctx.now, backfill=ctx.backfill))
        return [
            ThresholdReached(
                rule_id=crossing.rule_id,
                reward_id=crossing.reward_id,
                crossed=crossing.crossed,
                order_id=crossing.order_id,
                at=crossing.at,
                coupon_code=next(codes) if gives else None,
            )
            for (_, crossing), gives in zip(crossings, with_coupon, strict=True)
        ]

    return handle


def no_crossings(crossings: Sequence[tuple[int, Crossing]]) -> list[DomainEvent]:
    """For engine steps that cannot cross a spend threshold (catch-up, tier refresh)."""
    raise AssertionError(f"unexpected threshold crossings: {crossings}")


def result(
    event: EventIn,
    key: str,
    external_id: str,
    outcome: EngineOutcome,
    written: store.Written,
    ctx: IngestContext,
    *,
    member_id: int | None = None,
) -> EventResult:
    """The response to an event; ``member_id`` when the member was enrolled after the engine
    ran (the batch driver), else the state's."""
    if member_id is None:
        member_id = outcome.state.member_id
    by_id = {e.id: e for e in outcome.entries}
    postings = [by_id[ref] for ref in outcome.postings]
    return EventResult(
        event_id=key,
        type=event.type,
        customer_id=external_id,
        occurred_at=event.occurred_at,
        postings=[
            PostingOut(
                entry_id=written.id(member_id, e.id),
                entry_type=e.entry_type,
                points=e.points,
                rule_id=e.rule_id,
                reason=e.reason,
                shortfall=e.shortfall,
            )
            for e in postings
        ],
        points_delta=outcome.points_delta,
        thresholds_forfeited=outcome.thresholds_forfeited,
        balance=members.balance_of(
            external_id, outcome.state.figures, ctx.programme.currency
        ).model_dump(mode="json"),
    )


def validation_error_body(exc: ValidationError) -> dict[str, Any]:
    return validation_body(
        [
            {"loc": list(err["loc"]), "message": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    )
