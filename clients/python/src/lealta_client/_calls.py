"""Every endpoint as a description of one call: method, path, query, body, how to read the
answer and how it may be repeated. Pure; the sync and async clients only send these."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from lealta_client import models as m

T = TypeVar("T")
Item = TypeVar("Item", covariant=True)

Query = Mapping[str, str | int | bool | Sequence[str]]
Params = dict[str, str | int | bool | Sequence[str]]
MemberSort = Literal[
    "enrolled_at", "external_id", "name", "points_available", "lifetime_earned", "last_order_at"
]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    params: Query | None = None
    body: Any = None
    keyed: bool = False
    """Sends an ``Idempotency-Key`` (the caller's, or a fresh uuid4 kept for every attempt)."""
    idempotency_key: str | None = None
    replay_safe: bool = True
    """Acting on it twice changes nothing more (reads, keyed writes, naturally idempotent ones)."""


class Page(Protocol[Item]):
    """A cursor-paginated answer (orders, ledger)."""

    @property
    def items(self) -> Sequence[Item]: ...

    @property
    def next_cursor(self) -> str | None: ...


def segment(value: str | int) -> str:
    """One path segment: external ids may hold ``+ @ :`` and any script, sent URL-encoded."""
    return quote(str(value), safe="")


def _dump(model: BaseModel, *, exclude_unset: bool = False) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_unset=exclude_unset)


def _event_body(event: m.Event | Mapping[str, Any]) -> dict[str, Any]:
    """An :class:`~lealta_client.models.Event` as JSON; a mapping is sent as it is (made
    JSON-able: decimals and datetimes as strings) for the server to check, so that in a batch
    a bad event is rejected alone, as the API does."""
    if isinstance(event, m.Event):
        return _dump(event, exclude_unset=True)
    body: dict[str, Any] = to_jsonable_python(dict(event))
    return body


_versions = TypeAdapter(list[m.ProgrammeVersion])
_document = TypeAdapter(dict[str, Any])


def _member(external_id: str, rest: str = "") -> str:
    return f"/v1/members/{segment(external_id)}{rest}"


def _page(limit: int | None, cursor: str | None) -> Params:
    params: Params = {}
    if limit is not None:
        params["limit"] = limit
    if cursor is not None:
        params["cursor"] = cursor
    return params


# --- events -----------------------------------------------------------------------------------


def send_event(
    event: m.Event | Mapping[str, Any], idempotency_key: str | None
) -> Call[m.EventResult]:
    return Call(
        "POST",
        "/v1/events",
        m.EventResult.model_validate,
        body=_event_body(event),
        keyed=True,
        idempotency_key=idempotency_key,
    )


def send_batch(
    events: Iterable[m.Event | Mapping[str, Any]], new_id: Callable[[], str]
) -> Call[m.BatchResult]:
    """Each event's ``id`` is its idempotency key in a batch; events without one get a fresh
    id here, once, so that a retried batch replays them instead of recording them twice."""
    bodies = []
    for event in events:
        body = _event_body(event)
        if not body.get("id"):
            body["id"] = new_id()
        bodies.append(body)
    return Call("POST", "/v1/events/batch", m.BatchResult.model_validate, body={"events": bodies})


# --- members ----------------------------------------------------------------------------------


def create_member(member: m.NewMember, idempotency_key: str | None) -> Call[m.Member]:
    return Call(
        "POST",
        "/v1/members",
        m.Member.model_validate,
        body=_dump(member, exclude_unset=True),
        keyed=True,
        idempotency_key=idempotency_key,
    )


