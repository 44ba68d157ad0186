"""``/v1/campaigns``: define campaigns, preview their audience, launch, pause, resume and
cancel them, and read their recipients (cursor-paginated or CSV)."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse, StreamingResponse

from lealta.apikeys.deps import Reader, Writer
from lealta.campaigns import service
from lealta.campaigns.schemas import (
    CampaignList,
    CampaignOut,
    PreviewOut,
    RecipientOut,
    RecipientPage,
)
from lealta.kit.errors import InvalidInput
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    IdempotencyKey,
    csv_download,
    replayable,
    respond,
)
from lealta.kit.idempotency import run_maybe_once
from lealta.models.campaign import RECIPIENT_STATUSES, CampaignState
from lealta.programme.types import Slug

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], responses=ERROR_RESPONSES)
Definition = Annotated[dict[str, Any], Body(description="A campaign (see the programme schema).")]


def campaign_out(
    row: CampaignState, counts: dict[str, dict[str, Any]] | None = None
) -> CampaignOut:
    found = counts or {"status": {}, "arms": {}}
    return CampaignOut(
        id=row.campaign_id, source=row.source, status=row.status,
        definition=service.definition(row), audience_size=row.audience_size,
        launched_at=row.launched_at, finished_at=row.finished_at,
        launch_requested=bool(row.detail.get("launch_requested_at")),
        counts=found["status"], arms=found["arms"], created_at=row.created_at,
        updated_at=row.updated_at,
    )  # fmt: skip


def _one(session: Any, campaign_id: str) -> CampaignOut:
    row = service.get(session, campaign_id)
    return campaign_out(row, service.counts(session, [campaign_id])[campaign_id])


@router.get("", response_model=CampaignList, summary="List campaigns")
def list_campaigns(principal: Reader, db: DbDep, clock: ClockDep) -> CampaignList:
    """Every campaign, those shipped in the programme (`source: programme`, read-only here
    except for launch/pause/resume/cancel) and those made over the API or console, with
    their recipients counted by status and by experiment arm."""
    with db.unit_of_work() as session:
        service.sync(session, now=clock.now())
        rows = service.list_campaigns(session)
        counts = service.counts(session, [r.campaign_id for r in rows])
        return CampaignList(items=[campaign_out(r, counts[r.campaign_id]) for r in rows])


@router.post("/preview", response_model=PreviewOut, summary="Preview a campaign's audience")
def preview(data: Definition, principal: Reader, db: DbDep, clock: ClockDep) -> PreviewOut:
    """How many members the definition would reach now, split by experiment arm, and a
    sample (nothing is saved)."""
    parsed = service.parse(data)
    with db.unit_of_work(write=False) as session:
        service.check_references(session, parsed, now=clock.now())
        p = service.preview(session, parsed)
        return PreviewOut(count=p.count, arms=p.arms, sample=p.sample)


@router.post(
    "", status_code=201, response_model=CampaignOut, summary="Create a campaign",
    responses=replayable(CampaignOut),
)  # fmt: skip
def create(
    data: Definition,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A campaign (`source: api`), validated like the programme's `campaigns` and checked
    against the segments, rewards and templates in force (`422 campaign_invalid` with the
    path). It launches at `starts_at` when `enabled`; a draft (`enabled: false`) only by
    `POST /v1/campaigns/{id}/launch`. An id in use is `409 campaign_exists`."""
    parsed = service.parse(data)
    with db.unit_of_work() as session:
        now = clock.now()
        service.sync(session, now=now)

        def effect() -> tuple[int, dict[str, object]]:
            row = service.create(session, parsed, actor=principal.actor, now=now)
            return 201, campaign_out(row).model_dump(mode="json")

        outcome = run_maybe_once(
            session, scope="campaign.create", key=idempotency_key, payload=data, now=now,
            effect=effect,
        )  # fmt: skip
    return respond(outcome)


@router.get("/{campaign_id}", response_model=CampaignOut, summary="Get a campaign")
def get_campaign(campaign_id: Slug, principal: Reader, db: DbDep) -> CampaignOut:
    with db.unit_of_work(write=False) as session:
        return _one(session, campaign_id)


@router.put("/{campaign_id}", response_model=CampaignOut, summary="Replace a campaign")
def update(
    campaign_id: Slug, data: Definition, principal: Writer, db: DbDep, clock: ClockDep
) -> CampaignOut:
    """Only a scheduled API campaign (`409 campaign_status` once launched,
    `409 campaign_read_only` for the programme's)."""
    parsed = service.parse(data)
    with db.unit_of_work() as session:
        service.update_campaign(
            session, campaign_id, parsed, actor=principal.actor, now=clock.now()
        )
        return _one(session, campaign_id)


