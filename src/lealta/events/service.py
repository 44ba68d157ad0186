"""The spine: one event in, one transaction, postings out.

``ingest`` claims the idempotency key, finds or enrols the member, locks the account, asks
the rules engine what the event earns (a pure function), writes the ledger, records the event
and a domain message in the outbox, and stores the response for replays. The CSV importer
and the demo loader call the same function, in event-time order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, func, insert, select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from lealta.events.schemas import (
    ORDER_PAID,
    ORDER_REFUNDED,
    BatchItemResult,
    BatchResult,
    EventIn,
    EventResult,
    PostingOut,
)
from lealta.kit.db import insert_ignore
from lealta.kit.errors import Conflict, InvalidInput, LealtaError, NotFound, validation_body
from lealta.kit.idempotency import Outcome, check_key, request_hash, run_once
from lealta.kit.money import (
    DEFAULT_MAX_AMOUNT,
    check_max_amount,
    exponent,
    normalise_currency,
    to_minor,
)
from lealta.kit.timestamps import check_moment
from lealta.ledger import lifecycle
from lealta.ledger import service as ledger
from lealta.ledger.maths import reversal_points
from lealta.members import attributes
from lealta.members import service as members
from lealta.models import (
    Account,
    Event,
    IdempotencyRecord,
    LedgerEntry,
    Member,
    Order,
    OrderItem,
)
from lealta.outbox import events as domain
from lealta.outbox.service import emit
from lealta.programme.schema import Programme
from lealta.rewards.thresholds import threshold_reached
from lealta.rules.engine import (
    EventFacts,
    Item,
    MemberSnapshot,
    Posting,
    RuleUsage,
    compiled_for,
    evaluate,
)
from lealta.tiers import service as tiers

SCOPE = "event"


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


class OrderAlreadyRecorded(Conflict):
    code = "order_already_recorded"


class OrderNotFound(NotFound):
    code = "order_not_found"


class RefundExceedsOrder(Conflict):
    code = "refund_exceeds_order"


class RefundBeforeOrder(Conflict):
    code = "refund_before_order"


class EventIdReused(Conflict):
    code = "event_id_reused"


def ingest(session: Session, event: EventIn, ctx: IngestContext, *, key: str | None) -> Outcome:
    """Process one event exactly once; a replay returns the first response unchanged.

    Two keys guard an event: the transport key (the ``Idempotency-Key`` header, else the
    event id) and the event's own ``id``, its natural key. One event id is processed once,
    whatever header comes with it: the same event sent again with a fresh header replays the
    first response; the same id with a different body is a ``409 event_id_reused``.
    """
    key = check_key(key if key is not None else event.id)
    check_moment(event.occurred_at, now=ctx.now)
    # The event id is part of the request: one header key sent with two different events
    # is a reused key (409), not a replay.
    payload = event.model_dump(mode="json", exclude_none=True)
    if event.id is not None:
        earlier = _earlier_with_id(session, event.id, payload, key)
        if earlier is not None:
            return earlier
    try:
        with session.begin_nested():
            return run_once(
                session,
                scope=SCOPE,
                key=key,
                payload=payload,
                now=ctx.now,
                effect=lambda: (201, _process(session, event, ctx, key).model_dump(mode="json")),
            )
    except _EventIdTaken:
        # A concurrent request with the same event id (and another header) committed first.
        assert event.id is not None
        earlier = _earlier_with_id(session, event.id, payload, key)
        if earlier is not None:
            return earlier
        raise Conflict(  # pragma: no cover - only if the other event vanished meanwhile
            "A concurrent request with the same event id failed; retry.",
            code="idempotency_retry",
        ) from None


class _EventIdTaken(Exception):
    """Raised inside the savepoint when the event id was recorded by another request."""


def _earlier_with_id(
    session: Session, event_id: str, payload: dict[str, Any], key: str
) -> Outcome | None:
    """The first response for an event id already processed (a replay), a 409 if that event
    had another body, or None when the id is new."""
    earlier = session.execute(
        select(Event.idempotency_key).where(Event.external_id == event_id)
    ).one_or_none()
    if earlier is None:
        return None
    record = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == SCOPE, IdempotencyRecord.key == earlier.idempotency_key
        )
    ).one_or_none()
    if record is None or record.request_hash != request_hash(payload):
        if earlier.idempotency_key == key:
            raise Conflict(
                "This idempotency key was already used with a different request.",
                code="idempotency_key_reused",
                details={"key": key},
            )
        raise EventIdReused(
            f"Event '{event_id}' was already processed with a different body.",
            details={"event_id": event_id},
        )
    return Outcome(record.status_code, record.response, replayed=True)


def ingest_batch(
    session: Session, raw_events: list[dict[str, Any]], ctx: IngestContext
) -> BatchResult:
    """Each event in its own savepoint, in ``occurred_at`` order.

    One bad event rejects only itself; the others are processed.
    """
    parsed: list[tuple[int, EventIn | None, dict[str, Any] | None]] = []
    for index, raw in enumerate(raw_events):
        try:
            parsed.append((index, EventIn.model_validate(raw), None))
        except ValidationError as exc:
            parsed.append((index, None, validation_error_body(exc)))
    results: dict[int, BatchItemResult] = {}
    valid = sorted(
        (item for item in parsed if item[1] is not None),
        key=lambda item: (item[1].occurred_at, item[0]),  # type: ignore[union-attr]
    )
    for index, _, error in parsed:
        if error is not None:
            results[index] = BatchItemResult(index=index, status="rejected", error=error["error"])
    for index, event, _ in valid:
        assert event is not None
        try:
            with session.begin_nested():
                if event.id is None:
                    raise InvalidInput(
                        "Events in a batch need an 'id' (their idempotency key).",
                        code="missing_idempotency_key",
                    )
                outcome = ingest(session, event, ctx, key=event.id)
        except LealtaError as exc:
            results[index] = BatchItemResult(
                index=index, status="rejected", error=exc.to_dict()["error"]
            )
            continue
        except DataError:  # a value the database cannot store: this event only, not the batch
            unstorable = InvalidInput(
                "A value in this event cannot be stored.", code="invalid_value"
            )
            results[index] = BatchItemResult(
                index=index, status="rejected", error=unstorable.to_dict()["error"]
            )
            continue
        results[index] = BatchItemResult(
            index=index, status="replayed" if outcome.replayed else "processed", result=outcome.body
        )
    ordered = [results[i] for i in range(len(raw_events))]
    return BatchResult(
        processed=sum(r.status == "processed" for r in ordered),
        replayed=sum(r.status == "replayed" for r in ordered),
        rejected=sum(r.status == "rejected" for r in ordered),
        results=ordered,
    )


def validation_error_body(exc: ValidationError) -> dict[str, Any]:
    return validation_body(
        [
            {"loc": list(err["loc"]), "message": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    )


def _process(session: Session, event: EventIn, ctx: IngestContext, key: str) -> EventResult:
    if event.customer is not None:
        attributes.check(ctx.programme, event.customer.attributes)
    member = members.get_or_enrol(
        session,
        event.customer_id,
        profile=event.customer,
        channel=(event.order.channel if event.order and event.order.channel else "event"),
        at=event.occurred_at,
        now=ctx.now,
        auto_enrol=ctx.auto_enrol,
    )
    # The event id is claimed first: a concurrent request with the same id waits here for
    # the other transaction and, if that one committed, gives way (see ``ingest``).
    recorded = insert_ignore(
        session,
        Event,
        {
            "idempotency_key": key,
            "external_id": event.id,
            "event_type": event.type,
            "member_id": member.id,
            "payload": event.model_dump(mode="json", exclude_none=True),
            "occurred_at": event.occurred_at,
            "received_at": ctx.now,
        },
        conflict=["external_id"],
    )
    if recorded is None:
        raise _EventIdTaken(event.id)
    account = ledger.lock_account(session, member.id)
    # Bring the account to the event's moment first: releases, expiries and tier reviews due
    # by then happen before the event, exactly as they would have live.
    lifecycle.catch_up(session, account, at=event.occurred_at, now=ctx.now, backfill=ctx.backfill)
    tiers.review(
        session, ctx.programme, account, at=event.occurred_at, now=ctx.now, backfill=ctx.backfill
    )
    forfeited = 0
    if event.type == ORDER_PAID:
        entries = _order_paid(session, event, ctx, member, account, key)
        assert event.order is not None
        forfeited = _spend_thresholds(
            session,
            ctx,
            member,
            account,
            at=event.occurred_at,
            order_id=event.order.id,
            event_id=key,
        )
    elif event.type == ORDER_REFUNDED:
        entries = _order_refunded(session, event, ctx, member, account, key)
    else:
        entries = _custom(session, event, ctx, member, account, key)
    delta = sum(e.points for e in entries)
    processed: domain.DomainEvent
    if event.type == ORDER_PAID:
        processed = domain.OrderPaid(key, member.external_id, delta)
    elif event.type == ORDER_REFUNDED:
        processed = domain.OrderRefunded(key, member.external_id, delta)
    else:
        processed = domain.EventProcessed(event.type, key, member.external_id, delta)
    emit(session, processed, member_id=member.id, now=ctx.now, backfill=ctx.backfill)
    session.flush()
    return EventResult(
        event_id=key,
        type=event.type,
        customer_id=member.external_id,
        occurred_at=event.occurred_at,
        postings=[
            PostingOut(
                entry_id=e.id,
                entry_type=e.entry_type,
                points=e.points,
                rule_id=e.rule_id,
                reason=e.reason,
                shortfall=e.shortfall,
            )
            for e in entries
        ],
        points_delta=delta,
        thresholds_forfeited=forfeited,
        balance=members.balance_of(member.external_id, account, ctx.programme.currency).model_dump(
            mode="json"
        ),
    )


def _snapshot(
    session: Session, ctx: IngestContext, member: Member, account: Account, event: EventIn
) -> MemberSnapshot:
    """What the rules may know of the member at the event: tier held, tags, attributes, and
    how much each capped rule for this event type already gave."""
    compiled = compiled_for(ctx.programme)
    capped = [r.rule for r in compiled.rules_for(event.type) if r.rule.caps is not None]
    return MemberSnapshot(
        member_id=member.id,
        external_id=member.external_id,
        tier=account.tier_id,
        attributes=dict(member.attributes or {}),
        tags=tuple(member.tags or ()),
        qualifying_spend_minor=account.qualifying_spend_minor,
        orders_count=account.orders_count,
        timezone=member.timezone,
        language=member.language,
        usage={r.id: _usage(session, member.id, r.id, event.occurred_at) for r in capped},
    )


def _usage(session: Session, member_id: int, rule_id: str, at: datetime) -> RuleUsage:
    """Points and uses of one rule for this member: the event's UTC day and month, and ever."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    in_day = (LedgerEntry.occurred_at >= day) & (LedgerEntry.occurred_at < day + timedelta(days=1))
    in_month = (LedgerEntry.occurred_at >= month) & (LedgerEntry.occurred_at <= at)
    # Aggregated in the database: a member's history of one rule can be long.
    row = session.execute(
        select(
            func.coalesce(func.sum(case((in_day, LedgerEntry.points), else_=0)), 0),
            func.coalesce(func.sum(case((in_month, LedgerEntry.points), else_=0)), 0),
            func.coalesce(func.sum(LedgerEntry.points), 0),
            func.count(case((in_day, LedgerEntry.id))),
            func.count(LedgerEntry.id),
        ).where(
            LedgerEntry.member_id == member_id,
            LedgerEntry.rule_id == rule_id,
            LedgerEntry.entry_type == "earn",
        )
    ).one()
    return RuleUsage(
        points_day=int(row[0]),
        points_month=int(row[1]),
        points_lifetime=int(row[2]),
        times_day=int(row[3]),
        times_lifetime=int(row[4]),
    )


