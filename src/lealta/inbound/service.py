"""Inbound operations: shop webhooks, ``track``/``identify`` and publishable-key origins.

Everything here runs inside the caller's unit of work and reuses the online driver of the
spine (:func:`lealta.events.service.ingest`): a Shopify order, a tracked event and an
anonymous event attached by ``identify`` earn exactly what the same event sent to
``POST /v1/events`` would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.events import service as events
from lealta.events.schemas import EventIn
from lealta.inbound import shopify
from lealta.inbound.schemas import IdentifyIn, TrackIn
from lealta.kit.db import insert_ignore
from lealta.kit.errors import Conflict, InvalidInput, LealtaError, NotFound
from lealta.kit.idempotency import Outcome, check_key, request_hash
from lealta.kit.logging import get_logger
from lealta.kit.money import DEFAULT_MAX_AMOUNT
from lealta.kit.timestamps import check_moment
from lealta.members import attributes
from lealta.members import service as members
from lealta.members.schemas import MemberFields
from lealta.models import AnonymousEvent, ApiKey, ApiKeyOrigin, InboundDelivery, Member, Order
from lealta.programme import service as programmes
from lealta.programme.schema import DEFAULT_PROGRAMME

log = get_logger("lealta.inbound")

_deliveries = cast(Table, InboundDelivery.__table__)
_anonymous = cast(Table, AnonymousEvent.__table__)

MAX_ANONYMOUS_EVENTS = 100
"""Unattached events one anonymous id may hold: an ``identify`` attaches them all in its own
request, so the work it does stays bounded."""
TRACK_PREFIX = "track:"


@dataclass(frozen=True, slots=True)
class Inbound:
    """What an inbound operation needs besides the session."""

    now: datetime
    actor: str
    auto_enrol: bool = True
    max_amount: Decimal = DEFAULT_MAX_AMOUNT

    def ingest_context(self) -> events.IngestContext:
        return events.IngestContext(
            programme=DEFAULT_PROGRAMME,  # the one in force is read with the member
            programme_in_force=True,
            now=self.now,
            actor=self.actor,
            auto_enrol=self.auto_enrol,
            max_amount=self.max_amount,
        )


# --- Shopify ---------------------------------------------------------------------------------


def receive_shopify(
    session: Session,
    ctx: Inbound,
    *,
    topic: str,
    payload: Any,
    delivery_id: str | None,
    store: str | None,
) -> Outcome:
    """Record one Shopify delivery once: a redelivery (same webhook id) replays the stored
    answer; the same order or refund under another webhook id is a ``duplicate``.

    Parsing comes first, so a malformed body is a ``422`` that claims nothing. An unknown
    customer is enrolled when implicit enrolment is on (``LEALTA_AUTO_ENROL``), else their
    order or refund is kept as a non-member's (``processed``, reason ``non_member``, no
    points; :mod:`lealta.nonmembers`).
    """
    if topic == shopify.ORDERS_PAID:
        order = shopify.parse_order(payload)
        resource = f"order:{order.id}"
        mapped: EventIn | shopify.Skip = shopify.order_event(order, store=store)
    elif topic == shopify.REFUNDS_CREATE:
        refund = shopify.parse_refund(payload)
        resource = f"refund:{refund.id}"
        owner = order_owner(session, str(refund.order_id))
        mapped = (
            shopify.Skip("unknown_order") if owner is None else shopify.refund_event(refund, owner)
        )
    else:  # pragma: no cover - the router only passes the two topics
        raise NotFound(f"Unknown Shopify topic '{topic}'.", code="unknown_topic")
    key = check_key(delivery_id or f"{topic}:{resource}")
    digest = request_hash(payload)
    claimed = insert_ignore(
        session,
        InboundDelivery,
        {
            "source": shopify.SOURCE,
            "delivery_id": key,
            "topic": topic,
            "status": "skipped",
            "reason": "in_progress",
            "request_hash": digest,
            "response": {},
            "received_at": ctx.now,
        },
        conflict=["source", "delivery_id"],
    )
    if claimed is None:
        return _replay_delivery(session, key, digest)
    status, reason, body = _apply_mapped(session, ctx, mapped)
    customer_id = mapped.customer_id if isinstance(mapped, (EventIn, shopify.Skip)) else None
    event_id = mapped.id if isinstance(mapped, EventIn) else None
    response = {
        "delivery_id": key,
        "topic": topic,
        "status": status,
        "reason": reason,
        "event_id": event_id,
        "customer_id": customer_id,
        "result": body,
    }
    session.execute(
        update(_deliveries)
        .where(_deliveries.c.id == claimed)
        .values(
            status=status,
            reason=reason,
            event_id=event_id,
            customer_id=customer_id,
            response=response,
        )
    )
    log.info("inbound_delivery", source="shopify", topic=topic, status=status, reason=reason)
    return Outcome(200, response, replayed=False)


def _apply_mapped(
    session: Session, ctx: Inbound, mapped: EventIn | shopify.Skip
) -> tuple[str, str | None, dict[str, Any] | None]:
    if isinstance(mapped, shopify.Skip):
        return "skipped", mapped.reason, None
    try:
        with session.begin_nested():
            outcome = events.ingest(session, mapped, ctx.ingest_context(), key=mapped.id)
    except members.MemberNotFound:
        return "skipped", "unknown_customer", None
    except (events.EventIdReused, events.OrderAlreadyRecorded):
        return "duplicate", "already_recorded", None
    if outcome.replayed:
        return "duplicate", "already_recorded", outcome.body
    if outcome.status_code == 202:  # a customer who is not a member: kept, no points
        return "processed", "non_member", outcome.body
    return "processed", None, outcome.body


def _replay_delivery(session: Session, key: str, digest: str) -> Outcome:
    row = session.execute(
        select(_deliveries.c.request_hash, _deliveries.c.response).where(
            _deliveries.c.source == shopify.SOURCE, _deliveries.c.delivery_id == key
        )
    ).one()
    if row.request_hash != digest:
        raise Conflict(
            "This webhook id was already received with a different body.",
            code="delivery_id_reused",
            details={"delivery_id": key},
        )
    return Outcome(200, row.response, replayed=True)


def order_owner(session: Session, order_id: str) -> str | None:
    """The external id of the member whose order ``order_id`` is, if it was recorded."""
    return session.scalar(
        select(Member.external_id)
        .join(Order, Order.member_id == Member.id)
        .where(Order.external_id == order_id)
    )


# --- track -----------------------------------------------------------------------------------

_NOT_WORD = re.compile(r"[^a-z0-9_.]+")


def event_type(name: str) -> str:
    """A CDP event name as a Lealta event type: ``"Product Viewed"`` → ``product_viewed``.

    Lower case; runs of other characters become ``_``; ``order.paid`` and ``order.refunded``
    are refused (they need an order, so they go through ``POST /v1/events``)."""
    normal = _NOT_WORD.sub("_", name.strip().lower()).strip("_.")
    if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*", normal) or len(normal) > 64:
        raise InvalidInput(
            f"'{name}' cannot be an event type: start with a letter; use letters, digits, spaces,"
            " '_' or '.' (at most 64).",
            code="invalid_event_name",
            details={"event": name},
        )
    if normal.startswith("order."):
        raise InvalidInput(
            "Orders and refunds go through POST /v1/events (or a shop adapter), not track.",
            code="reserved_event_name",
            details={"event": name},
        )
    return normal


def track(session: Session, ctx: Inbound, data: TrackIn, *, key: str | None) -> Outcome:
    """A custom event for a member (``userId``) through the spine, or, with only an
    ``anonymousId``, kept until an ``identify`` names the member (``202``).

    Idempotent by the ``Idempotency-Key`` header, else the ``messageId``: the event's id is
    ``track:<key>``, so a retried call replays the first answer.
    """
    if data.userId is None and data.anonymousId is None:
        raise InvalidInput(
            "A track call needs a 'userId' or an 'anonymousId'.", code="missing_user_id"
        )
    message = check_key(key if key is not None else data.messageId)
    kind = event_type(data.event)
    at = data.timestamp or ctx.now
    check_moment(at, now=ctx.now, field="timestamp")
    if data.userId is not None:
        event = EventIn(
            id=TRACK_PREFIX + message,
            type=kind,
            customer_id=data.userId,
            occurred_at=at,
            properties=data.properties,
        )
        return events.ingest(session, event, ctx.ingest_context(), key=event.id)
    assert data.anonymousId is not None
    return _keep_anonymous(session, ctx, data.anonymousId, message, kind, at, data.properties)


def _keep_anonymous(
    session: Session,
    ctx: Inbound,
    anonymous_id: str,
    message: str,
    kind: str,
    at: datetime,
    properties: dict[str, Any],
) -> Outcome:
    digest = request_hash({"a": anonymous_id, "t": kind, "at": at.isoformat(), "p": properties})
    body = {
        "status": "kept",
        "anonymous_id": anonymous_id,
        "message_id": message,
        "type": kind,
        "occurred_at": at.isoformat(),
    }
    waiting = session.scalar(
        select(func.count())
        .select_from(_anonymous)
        .where(_anonymous.c.anonymous_id == anonymous_id, _anonymous.c.attached_at.is_(None))
    )
    claimed = None
    if (waiting or 0) < MAX_ANONYMOUS_EVENTS:
        claimed = insert_ignore(
            session,
            AnonymousEvent,
            {
                "anonymous_id": anonymous_id,
                "message_id": message,
                "event_type": kind,
                "properties": properties,
                "request_hash": digest,
                "occurred_at": at,
                "received_at": ctx.now,
            },
            conflict=["message_id"],
        )
        if claimed is not None:
            return Outcome(202, body, replayed=False)
    existing = session.execute(
        select(_anonymous.c.request_hash).where(_anonymous.c.message_id == message)
    ).one_or_none()
    if existing is None:
        raise Conflict(
            f"Anonymous id '{anonymous_id}' already holds {MAX_ANONYMOUS_EVENTS} events waiting"
            " for an identify; identify the visitor first.",
            code="anonymous_event_limit",
            details={"anonymous_id": anonymous_id, "max": MAX_ANONYMOUS_EVENTS},
        )
    if existing.request_hash != digest:
        raise Conflict(
            "This message id was already used with a different event.",
            code="idempotency_key_reused",
            details={"key": message},
        )
    return Outcome(202, body, replayed=True)


# --- identify --------------------------------------------------------------------------------

PROFILE_TRAITS = {"email", "phone", "name", "birthday", "language", "timezone"}
REFERRAL_TRAITS = ("referralCode", "referral_code")
"""The code of the member who referred a customer enrolled by this identify."""


def split_traits(
    traits: dict[str, Any], declared: set[str]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Traits as profile fields, declared custom attributes, and the names ignored.

    ``firstName``/``first_name`` and ``lastName``/``last_name`` make ``name`` when no ``name``
    is given; ``phone``, ``email``, ``birthday``, ``language`` and ``timezone`` are profile
    fields; a trait named like an attribute the programme declares sets it; anything else is
    ignored and listed in the answer (a CDP sends many traits Lealta has no use for).
    """
    profile: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    ignored: list[str] = []
    first = traits.get("firstName", traits.get("first_name"))
    last = traits.get("lastName", traits.get("last_name"))
    for name, value in traits.items():
        if name in PROFILE_TRAITS:
            profile[name] = value
        elif name in declared:
            attrs[name] = value
        elif name not in ("firstName", "first_name", "lastName", "last_name", *REFERRAL_TRAITS):
            ignored.append(name)
    if "name" not in profile and (first or last):
        profile["name"] = " ".join(str(p).strip() for p in (first, last) if p)
    return profile, attrs, sorted(ignored)


