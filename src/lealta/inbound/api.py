"""Endpoints of the inbound adapters: Shopify webhooks, ``track``/``identify`` and the public
catalogue. Thin: each reads its request, opens the unit of work and calls the service."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lealta.apikeys.deps import Writer, get_any_principal
from lealta.apikeys.service import Principal
from lealta.config import Settings
from lealta.events.schemas import EventResult
from lealta.inbound import cors, service, shopify
from lealta.inbound.schemas import (
    AnonymousTrackOut,
    CatalogueOut,
    CatalogueReward,
    CatalogueTier,
    DeliveryOut,
    IdentifyIn,
    IdentifyOut,
    TrackIn,
)
from lealta.inbound.tokens import TOKEN_HEADER, token_matches
from lealta.kit.clock import Clock
from lealta.kit.db import Database
from lealta.kit.errors import Forbidden, LealtaError, NotFound
from lealta.kit.http import ERROR_RESPONSES, IdempotencyKey, replayable, respond
from lealta.kit.idempotency import check_key, run_once
from lealta.models import Member
from lealta.programme import service as programmes
from lealta.programme.schema import name_in

router = APIRouter(tags=["inbound"], responses=ERROR_RESPONSES)

# The cockpit's session keys (lealta.web.cockpit.routes: SESSION_KEY, GENERATION_KEY); read
# here without importing the web edge. A test checks that they agree.
MEMBER_SESSION_KEY = "member_id"
MEMBER_GENERATION_KEY = "member_session_generation"


class InboundNotConfigured(NotFound):
    code = "inbound_not_configured"


class MalformedBody(LealtaError):
    status_code = 400
    code = "malformed_json"


class MemberNotProven(Forbidden):
    code = "member_not_proven"


def _state(request: Request) -> tuple[Database, Clock, Settings]:
    state = request.app.state
    return state.db, state.clock, state.settings


def _context(request: Request, actor: str) -> service.Inbound:
    _, clock, settings = _state(request)
    return service.Inbound(
        now=clock.now(),
        actor=actor,
        auto_enrol=settings.auto_enrol,
        max_amount=settings.max_order_amount,
    )


# --- Shopify ---------------------------------------------------------------------------------

_SHOPIFY_HEADERS: dict[str, Any] = {
    "parameters": [
        {
            "name": shopify.SIGNATURE_HEADER,
            "in": "header",
            "required": True,
            "description": "Base64 HMAC-SHA256 of the raw body under"
            " LEALTA_SHOPIFY_WEBHOOK_SECRET.",
            "schema": {"type": "string"},
        },
        {
            "name": shopify.WEBHOOK_ID_HEADER,
            "in": "header",
            "required": False,
            "description": "Shopify's delivery id: a redelivery with the same id acts once.",
            "schema": {"type": "string"},
        },
        {
            "name": shopify.SHOP_HEADER,
            "in": "header",
            "required": False,
            "description": "The shop's domain, recorded as the order's store.",
            "schema": {"type": "string"},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
}


async def _shopify(request: Request, topic: str) -> Response:
    db, _, settings = _state(request)
    signature = request.headers.get(shopify.SIGNATURE_HEADER)
    if not signature or not signature.strip():
        shopify.verify("", b"", signature)  # 401 missing_signature, configured or not
    secret = settings.shopify_webhook_secret
    if not secret:
        raise InboundNotConfigured(
            "Shopify webhooks are not configured here: set LEALTA_SHOPIFY_WEBHOOK_SECRET.",
        )
    body = await request.body()
    shopify.verify(secret, body, signature)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedBody("The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise shopify.InvalidWebhook("A Shopify webhook body is a JSON object.")
    delivery = (request.headers.get(shopify.WEBHOOK_ID_HEADER) or "").strip() or None
    store = (request.headers.get(shopify.SHOP_HEADER) or "").strip() or None
    ctx = _context(request, "inbound:shopify")

    def work() -> Response:
        with db.unit_of_work() as session:
            outcome = service.receive_shopify(
                session, ctx, topic=topic, payload=payload, delivery_id=delivery, store=store
            )
        return respond(outcome)

    return await run_in_threadpool(work)


@router.post(
    "/v1/inbound/shopify/orders-paid",
    response_model=DeliveryOut,
    summary="Shopify orders/paid webhook",
    openapi_extra=_SHOPIFY_HEADERS,
    responses=replayable(DeliveryOut),
)
async def shopify_orders_paid(request: Request) -> Response:
    """Record a paid Shopify order as `order.paid` (see README "Inbound: Shopify").

    Authenticated by the `X-Shopify-Hmac-Sha256` signature, not an API key. Always 200 once
    verified and well-formed, with `status` processed, duplicate or skipped (and why), so
    Shopify does not retry what is done; a redelivery replays the first answer."""
    return await _shopify(request, shopify.ORDERS_PAID)


@router.post(
    "/v1/inbound/shopify/refunds-create",
    response_model=DeliveryOut,
    summary="Shopify refunds/create webhook",
    openapi_extra=_SHOPIFY_HEADERS,
    responses=replayable(DeliveryOut),
)
async def shopify_refunds_create(request: Request) -> Response:
    """Record a Shopify refund as `order.refunded` of the order it refunds, which takes back
    the points the refunded amount earned."""
    return await _shopify(request, shopify.REFUNDS_CREATE)


# --- track / identify ------------------------------------------------------------------------

AnyPrincipal = Annotated[Principal, Depends(get_any_principal)]


def check_browser_origin(request: Request, db: Database, principal: Principal) -> None:
    """A publishable key used from a browser (an ``Origin`` header) must allow that origin,
    else ``403 origin_not_allowed``; the answer then carries the CORS headers."""
    origin = request.headers.get("origin")
    if not principal.publishable or origin is None:
        return
    with db.unit_of_work(write=False) as session:
        origins = service.origins_of(session, principal.key_id)
    if origin.rstrip("/").lower() not in origins:
        raise Forbidden(
            f"This publishable key may not be used from {origin[:100]}: allow the origin with"
            " 'lealta apikey origin add'.",
            code="origin_not_allowed",
        )
    setattr(request.state, cors.STATE_KEY, origin)


def proven_member(request: Request, db: Database, settings: Settings, user_id: str | None) -> str:
    """The external id a publishable key may track for: proven by a member token for
    ``user_id`` or by the cockpit session (``user_id``, if sent, must be that member); else
    ``403 member_not_proven``."""
    token = request.headers.get(TOKEN_HEADER)
    if token is not None:
        if user_id is not None and token_matches(settings.member_token_secret, user_id, token):
            return user_id
        raise MemberNotProven(
            f"The {TOKEN_HEADER} header does not prove this userId.",
            code="invalid_member_token",
        )
    session = request.scope.get("session") or {}
    member_id = session.get(MEMBER_SESSION_KEY)
    generation = session.get(MEMBER_GENERATION_KEY)
    if isinstance(member_id, int) and isinstance(generation, int):
        with db.unit_of_work(write=False) as s:
            member = s.get(Member, member_id)
            external_id = (
                member.external_id
                if member is not None and member.session_generation == generation
                else None
            )
        if external_id is not None:
            if user_id is not None and user_id != external_id:
                raise MemberNotProven(
                    "A publishable key may only track for the signed-in member.",
                    code="member_mismatch",
                )
            return external_id
    raise MemberNotProven(
        "A publishable key tracks only for a signed-in member: send the cockpit session or a"
        f" member token ({TOKEN_HEADER}).",
    )


@router.post(
    "/v1/track",
    status_code=201,
    response_model=EventResult,
    summary="Track a custom event (CDP style)",
    responses={
        **replayable(EventResult),
        202: {
            "model": AnonymousTrackOut,
            "description": "Kept for a later identify (a replay says `Idempotent-Replayed`).",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when this is the stored first response, replayed.",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
    },
)
def track(
    request: Request,
    data: TrackIn,
    principal: AnyPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Record a custom event as `POST /v1/events` would (earning rules on its type apply).

    `event` names become types: "Product Reviewed" → `product_reviewed`. With only an
    `anonymousId` the event is kept (202) until `POST /v1/identify` names the member.
    Idempotent by `Idempotency-Key` or `messageId` (one is required).

    A **publishable** key may call this only for the signed-in member: the cockpit session
    cookie, or `X-Lealta-Member-Token` = hex HMAC-SHA256 of the `userId` under
    `LEALTA_MEMBER_TOKEN_SECRET`; anything else is `403 member_not_proven`."""
    db, _, settings = _state(request)
    check_browser_origin(request, db, principal)
    if principal.publishable:
        user_id = proven_member(request, db, settings, data.userId)
        data = data.model_copy(update={"userId": user_id})
    else:
        principal.require_write()
    with db.unit_of_work() as session:
        outcome = service.track(
            session, _context(request, principal.actor), data, key=idempotency_key
        )
    if outcome.status_code == 202:  # kept for an identify; a replay stays 202
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
        return JSONResponse(outcome.body, status_code=202, headers=headers)
    return respond(outcome)


