"""Request and response shapes of the inbound endpoints.

``track`` and ``identify`` take the field names customer-data platforms use (Segment's
``userId``, ``anonymousId``, ``messageId``), so a CDP destination can point at Lealta with no
translation; the envelope fields those platforms add (``type``, ``context``, ``integrations``,
``sentAt``, ``originalTimestamp``, ``receivedAt``, ``version``) are accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from lealta.kit.ids import ExternalId
from lealta.kit.storable import check_storable

MessageId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=190)]
AnonymousId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^\S+$")
]


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(default=None, description="Ignored (CDP envelope).")
    context: dict[str, Any] | None = Field(default=None, description="Ignored (CDP envelope).")
    integrations: dict[str, Any] | None = Field(default=None, description="Ignored.")
    sentAt: str | None = Field(default=None, description="Ignored.")  # noqa: N815
    originalTimestamp: str | None = Field(default=None, description="Ignored.")  # noqa: N815
    receivedAt: str | None = Field(default=None, description="Ignored.")  # noqa: N815
    version: int | str | None = Field(default=None, description="Ignored.")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_storable(data)


class TrackIn(_Envelope):
    """A custom event of a member (``userId``) or of a visitor not yet known
    (``anonymousId``); one of them is needed, except with a publishable key and a signed-in
    member, whose id is then used."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "userId": "cust-42",
                    "event": "Product Reviewed",
                    "properties": {"product": "MUG-9", "stars": 5},
                    "timestamp": "2026-11-23T18:00:00Z",
                    "messageId": "msg-7f3a",
                }
            ]
        },
    )

    userId: ExternalId | None = None  # noqa: N815
    anonymousId: AnonymousId | None = None  # noqa: N815
    event: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="Event name; 'Product Reviewed' is recorded as type product_reviewed."
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: AwareDatetime | None = Field(
        default=None, description="When it happened; omitted means now."
    )
    messageId: MessageId | None = Field(  # noqa: N815
        default=None,
        description="Unique per event; dedupes retries (or send an Idempotency-Key header).",
    )


class IdentifyIn(_Envelope):
    """Who a member is: profile traits, and the anonymous id they used before signing in."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "userId": "cust-42",
                    "anonymousId": "a1b2c3",
                    "traits": {"email": "ana@example.com", "firstName": "Ana", "language": "es"},
                    "messageId": "msg-7f3b",
                }
            ]
        },
    )

    userId: ExternalId  # noqa: N815
    anonymousId: AnonymousId | None = None  # noqa: N815
    traits: dict[Annotated[str, StringConstraints(max_length=64)], Any] = Field(
        default_factory=dict, max_length=200
    )
    timestamp: AwareDatetime | None = None
    messageId: MessageId | None = None  # noqa: N815


class IdentifyOut(BaseModel):
    user_id: str
    created: bool = Field(description="The member was enrolled by this call.")
    updated: list[str] = Field(description="Profile fields and attributes set.")
    ignored_traits: list[str] = Field(description="Traits Lealta has no field for.")
    attached_events: int = Field(description="Anonymous events now recorded as the member's.")


class AnonymousTrackOut(BaseModel):
    status: str = Field(description="kept: waiting for an identify with this anonymousId.")
    anonymous_id: str
    message_id: str
    type: str
    occurred_at: str


class DeliveryOut(BaseModel):
    delivery_id: str
    topic: str
    status: str = Field(description="processed, duplicate or skipped")
    reason: str | None = Field(
        default=None,
        description="Why not processed: already_recorded, no_customer, unknown_customer,"
        " unknown_order, nothing_refunded.",
    )
    event_id: str | None = None
    customer_id: str | None = None
    result: dict[str, Any] | None = Field(
        default=None, description="The event's result, as POST /v1/events answers."
    )


class CatalogueReward(BaseModel):
    id: str
    type: str
    name: str
    description: str | None
    cost: int = Field(description="Points it costs.")
    tiers: list[str] | None = Field(description="Only members in these tiers; null: everyone.")
    available_from: str | None
    available_until: str | None


class CatalogueTier(BaseModel):
    id: str
    name: str
    threshold: str = Field(description="Qualifying value from which the tier applies.")
    multiplier: str
    benefits: dict[str, Any]


class CatalogueOut(BaseModel):
    programme: str
    currency: str
    language: str
    rewards: list[CatalogueReward]
    tiers: list[CatalogueTier]
    tier_basis: str | None = Field(description="spend or points; null without tiers.")