def _credit_postings(
    session: Session,
    ctx: IngestContext,
    account: Account,
    postings: list[Posting],
    *,
    source: ledger.Source,
    occurred_at: datetime,
    key: str,
    pending: bool,
) -> list[LedgerEntry]:
    programme = ctx.programme
    return [
        ledger.credit(
            session,
            account,
            entry_type="earn",
            points=p.points,
            reason=p.reason,
            source=source,
            occurred_at=occurred_at,
            now=ctx.now,
            rule_id=p.rule_id,
            expires_at=lifecycle.expiry_for(programme, occurred_at),
            pending_until=lifecycle.pending_until(programme, occurred_at) if pending else None,
            details={"event_id": key},
        )
        for p in postings
    ]


def _check_currency(programme: Programme, currency: str) -> str:
    code = normalise_currency(currency)
    if code != programme.currency:
        raise InvalidInput(
            f"The programme runs in {programme.currency}; this amount is in {code}.",
            code="currency_mismatch",
            details={"expected": programme.currency, "got": code},
        )
    return code


def _amount(ctx: IngestContext, amount: Decimal, currency: str, field: str) -> int:
    """``amount`` in minor units, within ``ctx.max_amount`` (else ``amount_too_large``)."""
    return check_max_amount(
        to_minor(amount, currency, field=field), currency, ctx.max_amount, field=field
    )