@router.post(
    "/v1/identify",
    response_model=IdentifyOut,
    summary="Identify a member (CDP style)",
    responses={
        200: {
            "model": IdentifyOut,
            "description": "Done, or a replay (with `Idempotent-Replayed: true`).",
        }
    },
)
def identify(
    request: Request,
    data: IdentifyIn,
    principal: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Set profile fields and declared attributes from `traits`, enrolling the member if new
    (when implicit enrolment is on), and attach the events its `anonymousId` tracked.

    Traits: `email`, `phone`, `name` (or `firstName` + `lastName`), `birthday`, `language`,
    `timezone`, and any custom attribute the programme declares; others are ignored and
    listed in `ignored_traits`. Idempotent by `Idempotency-Key` or `messageId` (one is
    required). Server keys only."""
    db, _, _ = _state(request)
    key = check_key(idempotency_key if idempotency_key is not None else data.messageId)
    ctx = _context(request, principal.actor)
    with db.unit_of_work() as session:
        outcome = run_once(
            session,
            scope="identify",
            key=key,
            payload=data.model_dump(mode="json"),
            now=ctx.now,
            effect=lambda: service.identify(session, ctx, data),
        )
    return respond(outcome)


# --- public catalogue ------------------------------------------------------------------------


@router.get("/v1/catalogue", response_model=CatalogueOut, summary="Public rewards and tiers")
def catalogue(
    request: Request,
    principal: AnyPrincipal,
    language: Annotated[Literal["es", "en"], Query(description="Language of names.")] = "es",
) -> CatalogueOut:
    """The rewards on offer and the tiers of the programme in force: what a shop may show to
    anyone. Open to every key, publishable ones included; nothing about any member."""
    db, clock, _ = _state(request)
    check_browser_origin(request, db, principal)
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
    rewards = [
        CatalogueReward(
            id=r.id,
            type=r.type,
            name=name_in(r.name, language),
            description=name_in(r.description, language) if r.description else None,
            cost=r.cost,
            tiers=list(r.tiers) if r.tiers else None,
            available_from=r.available_from.isoformat() if r.available_from else None,
            available_until=r.available_until.isoformat() if r.available_until else None,
        )
        for r in programme.rewards
        if r.available_until is None or r.available_until > now
    ]
    levels = programme.tiers.levels if programme.tiers else []
    tiers = [
        CatalogueTier(
            id=t.id,
            name=name_in(t.name, language),
            threshold=str(t.threshold),
            multiplier=str(t.multiplier),
            benefits=t.benefits.model_dump(mode="json"),
        )
        for t in levels
    ]
    return CatalogueOut(
        programme=name_in(programme.name, language),
        currency=programme.currency,
        language=language,
        rewards=rewards,
        tiers=tiers,
        tier_basis=programme.tiers.basis if programme.tiers else None,
    )
