from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic_core import PydanticCustomError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from lealta.apikeys.deps import Api, ApiReader, Reader, Writer, get_api_reader
from lealta.kit import ids
from lealta.kit.db import Database
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    FastLane,
    IdempotencyKey,
    replayable,
    respond,
    run_blocking,
)
from lealta.kit.idempotency import run_maybe_once
from lealta.kit.ids import ExternalId
from lealta.kit.money import from_minor
from lealta.kit.pagination import newest_first
from lealta.members import attributes, listing, service
from lealta.members.schemas import (
    BalanceOut,
    ConsentIn,
    MemberCreate,
    MemberListItem,
    MemberOut,
    MemberPage,
    MemberUpdate,
)
from lealta.models import Order, OrderItem
from lealta.programme import service as programmes

router = APIRouter(prefix="/v1/members", tags=["members"], responses=ERROR_RESPONSES)


@router.post(
    "",
    status_code=201,
    response_model=MemberOut,
    summary="Enrol a member",
    responses=replayable(MemberOut),
)
def create_member(
    data: MemberCreate,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Enrol explicitly. `409 member_exists` if the external id is taken, unless the same
    `Idempotency-Key` is replayed, which returns the first response."""
    with db.unit_of_work() as session:
        now = clock.now()
        attributes.check(programmes.current(session, now=now), data.attributes)

        def effect() -> tuple[int, dict[str, Any]]:
            member = service.create(session, data, now=now)
            return 201, service.to_out(session, member).model_dump(mode="json")

        outcome = run_maybe_once(
            session,
            scope="member.create",
            key=idempotency_key,
            payload=data.model_dump(mode="json"),
            now=now,
            effect=effect,
        )
    return respond(outcome)


_Text = Annotated[str | None, Query(max_length=1000)]


@router.get("", response_model=MemberPage, summary="List members")
async def list_members(
    request: Request,
    api: ApiReader,
    q: Annotated[
        str | None,
        Query(
            description="Text in the external id, email or name (any case; on a PostgreSQL"
            " without pg_trgm, their beginning)."
        ),
    ] = None,
    tier: Annotated[
        list[str] | None, Query(description="Tier id; repeat or comma-separate for several.")
    ] = None,
    tag: Annotated[list[str] | None, Query(description="Tag; repeat for several.")] = None,
    segment: Annotated[
        list[str] | None,
        Query(description="Segment key; members in any of them (repeat for several)."),
    ] = None,
    tag_match: Annotated[
        str | None, Query(description="`any` (default) or `all` of the tags given.")
    ] = None,
    enrolled_from: Annotated[
        str | None, Query(description="Enrolled at or after: a date (UTC day) or ISO time.")
    ] = None,
    enrolled_to: Annotated[
        str | None, Query(description="Enrolled at or before (a date: up to its end).")
    ] = None,
    last_order_from: _Text = None,
    last_order_to: _Text = None,
    points_min: Annotated[str | None, Query(description="Points available, at least.")] = None,
    points_max: _Text = None,
    lifetime_earned_min: _Text = None,
    lifetime_earned_max: _Text = None,
    sort: Annotated[
        str | None, Query(description=f"One of {', '.join(listing.SORTS)}; default enrolled_at.")
    ] = None,
    order: Annotated[str | None, Query(description="`asc` or `desc` (default).")] = None,
    limit: Annotated[
        str | None, Query(description=f"1-{listing.MAX_LIMIT}, default {listing.DEFAULT_LIMIT}.")
    ] = None,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page.", max_length=2000)
    ] = None,
) -> MemberPage:
    """Members matching every filter given, one page at a time (keyset pagination: no member
    is repeated or skipped while paging). Filter on a custom attribute the programme declares
    with `attr.<name>=<value>` (equality, typed as declared: `attr.vip=true`,
    `attr.kids=2`). Empty (`name`, `last_order_at`) sort last ascending and first
    descending. A bad filter is `422` with a code (`invalid_filter`, `unknown_filter`,
    `unknown_tier`, `unknown_attribute`, `invalid_attribute`, `invalid_cursor`) and
    `details.param`."""
    params = request.query_params.multi_items()
    return await run_in_threadpool(
        _list_members, api.db, api.settings.secret_key, params, api.clock.now()
    )


def _list_members(
    db: Database, secret: str, params: list[tuple[str, str]], now: datetime
) -> MemberPage:
    with db.unit_of_work(write=False, autocommit=True) as session:
        programme = programmes.current(session, now=now)
        query = listing.parse(params, programme=programme, secret=secret)
        result = listing.page(session, query, secret=secret)
    return MemberPage(
        items=[
            MemberListItem(
                external_id=r.external_id,
                name=r.name,
                email=r.email,
                phone=r.phone,
                tier=r.tier,
                tags=r.tags,
                attributes=r.attributes,
                points_available=r.points_available,
                points_pending=r.points_pending,
                lifetime_earned=r.lifetime_earned,
                orders_count=r.orders_count,
                last_order_at=r.last_order_at,
                enrolled_at=r.enrolled_at,
            )
            for r in result.items
        ],
        next_cursor=result.next_cursor,
    )


@router.get("/{external_id}", response_model=MemberOut, summary="Get a member")
def get_member(external_id: ExternalId, principal: Reader, db: DbDep) -> MemberOut:
    with db.unit_of_work(write=False, autocommit=True) as session:
        return service.to_out(session, service.get(session, external_id))


@router.patch("/{external_id}", response_model=MemberOut, summary="Update a member")
def update_member(
    external_id: ExternalId,
    data: MemberUpdate,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> MemberOut:
    """Set the fields sent; attributes are merged (send `null` to remove one). Naturally
    idempotent: repeating the same update gives the same member."""
    with db.unit_of_work() as session:
        attributes.check(programmes.current(session, now=clock.now()), data.attributes)
        member = service.update(session, service.get(session, external_id), data, now=clock.now())
        return service.to_out(session, member)


@router.post(
    "/{external_id}/consents",
    response_model=MemberOut,
    summary="Record consent",
    responses=replayable(MemberOut),
)
def record_consent(
    external_id: ExternalId,
    data: ConsentIn,
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Append a consent decision (what, when, source); the latest per purpose is in force.
    With an `Idempotency-Key`, a replay records nothing more."""
    with db.unit_of_work() as session:
        now = clock.now()
        member = service.get(session, external_id)

        def effect() -> tuple[int, dict[str, Any]]:
            service.record_consent(session, member, data, now=now)
            return 200, service.to_out(session, member).model_dump(mode="json")

        outcome = run_maybe_once(
            session,
            scope=f"consent:{external_id}",
            key=idempotency_key,
            payload=data.model_dump(mode="json"),
            now=now,
            effect=effect,
        )
    return respond(outcome)


@router.get("/{external_id}/balance", response_model=BalanceOut, summary="Points balance")
async def get_balance(external_id: ExternalId, api: ApiReader) -> Response:
    """Available, pending, lifetime figures, and what expires soon (with the next date)."""
    # Served by ``balance_lane`` (below); FastAPI sees the requests the lane declines (an
    # invalid id, another method) and documents the endpoint.
    return await _balance_response(api, external_id)


async def _balance_response(api: Api, external_id: str) -> Response:
    """The answer of the balance read, serialised once from our own model (FastAPI would
    validate it again against ``response_model`` first): on the event loop where it can
    (``service.read_balance_hot``), else through a thread."""
    now = api.clock.now()
    out = await service.read_balance_hot(
        api.db, external_id, now=now, programme_at=datetime.now(UTC)
    )
    if out is not None:
        body = out.__pydantic_serializer__.to_json(out)
    else:
        body = await run_blocking(_balance, api.db, external_id, now)
    return Response(body, media_type="application/json")


def _balance(db: Database, external_id: str, now: datetime) -> bytes:
    """One Core statement, no transaction (see ``service.read_balance``)."""
    with db.unit_of_work(write=False, autocommit=True) as session:
        out = service.read_balance(session, external_id, now=now, programme_at=datetime.now(UTC))
    return out.__pydantic_serializer__.to_json(out)


def _balance_id(params: dict[str, str]) -> dict[str, Any] | None:
    """The lane's arguments: the external id as ``ExternalId`` checks it, or None (invalid:
    FastAPI answers the ``422``)."""
    try:
        return {"external_id": ids.check(params["external_id"])}
    except PydanticCustomError:
        return None


async def _balance_answer(request: Request) -> Response:
    return await _balance_response(
        await get_api_reader(request), request.path_params["external_id"]
    )


balance_lane = FastLane(
    next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is get_balance),
    _balance_answer,
    _balance_id,
)
"""``GET /v1/members/{external_id}/balance`` without FastAPI's routing, dependency and
response-model work (see ``FastLane``); ``create_app`` puts it ahead of the routers."""