def _order_paid(
    session: Session, event: EventIn, ctx: IngestContext, member: Member, account: Account, key: str
) -> list[LedgerEntry]:
    assert event.order is not None
    order_in = event.order
    currency = _check_currency(ctx.programme, order_in.currency)
    total_minor = _amount(ctx, order_in.total, currency, "order.total")
    items = [
        Item(
            i.sku,
            i.category,
            i.quantity,
            _amount(ctx, i.unit_price, currency, f"order.items.{n}.unit_price"),
        )
        for n, i in enumerate(order_in.items)
    ]
    facts = EventFacts(
        event_type=event.type,
        occurred_at=event.occurred_at,
        properties=event.properties,
        event_id=key,
        order_id=order_in.id,
        order_total_minor=total_minor,
        currency=currency,
        channel=order_in.channel,
        store=order_in.store,
        items=tuple(items),
    )
    postings = evaluate(ctx.programme, _snapshot(session, ctx, member, account, event), facts)
    order_id = insert_ignore(
        session,
        Order,
        {
            "member_id": member.id,
            "external_id": order_in.id,
            "total_minor": total_minor,
            "refunded_minor": 0,
            "currency": currency,
            "channel": order_in.channel,
            "store": order_in.store,
            "status": "paid",
            "points_earned": sum(p.points for p in postings),
            "points_reversed": 0,
            "occurred_at": event.occurred_at,
            "recorded_at": ctx.now,
        },
        conflict=["external_id"],
    )
    if order_id is None:
        raise OrderAlreadyRecorded(
            f"Order '{order_in.id}' was already recorded by another event.",
            details={"order_id": order_in.id},
        )
    if items:
        session.execute(
            insert(OrderItem),
            [
                {
                    "order_id": order_id,
                    "sku": i.sku,
                    "category": i.category,
                    "quantity": i.quantity,
                    "unit_price_minor": i.unit_price_minor,
                }
                for i in items
            ],
        )
    source = ledger.Source("order", order_in.id, ctx.actor, order_id)
    entries = _credit_postings(
        session,
        ctx,
        account,
        postings,
        source=source,
        occurred_at=event.occurred_at,
        key=key,
        pending=True,
    )
    # The order earned at the tier held when it occurred; now its spend counts.
    account.qualifying_spend_minor += total_minor
    account.orders_count += 1
    if account.last_order_at is None or event.occurred_at > account.last_order_at:
        account.last_order_at = event.occurred_at
    upgrade = tiers.upgrade_if_qualified(
        session, ctx.programme, account, at=event.occurred_at, now=ctx.now, backfill=ctx.backfill
    )
    if upgrade is not None:
        entries.extend(upgrade.entries)
    return entries


