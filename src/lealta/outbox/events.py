"""One frozen dataclass per domain event written to the outbox.

Each class names its outbox ``TYPE`` (the row's topic) and the ``VERSION`` of its payload.
``to_payload()`` gives the JSON stored on the row and ``from_payload()`` reads it back;
datetimes travel as ISO 8601 strings, decimals as strings. A field whose payload key is not
its name (``from``, ``to``) says so in its metadata. Changing a payload means a new
``VERSION`` and a ``from_payload`` that still reads the old one.

Events of custom types (``review.posted``, …) are one class, :class:`EventProcessed`, whose
topic is the event's own type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Self, get_type_hints


def _key(name: str) -> dict[str, str]:
    return {"key": name}


_SKIP = {"payload": False}


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Base of every domain event."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1

    @property
    def topic(self) -> str:
        """The outbox topic: the class ``TYPE``."""
        return self.TYPE

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for name, key in _payload_fields(type(self)):
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, Decimal):
                value = str(value)
            payload[key] = value
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, topic: str | None = None) -> Self:
        """Read a payload written by :meth:`to_payload` (``topic`` matters to custom events)."""
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.metadata.get("payload", True) is False:
                continue
            raw = payload.get(f.metadata.get("key", f.name))
            kind = hints[f.name]
            if raw is not None and kind in (datetime, datetime | None):
                raw = datetime.fromisoformat(raw)
            elif raw is not None and kind in (Decimal, Decimal | None):
                raw = Decimal(raw)
            values[f.name] = raw
        return cls(**values)


_HINTS: dict[type[DomainEvent], dict[str, Any]] = {}


_PAYLOAD_FIELDS: dict[type[DomainEvent], tuple[tuple[str, str], ...]] = {}


def _payload_fields(cls: type[DomainEvent]) -> tuple[tuple[str, str], ...]:
    """(attribute, payload key) of the fields an event class writes, once per class."""
    found = _PAYLOAD_FIELDS.get(cls)
    if found is None:
        found = _PAYLOAD_FIELDS[cls] = tuple(
            (f.name, f.metadata.get("key", f.name))
            for f in dataclasses.fields(cls)
            if f.metadata.get("payload", True) is not False
        )
    return found


def _hints(cls: type[DomainEvent]) -> dict[str, Any]:
    """The resolved field types of an event class (annotations are strings here)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


# --- events: orders and custom events ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderPaid(DomainEvent):
    """An ``order.paid`` event was processed; ``points_delta`` is the net of its postings."""

    TYPE: ClassVar[str] = "order.paid"
    event_id: str
    customer_id: str
    points_delta: int


@dataclass(frozen=True, slots=True)
class OrderRefunded(DomainEvent):
    """An ``order.refunded`` event was processed (``points_delta`` is zero or negative)."""

    TYPE: ClassVar[str] = "order.refunded"
    event_id: str
    customer_id: str
    points_delta: int


@dataclass(frozen=True, slots=True)
class EventProcessed(DomainEvent):
    """A custom event (``review.posted``, …) was processed; its topic is its own type."""

    TYPE: ClassVar[str] = "*"
    event_type: str = field(metadata=_SKIP)
    event_id: str
    customer_id: str
    points_delta: int

    @property
    def topic(self) -> str:
        return self.event_type

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, topic: str | None = None) -> Self:
        if topic is None:
            raise ValueError("A custom event is read back with its topic.")
        return cls(
            event_type=topic,
            event_id=payload["event_id"],
            customer_id=payload["customer_id"],
            points_delta=payload["points_delta"],
        )


# --- tiers, thresholds, lots ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierChanged(DomainEvent):
    """A member moved up or down a tier (entry placement is not announced)."""

    TYPE: ClassVar[str] = "tier.changed"
    from_tier: str | None = field(metadata=_key("from"))
    to_tier: str = field(metadata=_key("to"))
    direction: str
    qualifying_value: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class ThresholdReached(DomainEvent):
    """Net spend crossed a multiple of a threshold rule; ``coupon_code`` when one was issued."""

    TYPE: ClassVar[str] = "threshold.reached"
    rule_id: str
    reward_id: str
    crossed: Decimal
    order_id: str
    at: datetime
    coupon_code: str | None


@dataclass(frozen=True, slots=True)
class ThresholdForfeited(DomainEvent):
    """One event crossed more multiples than the rule's ``max_per_event``; the rest lapse."""

    TYPE: ClassVar[str] = "threshold.forfeited"
    rule_id: str
    reward_id: str
    order_id: str
    event_id: str
    issued: int
    forfeited: int
    max_per_event: int
    at: datetime


@dataclass(frozen=True, slots=True)
class PointsReleased(DomainEvent):
    """Pending points became available."""

    TYPE: ClassVar[str] = "points.released"
    points: int