@dataclass(frozen=True, slots=True)
class MemberFilter:
    """The filters of ``GET /v1/members``; every one given must match."""

    q: str | None = None
    tiers: Sequence[str] = ()
    tags: Sequence[str] = ()
    tag_match: Literal["any", "all"] | None = None
    attributes: Mapping[str, str | int | float | bool] | None = None
    enrolled_from: date | datetime | None = None
    enrolled_to: date | datetime | None = None
    last_order_from: date | datetime | None = None
    last_order_to: date | datetime | None = None
    points_min: int | None = None
    points_max: int | None = None
    lifetime_earned_min: int | None = None
    lifetime_earned_max: int | None = None
    sort: MemberSort | None = None
    order: Literal["asc", "desc"] | None = None

    def params(self) -> Params:
        params: Params = {}
        for name in ("q", "tag_match", "sort", "order"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        if self.tiers:
            params["tier"] = list(self.tiers)
        if self.tags:
            params["tag"] = list(self.tags)
        for name in ("enrolled_from", "enrolled_to", "last_order_from", "last_order_to"):
            moment = getattr(self, name)
            if moment is not None:
                params[name] = moment.isoformat()
        for name in ("points_min", "points_max", "lifetime_earned_min", "lifetime_earned_max"):
            number = getattr(self, name)
            if number is not None:
                params[name] = str(number)
        for key, value in (self.attributes or {}).items():
            params[f"attr.{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return params


def list_members(
    filters: MemberFilter, limit: int | None, cursor: str | None
) -> Call[m.MemberPage]:
    return Call(
        "GET",
        "/v1/members",
        m.MemberPage.model_validate,
        params={**filters.params(), **_page(limit, cursor)},
    )


def get_member(external_id: str) -> Call[m.Member]:
    return Call("GET", _member(external_id), m.Member.model_validate)


def update_member(external_id: str, update: m.MemberProfile) -> Call[m.Member]:
    """Only the fields set on ``update`` are sent: setting one to ``None`` clears it."""
    return Call(
        "PATCH",
        _member(external_id),
        m.Member.model_validate,
        body=_dump(update, exclude_unset=True),
    )


def record_consent(
    external_id: str, consent: m.Consent, idempotency_key: str | None
) -> Call[m.Member]:
    return Call(
        "POST",
        _member(external_id, "/consents"),
        m.Member.model_validate,
        body=_dump(consent),
        keyed=True,
        idempotency_key=idempotency_key,
    )


def balance(external_id: str) -> Call[m.Balance]:
    return Call("GET", _member(external_id, "/balance"), m.Balance.model_validate)


def orders(external_id: str, limit: int | None, cursor: str | None) -> Call[m.OrderPage]:
    return Call(
        "GET",
        _member(external_id, "/orders"),
        m.OrderPage.model_validate,
        params=_page(limit, cursor),
    )


# --- ledger -----------------------------------------------------------------------------------


def ledger(external_id: str, limit: int | None, cursor: str | None) -> Call[m.LedgerPage]:
    return Call(
        "GET",
        _member(external_id, "/ledger"),
        m.LedgerPage.model_validate,
        params=_page(limit, cursor),
    )


def adjust(
    external_id: str,
    points: int,
    reason: str,
    occurred_at: datetime | None,
    idempotency_key: str | None,
) -> Call[m.PointsWriteResult]:
    body: dict[str, Any] = {"points": points, "reason": reason}
    if occurred_at is not None:
        body["occurred_at"] = occurred_at.isoformat()
    return Call(
        "POST",
        _member(external_id, "/adjustments"),
        m.PointsWriteResult.model_validate,
        body=body,
        keyed=True,
        idempotency_key=idempotency_key,
    )


def spend(
    external_id: str,
    points: int,
    reason: str | None,
    order_id: str | None,
    idempotency_key: str | None,
) -> Call[m.PointsWriteResult]:
    body: dict[str, Any] = {"points": points}
    if reason is not None:
        body["reason"] = reason
    if order_id is not None:
        body["order_id"] = order_id
    return Call(
        "POST",
        _member(external_id, "/spend"),
        m.PointsWriteResult.model_validate,
        body=body,
        keyed=True,
        idempotency_key=idempotency_key,
    )


# --- tiers ------------------------------------------------------------------------------------


def tier(external_id: str) -> Call[m.TierStatus]:
    return Call("GET", _member(external_id, "/tier"), m.TierStatus.model_validate)


def benefits(external_id: str) -> Call[m.MemberBenefits]:
    return Call("GET", _member(external_id, "/benefits"), m.MemberBenefits.model_validate)


# --- rewards ----------------------------------------------------------------------------------


def catalogue(external_id: str) -> Call[m.RewardCatalogue]:
    return Call("GET", _member(external_id, "/rewards"), m.RewardCatalogue.model_validate)


def redeem_reward(
    external_id: str, reward_id: str, points: int | None, idempotency_key: str | None
) -> Call[m.Redemption]:
    body: dict[str, Any] = {"reward_id": reward_id}
    if points is not None:
        body["points"] = points
    return Call(
        "POST",
        _member(external_id, "/redemptions"),
        m.Redemption.model_validate,
        body=body,
        keyed=True,
        idempotency_key=idempotency_key,
    )


def redemptions(external_id: str, limit: int | None) -> Call[m.RedemptionPage]:
    return Call(
        "GET",
        _member(external_id, "/redemptions"),
        m.RedemptionPage.model_validate,
        params=_page(limit, None),
    )


def rollback_redemption(redemption_id: int, idempotency_key: str | None) -> Call[m.Redemption]:
    return Call(
        "POST",
        f"/v1/redemptions/{segment(redemption_id)}/rollback",
        m.Redemption.model_validate,
        keyed=True,
        idempotency_key=idempotency_key,
    )


# --- coupons ----------------------------------------------------------------------------------


def validate_coupon(code: str, cart: m.Cart, customer_id: str | None) -> Call[m.CouponValidation]:
    body: dict[str, Any] = {"code": code, "cart": _dump(cart)}
    if customer_id is not None:
        body["customer_id"] = customer_id
    return Call("POST", "/v1/coupons/validate", m.CouponValidation.model_validate, body=body)


def redeem_coupon(
    code: str,
    order_id: str,
    cart: m.Cart,
    customer_id: str | None,
    idempotency_key: str | None,
) -> Call[m.CouponRedemption]:
    body: dict[str, Any] = {"order_id": order_id, "cart": _dump(cart)}
    if customer_id is not None:
        body["customer_id"] = customer_id
    return Call(
        "POST",
        f"/v1/coupons/{segment(code)}/redeem",
        m.CouponRedemption.model_validate,
        body=body,
        keyed=True,
        idempotency_key=idempotency_key,
    )


def rollback_coupon(
    code: str, order_id: str, idempotency_key: str | None
) -> Call[m.CouponRollback]:
    return Call(
        "POST",
        f"/v1/coupons/{segment(code)}/rollback",
        m.CouponRollback.model_validate,
        body={"order_id": order_id},
        keyed=True,
        idempotency_key=idempotency_key,
    )


def get_coupon(code: str) -> Call[m.Coupon]:
    return Call("GET", f"/v1/coupons/{segment(code)}", m.Coupon.model_validate)


def wallet(external_id: str) -> Call[m.Wallet]:
    return Call("GET", _member(external_id, "/coupons"), m.Wallet.model_validate)


# --- programme --------------------------------------------------------------------------------


def get_programme() -> Call[m.Programme]:
    return Call("GET", "/v1/programme", m.Programme.model_validate)


def put_programme(
    document: Mapping[str, Any], *, dry_run: bool, activate_at: datetime | None
) -> Call[m.ApplyResult]:
    """Applying stores a new version each time and takes no idempotency key, so it is not
    replay-safe (see :mod:`lealta_client.retry`); a dry run is."""
    params: Params = {}
    if dry_run:
        params["dry_run"] = "true"
    if activate_at is not None:
        params["activate_at"] = activate_at.isoformat()
    return Call(
        "PUT",
        "/v1/programme",
        m.ApplyResult.model_validate,
        params=params,
        body=dict(document),
        replay_safe=dry_run,
    )


def programme_versions() -> Call[list[m.ProgrammeVersion]]:
    return Call("GET", "/v1/programme/versions", _versions.validate_python)


def programme_version(number: int) -> Call[m.Programme]:
    return Call("GET", f"/v1/programme/versions/{segment(number)}", m.Programme.model_validate)


def programme_schema() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/programme/schema", _document.validate_python)


# --- operations -------------------------------------------------------------------------------


def health() -> Call[m.Health]:
    return Call("GET", "/health", m.Health.model_validate)