@router.delete("/{campaign_id}", status_code=204, summary="Delete a campaign")
def remove(campaign_id: Slug, principal: Writer, db: DbDep, clock: ClockDep) -> None:
    with db.unit_of_work() as session:
        service.remove(session, campaign_id, actor=principal.actor, now=clock.now())


def _action(
    name: str, campaign_id: str, principal: Any, db: Any, clock: Any, key: str | None
) -> JSONResponse:
    actions = {
        "launch": service.request_launch, "pause": service.pause, "resume": service.resume,
        "cancel": service.cancel,
    }  # fmt: skip
    with db.unit_of_work() as session:
        now = clock.now()
        service.sync(session, now=now)

        def effect() -> tuple[int, dict[str, object]]:
            actions[name](session, campaign_id, actor=principal.actor, now=now)
            return 200, _one(session, campaign_id).model_dump(mode="json")

        outcome = run_maybe_once(
            session, scope=f"campaign.{name}", key=key, payload={"id": campaign_id}, now=now,
            effect=effect,
        )  # fmt: skip
    return respond(outcome)


@router.post("/{campaign_id}/launch", response_model=CampaignOut, summary="Launch now")
def launch(
    campaign_id: Slug, principal: Writer, db: DbDep, clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:  # fmt: skip
    """Launch a scheduled campaign (a draft too) now: a job draws its audience and the
    minute tick sends it. `409 campaign_status` once launched."""
    return _action("launch", campaign_id, principal, db, clock, idempotency_key)


@router.post("/{campaign_id}/pause", response_model=CampaignOut, summary="Pause")
def pause(
    campaign_id: Slug, principal: Writer, db: DbDep, clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:  # fmt: skip
    """Stop sending a running campaign (`409 campaign_status` otherwise)."""
    return _action("pause", campaign_id, principal, db, clock, idempotency_key)


@router.post("/{campaign_id}/resume", response_model=CampaignOut, summary="Resume")
def resume(
    campaign_id: Slug, principal: Writer, db: DbDep, clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:  # fmt: skip
    """Continue a paused campaign where it stopped."""
    return _action("resume", campaign_id, principal, db, clock, idempotency_key)


@router.post("/{campaign_id}/cancel", response_model=CampaignOut, summary="Cancel")
def cancel(
    campaign_id: Slug, principal: Writer, db: DbDep, clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:  # fmt: skip
    """End a campaign for good: its pending recipients become `cancelled`."""
    return _action("cancel", campaign_id, principal, db, clock, idempotency_key)


def _cursor(value: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        return int(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("The cursor is not valid.", code="invalid_cursor") from None


@router.get(
    "/{campaign_id}/recipients",
    response_model=RecipientPage,
    summary="Recipients of a campaign",
    responses={200: {"content": {"text/csv": {}}}},
)
def recipients(
    campaign_id: Slug,
    principal: Reader,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[Literal[RECIPIENT_STATUSES] | None, Query()] = None,  # type: ignore[valid-type]
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> RecipientPage | StreamingResponse:
    """In the order they were drawn; pass `next_cursor` back as `cursor`. `format=csv`
    streams every recipient as CSV."""
    if format == "csv":
        with db.unit_of_work(write=False) as session:
            service.get(session, campaign_id)
        return csv_download(service.export_csv(db, campaign_id), f"campaign-{campaign_id}.csv")
    after = _cursor(cursor) if cursor else None
    with db.unit_of_work(write=False) as session:
        service.get(session, campaign_id)
        page = service.recipients_page(
            session, campaign_id, after=after, limit=limit + 1, status=status
        )
    more = len(page) > limit
    page = page[:limit]
    return RecipientPage(
        items=[
            RecipientOut(
                customer_id=ext,
                arm=r.arm,
                status=r.status,
                reason=r.reason,
                assigned_at=r.assigned_at,
                reached_at=r.reached_at,
                message_id=r.message_id,
                opened_at=r.opened_at,
                clicked_at=r.clicked_at,
                coupon_code=(r.detail or {}).get("coupon_code"),
            )
            for r, ext in page
        ],
        next_cursor=base64.urlsafe_b64encode(str(page[-1][0].id).encode()).decode().rstrip("=")
        if more and page
        else None,
    )