def _spend_thresholds(
    session: Session,
    ctx: IngestContext,
    member: Member,
    account: Account,
    *,
    at: datetime,
    order_id: str,
    event_id: str,
) -> int:
    """Seed 003: each multiple of ``every`` crossed by net spend issues the rule's reward once.

    A high-water mark of net spend makes a refunded and re-bought 500 € count once, not twice.
    One event issues at most the rule's ``max_per_event`` rewards (the lowest crossings); the
    rest are forfeited, the high-water mark moves past them all, and a ``threshold.forfeited``
    outbox message records them. Returns how many crossings were forfeited.
    """
    before = account.spend_high_water_minor
    after = max(before, account.qualifying_spend_minor)
    account.spend_high_water_minor = after
    if after == before:
        return 0
    exp = exponent(ctx.programme.currency)
    forfeited_total = 0
    for rule in ctx.programme.thresholds:
        if not rule.active:
            continue
        step = int(rule.every.scaleb(exp))
        first, last = before // step + 1, after // step
        issued_to = min(last, first + rule.max_per_event - 1)
        for multiple in range(first, issued_to + 1):
            threshold_reached(
                session,
                ctx.programme,
                member,
                rule_id=rule.id,
                reward_id=rule.reward,
                crossed=Decimal(multiple * step).scaleb(-exp),
                at=at,
                now=ctx.now,
                order_id=order_id,
                backfill=ctx.backfill,
            )
        forfeited = max(0, last - issued_to)
        if forfeited:
            forfeited_total += forfeited
            emit(
                session,
                domain.ThresholdForfeited(
                    rule_id=rule.id,
                    reward_id=rule.reward,
                    order_id=order_id,
                    event_id=event_id,
                    issued=issued_to - first + 1,
                    forfeited=forfeited,
                    max_per_event=rule.max_per_event,
                    at=at,
                ),
                member_id=member.id,
                now=ctx.now,
                backfill=ctx.backfill,
            )
    return forfeited_total