def identify(session: Session, ctx: Inbound, data: IdentifyIn) -> tuple[int, dict[str, Any]]:
    """Set the member's profile and declared attributes from ``traits`` (enrolling the member
    when implicit enrolment is on), then attach what ``anonymousId`` tracked before.

    Meant to run inside :func:`lealta.kit.idempotency.run_once`: the caller dedupes by the
    ``Idempotency-Key`` or ``messageId``."""
    programme = programmes.current(session, now=ctx.now)
    profile, attrs, ignored = split_traits(data.traits, set(programme.attributes))
    if attrs:
        profile["attributes"] = attrs
    try:
        fields = MemberFields.model_validate(profile)
    except ValidationError as exc:
        body = events.validation_error_body(exc)["error"]
        raise InvalidInput(
            "traits." + body["message"], code="invalid_traits", details=body["details"]
        ) from None
    if fields.attributes:
        attributes.check(programme, fields.attributes)
    member = members.find(session, data.userId)
    created = member is None
    if member is None:
        member = members.get_or_enrol(
            session,
            data.userId,
            profile=fields,
            channel="identify",
            at=ctx.now,
            now=ctx.now,
            auto_enrol=ctx.auto_enrol,
            referral_code=next(
                (v for k in REFERRAL_TRAITS if isinstance(v := data.traits.get(k), str)), None
            ),
        )
    else:
        members.update(session, member, fields, now=ctx.now)  # attributes merge
    attached = 0
    if data.anonymousId is not None:
        attached = attach_anonymous(session, ctx, data.anonymousId, data.userId)
    return 200, {
        "user_id": data.userId,
        "created": created,
        "updated": sorted(k for k in profile if k != "attributes") + sorted(attrs),
        "ignored_traits": ignored,
        "attached_events": attached,
    }


