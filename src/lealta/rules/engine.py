"""Rule evaluation: pure, no database, no clock.

The foundation has one rule, the programme-wide base rate on paid orders. The rules engine
(CEL conditions, tier multipliers, caps) plugs in here without touching ingestion: ingestion
only turns the returned :class:`Posting` list into ledger credits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lealta.kit.money import exponent
from lealta.ledger.maths import points_for_amount
from lealta.programme.schema import Programme

BASE_RULE_ID = "base"


@dataclass(frozen=True, slots=True)
class MemberSnapshot:
    member_id: int
    external_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    qualifying_spend_minor: int = 0


@dataclass(frozen=True, slots=True)
class EventFacts:
    """The event as rules see it: type, time, properties and (for orders) the order."""

    event_type: str
    occurred_at: datetime
    properties: dict[str, Any]
    order_total_minor: int | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Posting:
    points: int
    rule_id: str
    reason: str


def evaluate(programme: Programme, member: MemberSnapshot, event: EventFacts) -> list[Posting]:
    """Postings this event earns for this member under this programme."""
    postings: list[Posting] = []
    if event.event_type == "order.paid" and event.order_total_minor is not None:
        points = points_for_amount(
            event.order_total_minor,
            exponent(programme.currency),
            programme.earning.points_per_unit,
            programme.earning.rounding,
        )
        if points > 0:
            postings.append(
                Posting(
                    points,
                    BASE_RULE_ID,
                    f"{programme.earning.points_per_unit} pt per {programme.currency}",
                )
            )
    return postings