def _order_refunded(
    session: Session, event: EventIn, ctx: IngestContext, member: Member, account: Account, key: str
) -> list[LedgerEntry]:
    assert event.refund is not None
    refund = event.refund
    order = session.scalars(select(Order).where(Order.external_id == refund.order_id)).one_or_none()
    if order is None or order.member_id != member.id:
        raise OrderNotFound(
            f"No order '{refund.order_id}' for customer '{member.external_id}'.",
            details={"order_id": refund.order_id},
        )
    if event.occurred_at < order.occurred_at:
        raise RefundBeforeOrder(
            f"The refund is dated before order '{order.external_id}' was paid.",
            details={
                "order_id": order.external_id,
                "order_occurred_at": order.occurred_at.isoformat(),
                "occurred_at": event.occurred_at.isoformat(),
            },
        )
    if refund.currency is not None and normalise_currency(refund.currency) != order.currency:
        raise InvalidInput(
            f"Order '{order.external_id}' was paid in {order.currency}.",
            code="currency_mismatch",
            details={"expected": order.currency, "got": refund.currency},
        )
    left = order.total_minor - order.refunded_minor
    amount = (
        left
        if refund.amount is None
        else _amount(ctx, refund.amount, order.currency, "refund.amount")
    )
    if refund.amount is not None and amount == 0:
        raise InvalidInput(
            "A refund amount must be greater than zero.",
            code="invalid_amount",
            details={"field": "refund.amount", "value": str(refund.amount)},
        )
    if amount <= 0 or amount > left:
        raise RefundExceedsOrder(
            f"Order '{order.external_id}' has {left} minor units left to refund;"
            f" {amount} requested.",
            details={
                "order_id": order.external_id,
                "refundable_minor": left,
                "requested_minor": amount,
            },
        )
    refunded_after = order.refunded_minor + amount
    points = reversal_points(
        earned=order.points_earned,
        reversed_before=order.points_reversed,
        total_minor=order.total_minor,
        refunded_after_minor=refunded_after,
    )
    entries: list[LedgerEntry] = []
    if points > 0:
        entry = ledger.debit(
            session,
            account,
            entry_type="reverse",
            points=points,
            reason=f"Refund of order {order.external_id}",
            source=ledger.Source("order", order.external_id, ctx.actor, order.id),
            occurred_at=event.occurred_at,
            now=ctx.now,
            allow_shortfall=True,
            prefer_order_id=order.id,
            details={"event_id": key, "refund_minor": amount},
        )
        entries.append(entry)
        # The order's debt is settled whether the points were still there or not; what could
        # not be taken back is on the entry (and the account) as shortfall.
        order.points_reversed += points
    order.refunded_minor = refunded_after
    order.status = "refunded" if refunded_after == order.total_minor else "partially_refunded"
    account.qualifying_spend_minor -= amount
    return entries


def _custom(
    session: Session, event: EventIn, ctx: IngestContext, member: Member, account: Account, key: str
) -> list[LedgerEntry]:
    facts = EventFacts(
        event_type=event.type,
        occurred_at=event.occurred_at,
        properties=event.properties,
        event_id=key,
    )
    postings = evaluate(ctx.programme, _snapshot(session, ctx, member, account, event), facts)
    source = ledger.Source("event", key, ctx.actor)
    entries = _credit_postings(
        session,
        ctx,
        account,
        postings,
        source=source,
        occurred_at=event.occurred_at,
        key=key,
        pending=False,
    )
    if ctx.programme.tiers is not None and ctx.programme.tiers.basis == "points" and entries:
        upgrade = tiers.upgrade_if_qualified(
            session,
            ctx.programme,
            account,
            at=event.occurred_at,
            now=ctx.now,
            backfill=ctx.backfill,
        )
        if upgrade is not None:
            entries.extend(upgrade.entries)
    return entries