def attach_anonymous(session: Session, ctx: Inbound, anonymous_id: str, external_id: str) -> int:
    """Ingest the events ``anonymous_id`` tracked as ``external_id``'s, oldest first; returns
    how many were attached. Bounded by :data:`MAX_ANONYMOUS_EVENTS`. An event the spine
    refuses (its moment now too old, say) is attached without effect and logged."""
    rows = session.execute(
        select(_anonymous)
        .where(_anonymous.c.anonymous_id == anonymous_id, _anonymous.c.attached_at.is_(None))
        .order_by(_anonymous.c.occurred_at, _anonymous.c.id)
        .limit(MAX_ANONYMOUS_EVENTS)
    ).all()
    member = members.get(session, external_id)
    for row in rows:
        event = EventIn(
            id=TRACK_PREFIX + row.message_id,
            type=row.event_type,
            customer_id=external_id,
            occurred_at=row.occurred_at,
            properties=row.properties,
        )
        try:
            with session.begin_nested():
                events.ingest(session, event, ctx.ingest_context(), key=event.id)
        except LealtaError as exc:
            log.warning("anonymous_event_refused", message_id=row.message_id, code=exc.code)
        session.execute(
            update(_anonymous)
            .where(_anonymous.c.id == row.id)
            .values(member_id=member.id, attached_at=ctx.now)
        )
    return len(rows)