class OrderItemOut(BaseModel):
    sku: str
    category: str | None
    quantity: int
    unit_price: str


class OrderOut(BaseModel):
    order_id: str
    total: str
    refunded: str
    currency: str
    channel: str | None
    store: str | None
    status: str
    points_earned: int
    points_reversed: int
    occurred_at: str
    items: list[OrderItemOut]


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


@router.get("/{external_id}/orders", response_model=OrderPage, summary="Order history")
def list_orders(
    external_id: ExternalId,
    principal: Reader,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderPage:
    """Newest first; pass `next_cursor` back as `cursor` for the next page."""
    with db.unit_of_work(write=False, autocommit=True) as session:
        member = service.get(session, external_id)
        orders, next_cursor = newest_first(
            session,
            select(Order).where(Order.member_id == member.id),
            Order,
            limit=limit,
            cursor=cursor,
        )
        items: dict[int, list[OrderItemOut]] = {o.id: [] for o in orders}
        if orders:
            for item in session.scalars(
                select(OrderItem).where(OrderItem.order_id.in_(items)).order_by(OrderItem.id)
            ):
                items[item.order_id].append(
                    OrderItemOut(
                        sku=item.sku,
                        category=item.category,
                        quantity=item.quantity,
                        unit_price=str(from_minor(item.unit_price_minor, orders[0].currency)),
                    )
                )
        return OrderPage(
            items=[
                OrderOut(
                    order_id=o.external_id,
                    total=str(from_minor(o.total_minor, o.currency)),
                    refunded=str(from_minor(o.refunded_minor, o.currency)),
                    currency=o.currency,
                    channel=o.channel,
                    store=o.store,
                    status=o.status,
                    points_earned=o.points_earned,
                    points_reversed=o.points_reversed,
                    occurred_at=o.occurred_at.isoformat(),
                    items=items[o.id],
                )
                for o in orders
            ],
            next_cursor=next_cursor,
        )