@dataclass(frozen=True, slots=True)
class PointsExpired(DomainEvent):
    """Points expired; ``points`` is the (positive) number taken."""

    TYPE: ClassVar[str] = "points.expired"
    points: int


# --- rewards -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RewardRedeemed(DomainEvent):
    """A member redeemed a reward; ``coupon_code`` when it issued a coupon."""

    TYPE: ClassVar[str] = "reward.redeemed"
    redemption_id: int
    reward_id: str
    reward_type: str
    points: int
    coupon_code: str | None


@dataclass(frozen=True, slots=True)
class RedemptionRolledBack(DomainEvent):
    """A redemption was undone: points back, coupon void, stock returned."""

    TYPE: ClassVar[str] = "redemption.rolled_back"
    redemption_id: int
    reward_id: str


# --- surveys -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SurveyAnswered(DomainEvent):
    """A member completed a survey; ``nps`` is the 0-10 score when it asks for one."""

    TYPE: ClassVar[str] = "survey.answered"
    survey_key: str
    response_id: int
    points: int
    nps: int | None


# --- members and coupons ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberEnrolled(DomainEvent):
    """A member joined the programme; ``referral_code`` when they came with one."""

    TYPE: ClassVar[str] = "member.enrolled"
    customer_id: str
    at: datetime
    referral_code: str | None = None


@dataclass(frozen=True, slots=True)
class CouponIssued(DomainEvent):
    """A coupon was issued to a member (by a redemption, a threshold, a workflow, …)."""

    TYPE: ClassVar[str] = "coupon.issued"
    coupon_id: int
    code: str
    reward_id: str
    source: str
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class CouponUsed(DomainEvent):
    """A member's coupon was used on an order."""

    TYPE: ClassVar[str] = "coupon.used"
    coupon_id: int
    code: str
    reward_id: str
    order_ref: str
    at: datetime


# --- gamification, referrals, segments ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BadgeAwarded(DomainEvent):
    """A member earned a badge (once per badge); ``points`` it gave, if any."""

    TYPE: ClassVar[str] = "badge.awarded"
    badge_id: str
    points: int
    at: datetime


@dataclass(frozen=True, slots=True)
class ChallengeCompleted(DomainEvent):
    """A member completed a challenge in one of its periods."""

    TYPE: ClassVar[str] = "challenge.completed"
    challenge_id: str
    period: str
    points: int
    at: datetime


@dataclass(frozen=True, slots=True)
class ChallengeRevoked(DomainEvent):
    """A refund took a completed challenge below its goal: its completion is undone and
    ``points`` (as many as the member still had) were taken back."""

    TYPE: ClassVar[str] = "challenge.revoked"
    challenge_id: str
    period: str
    points: int
    at: datetime


@dataclass(frozen=True, slots=True)
class StreakRewarded(DomainEvent):
    """A member's streak reached a rung of its ladder (``months`` in a row), once per streak."""

    TYPE: ClassVar[str] = "streak.rewarded"
    streak_id: str
    months: int
    points: int
    at: datetime


@dataclass(frozen=True, slots=True)
class ReferralRewarded(DomainEvent):
    """A referral qualified and rewarded one side (``role``: referrer or friend)."""

    TYPE: ClassVar[str] = "referral.rewarded"
    referral_id: int
    role: str
    points: int
    at: datetime


@dataclass(frozen=True, slots=True)
class SegmentEntered(DomainEvent):
    """A member entered a segment."""

    TYPE: ClassVar[str] = "segment.entered"
    segment_key: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SegmentLeft(DomainEvent):
    """A member left a segment."""

    TYPE: ClassVar[str] = "segment.left"
    segment_key: str
    at: datetime


EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.TYPE: cls
    for cls in (
        OrderPaid,
        OrderRefunded,
        TierChanged,
        ThresholdReached,
        ThresholdForfeited,
        PointsReleased,
        PointsExpired,
        RewardRedeemed,
        RedemptionRolledBack,
        SurveyAnswered,
        MemberEnrolled,
        CouponIssued,
        CouponUsed,
        BadgeAwarded,
        ChallengeCompleted,
        ChallengeRevoked,
        StreakRewarded,
        ReferralRewarded,
        SegmentEntered,
        SegmentLeft,
    )
}
"""Every fixed event type → its class. Any other topic is a custom :class:`EventProcessed`."""

ALL_EVENTS: tuple[type[DomainEvent], ...] = (*EVENT_TYPES.values(), EventProcessed)


def event_class(topic: str) -> type[DomainEvent]:
    """The class of events written under ``topic``."""
    return EVENT_TYPES.get(topic, EventProcessed)


def decode(topic: str, payload: dict[str, Any]) -> DomainEvent:
    """The typed event of an outbox row."""
    return event_class(topic).from_payload(payload, topic=topic)