# --- publishable keys: origins ---------------------------------------------------------------

_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$")


def check_origin(origin: str) -> str:
    """``origin`` as browsers send it (``scheme://host[:port]``, no path), or ``422``."""
    value = origin.strip().rstrip("/").lower()
    if not _ORIGIN.fullmatch(value) or len(value) > 255:
        raise InvalidInput(
            f"'{origin}' is not an origin: use scheme://host[:port], e.g. https://shop.example.",
            code="invalid_origin",
        )
    return value


def _publishable_key(session: Session, prefix: str) -> ApiKey:
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if row is None:
        raise NotFound(f"No API key with prefix '{prefix}'.", code="api_key_not_found")
    if row.scope != "publishable":
        raise Conflict(
            "Only publishable keys are used from browsers; this key is "
            f"'{row.scope}' and must stay on a server.",
            code="not_publishable",
        )
    return row


def allow_origin(session: Session, prefix: str, origin: str, *, now: datetime, actor: str) -> str:
    """Let the publishable key ``prefix`` be used from ``origin`` (idempotent; audited)."""
    key = _publishable_key(session, prefix)
    value = check_origin(origin)
    added = insert_ignore(
        session,
        ApiKeyOrigin,
        {"api_key_id": key.id, "origin": value, "created_at": now},
        conflict=["api_key_id", "origin"],
    )
    if added is not None:
        audit.record(
            session,
            actor=actor,
            action="api_key.origin_add",
            target_type="api_key",
            target_id=prefix,
            now=now,
            details={"origin": value},
        )
    return value


def forbid_origin(session: Session, prefix: str, origin: str, *, now: datetime, actor: str) -> bool:
    """Stop allowing ``origin`` for key ``prefix``; False if it was not allowed."""
    key = _publishable_key(session, prefix)
    value = check_origin(origin)
    row = session.scalars(
        select(ApiKeyOrigin).where(ApiKeyOrigin.api_key_id == key.id, ApiKeyOrigin.origin == value)
    ).one_or_none()
    if row is None:
        return False
    session.delete(row)
    audit.record(
        session,
        actor=actor,
        action="api_key.origin_remove",
        target_type="api_key",
        target_id=prefix,
        now=now,
        details={"origin": value},
    )
    return True


def origins_of(session: Session, key_id: int) -> set[str]:
    """The origins a key may be used from."""
    return set(
        session.scalars(select(ApiKeyOrigin.origin).where(ApiKeyOrigin.api_key_id == key_id))
    )


def any_key_allows(session: Session, origin: str) -> bool:
    """Whether some live publishable key may be used from ``origin`` (CORS preflights carry
    no key, so they are answered for any origin that some key allows)."""
    found = session.scalar(
        select(ApiKeyOrigin.id)
        .join(ApiKey, ApiKey.id == ApiKeyOrigin.api_key_id)
        .where(ApiKeyOrigin.origin == origin, ApiKey.revoked_at.is_(None))
        .limit(1)
    )
    return found is not None


def list_origins(session: Session, prefix: str) -> list[str]:
    return sorted(origins_of(session, _publishable_key(session, prefix).id))
