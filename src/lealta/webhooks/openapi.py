"""The ``webhooks`` section of the OpenAPI 3.1 document: one entry per event type.

Each entry documents the request Lealta sends (the envelope of
:class:`~lealta.webhooks.schemas.WebhookEnvelope` with that type's ``data``), built from the
domain event dataclasses, so a new event type is documented without editing this module.
"""

from __future__ import annotations

import dataclasses
import inspect
from decimal import Decimal
from typing import Any, Literal, get_type_hints

from fastapi import FastAPI, Header
from fastapi.responses import Response
from pydantic import BaseModel, Field, create_model

from lealta.outbox.events import EVENT_TYPES, DomainEvent, EventProcessed
from lealta.webhooks import signing
from lealta.webhooks.schemas import WebhookEnvelope

CUSTOM = "{custom.event}"


def _python_type(kind: Any) -> Any:
    """The JSON-side type of a payload field (decimals travel as strings)."""
    if kind is Decimal:
        return str
    if kind == Decimal | None:
        return str | None
    return kind


def data_model(cls: type[DomainEvent]) -> type[BaseModel]:
    """The ``data`` object of one event type, from its dataclass."""
    hints = get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("payload", True) is False:
            continue
        fields[f.metadata.get("key", f.name)] = (_python_type(hints[f.name]), ...)
    if "customer_id" not in fields:
        fields["customer_id"] = (
            str | None,
            Field(None, description="The member's external id, when the event concerns one."),
        )
    name = cls.__name__ if cls is not EventProcessed else "CustomEvent"
    return create_model(f"{name}Data", __doc__=cls.__doc__, **fields)


def envelope_model(topic: str, cls: type[DomainEvent]) -> type[BaseModel]:
    name = cls.__name__ if cls is not EventProcessed else "CustomEvent"
    kind: Any = Literal[topic] if cls is not EventProcessed else str
    return create_model(
        f"{name}Webhook",
        __base__=WebhookEnvelope,
        type=(kind, Field(description="The event type.")),
        version=(int, Field(cls.VERSION, description="The payload version of this type.")),
        data=(data_model(cls), ...),
    )


def _receiver(model: type[BaseModel], summary: str) -> Any:
    def receive(
        body: Any,
        webhook_id: Any = Header(alias=signing.ID_HEADER),
        timestamp: Any = Header(alias=signing.TIMESTAMP_HEADER),
        signature: Any = Header(alias=signing.SIGNATURE_HEADER),
    ) -> None:
        """Documentation only: Lealta sends this request to your endpoint."""

    receive.__annotations__ = {
        "body": model,
        "webhook_id": str,
        "timestamp": str,
        "signature": str,
        "return": None,
    }
    receive.__doc__ = summary
    return receive


def install(app: FastAPI) -> None:
    """Add a ``webhooks`` entry per event type (and one for custom event types)."""
    topics: list[tuple[str, type[DomainEvent]]] = [*EVENT_TYPES.items(), (CUSTOM, EventProcessed)]
    for topic, cls in topics:
        model = envelope_model(topic, cls)
        about = (
            inspect.cleandoc(cls.__doc__ or "")
            if cls is not EventProcessed
            else "A custom event (`review.posted`, …) was processed; `type` is its own type."
        )
        description = f"{about}\n\n{inspect.cleandoc(WebhookEnvelope.__doc__ or '')}"
        app.webhooks.add_api_route(
            topic,
            _receiver(model, description),
            methods=["POST"],
            summary=f"{topic} webhook",
            description=description,
            tags=["webhooks"],
            status_code=200,
            response_class=Response,
            response_description="Any 2xx acknowledges the event; anything else, or no answer"
            " within the timeout, is retried with backoff.",
        )
