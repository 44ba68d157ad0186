from __future__ import annotations

from fastapi import APIRouter, Body, Response

from lealta.apikeys.deps import Api, ApiWriter
from lealta.events import batch as batch_driver
from lealta.events import service
from lealta.events.schemas import (
    BatchResult,
    EventBatchIn,
    EventIn,
    EventResult,
    NonMemberResult,
)
from lealta.kit.errors import PayloadTooLarge
from lealta.kit.http import (
    ERROR_RESPONSES,
    IdempotencyKey,
    replayable,
    respond,
    run_blocking,
)
from lealta.programme import service as programmes
from lealta.programme.schema import DEFAULT_PROGRAMME

router = APIRouter(prefix="/v1/events", tags=["events"], responses=ERROR_RESPONSES)


@router.post(
    "",
    status_code=201,
    response_model=EventResult,
    summary="Ingest one event",
    responses={
        **replayable(EventResult),
        202: {
            "model": NonMemberResult,
            "description": "With implicit enrolment off, the order or refund of a customer who"
            " is not a member: kept for the dashboard, no points.",
        },
    },
)
async def ingest_event(
    event: EventIn, api: ApiWriter, idempotency_key: IdempotencyKey = None
) -> Response:
    """Record an order, a refund or any custom event and apply what it earns.

    Idempotent by the `Idempotency-Key` header or, failing that, the event `id`: sending the
    same event again returns the original result (status 200, header
    `Idempotent-Replayed: true`) and changes nothing. Events are processed at their
    `occurred_at`, so history can be sent late. With `LEALTA_AUTO_ENROL=false`, an order or
    refund of a customer who is not a member answers `202` (`"member": false`): it is kept
    for the member vs non-member figures and earns nothing.
    """
    return await run_blocking(_ingest_one, event, api, idempotency_key)


def _ingest_one(event: EventIn, api: Api, idempotency_key: str | None) -> Response:
    settings = api.settings
    with api.db.unit_of_work() as session:
        ctx = service.IngestContext(
            programme=DEFAULT_PROGRAMME,  # the one in force is read with the member
            programme_in_force=True,
            now=api.clock.now(),
            actor=api.principal.actor,
            auto_enrol=settings.auto_enrol,
            max_amount=settings.max_order_amount,
        )
        outcome = service.ingest(session, event, ctx, key=idempotency_key)
    return respond(outcome)


@router.post("/batch", response_model=BatchResult, summary="Ingest up to 1,000 events")
def ingest_batch(
    api: ApiWriter,
    batch: EventBatchIn = Body(
        openapi_examples={
            "two": {
                "summary": "An order and a review",
                "value": {
                    "events": [
                        {
                            "id": "evt_1",
                            "type": "order.paid",
                            "customer_id": "c1",
                            "occurred_at": "2026-11-01T10:00:00Z",
                            "order": {"id": "O-1", "total": "50.00", "currency": "EUR"},
                        },
                        {
                            "id": "evt_2",
                            "type": "review.posted",
                            "customer_id": "c1",
                            "occurred_at": "2026-11-02T10:00:00Z",
                            "properties": {"stars": 5},
                        },
                    ]
                },
            }
        }
    ),
) -> BatchResult:
    """Process each event as `POST /v1/events` would, in `occurred_at` order, each on its own:
    a rejected event does not stop the others. Every event needs an `id`."""
    settings, clock = api.settings, api.clock
    if len(batch.events) > settings.max_batch_events:
        raise PayloadTooLarge(
            f"A batch holds at most {settings.max_batch_events} events; got {len(batch.events)}.",
            code="batch_too_large",
            details={"max": settings.max_batch_events, "got": len(batch.events)},
        )
    with api.db.unit_of_work() as session:
        ctx = service.IngestContext(
            programme=programmes.current(session, now=clock.now()),
            now=clock.now(),
            actor=api.principal.actor,
            auto_enrol=settings.auto_enrol,
            max_amount=settings.max_order_amount,
        )
        return batch_driver.ingest_raw(session, batch.events, ctx)
