"""The asynchronous client: the same resources and calls as :class:`~lealta_client.Client`,
awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from lealta_client import _base
from lealta_client import _calls as calls
from lealta_client import models as m
from lealta_client._calls import Item, MemberFilter, Page
from lealta_client.retry import RetryPolicy

T = TypeVar("T")


class AsyncClient:
    """Asynchronous client of the Lealta API.

    ``AsyncClient("https://loyalty.example", api_key="...")``; use it as an async context manager or
    await :meth:`aclose`. Writes get an idempotency key each (a fresh uuid4 unless you pass
    ``idempotency_key=``), kept across the retries of that write. Retries follow ``retry``
    (or the default :class:`~lealta_client.retry.RetryPolicy` with ``max_retries``).
    ``http_client`` lets you bring your own ``httpx.AsyncClient`` (transport, proxies, TLS); it
    is then yours to close.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        idempotency_key_factory: Callable[[], str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = _base.settings(
            base_url,
            api_key,
            max_retries=max_retries,
            retry=retry,
            headers=headers,
            key_factory=idempotency_key_factory,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=_base.timeout_of(timeout))
        self._sleep = sleep
        self.events = Events(self)
        self.members = Members(self)
        self.ledger = Ledger(self)
        self.tiers = Tiers(self)
        self.rewards = Rewards(self)
        self.coupons = Coupons(self)
        self.programme = Programmes(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def health(self) -> m.Health:
        """``GET /health`` (no key needed)."""
        return await self._run(calls.health())

    async def _run(self, call: calls.Call[T]) -> T:
        prepared = _base.prepare(call, self._config)
        policy = self._config.retry
        retry_number = 0
        while True:
            try:
                response = await self._http.request(
                    prepared.method,
                    prepared.url,
                    params=prepared.params,
                    headers=prepared.headers,
                    content=prepared.content,
                )
            except httpx.TransportError as exc:
                wait = policy.after_error(exc, retry_number, replay_safe=prepared.replay_safe)
                if wait is None:
                    raise _base.connection_error(exc, prepared, retry_number + 1) from exc
            else:
                wait = _base.wait_after_response(response, prepared, policy, retry_number)
                if wait is None:
                    return _base.finish(call, prepared, response, retry_number + 1)
            retry_number += 1
            await self._sleep(wait)


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def _run(self, call: calls.Call[T]) -> T:
        return await self._client._run(call)


class Events(_Resource):
    async def send(
        self, event: m.Event | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> m.EventResult:
        """``POST /v1/events``. A replay (same key, or same event ``id``) returns the first
        result with ``response_info.replayed``."""
        return await self._run(calls.send_event(event, idempotency_key))

    async def send_batch(self, events: Iterable[m.Event | Mapping[str, Any]]) -> m.BatchResult:
        """``POST /v1/events/batch`` (at most 1,000). Events without an ``id`` get one."""
        return await self._run(calls.send_batch(events, self._client._config.new_key))


class Members(_Resource):
    async def create(self, member: m.NewMember, *, idempotency_key: str | None = None) -> m.Member:
        """Enrol; ``409 member_exists`` if the id is taken (unless this key is replayed)."""
        return await self._run(calls.create_member(member, idempotency_key))

    async def list(
        self,
        filters: MemberFilter | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> m.MemberPage:
        """One page of ``GET /v1/members`` matching ``filters`` (pass ``next_cursor`` back as
        ``cursor`` with the same filters)."""
        return await self._run(calls.list_members(filters or MemberFilter(), limit, cursor))

    def iter_all(
        self, filters: MemberFilter | None = None, *, page_size: int = 200
    ) -> AsyncIterator[m.MemberSummary]:
        """Every member matching ``filters``, page after page (``async for``)."""
        return _all_pages(lambda cursor: self.list(filters, limit=page_size, cursor=cursor))

    async def get(self, external_id: str) -> m.Member:
        return await self._run(calls.get_member(external_id))

    async def update(self, external_id: str, update: m.MemberProfile) -> m.Member:
        """Set the fields set on ``update``; attributes merge (``None`` removes one)."""
        return await self._run(calls.update_member(external_id, update))

    async def record_consent(
        self, external_id: str, consent: m.Consent, *, idempotency_key: str | None = None
    ) -> m.Member:
        return await self._run(calls.record_consent(external_id, consent, idempotency_key))

    async def balance(self, external_id: str) -> m.Balance:
        return await self._run(calls.balance(external_id))

    async def orders(
        self, external_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> m.OrderPage:
        """One page of orders, newest first; pass ``next_cursor`` back as ``cursor``."""
        return await self._run(calls.orders(external_id, limit, cursor))

    def iter_orders(
        self, external_id: str, *, page_size: int = 200
    ) -> AsyncIterator[m.OrderRecord]:
        """Every order, newest first, fetching page after page (``async for``)."""
        return _all_pages(lambda cursor: self.orders(external_id, limit=page_size, cursor=cursor))


class Ledger(_Resource):
    async def history(
        self, external_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> m.LedgerPage:
        """One page of ledger entries, newest first; pass ``next_cursor`` back as ``cursor``."""
        return await self._run(calls.ledger(external_id, limit, cursor))

    def iter_history(
        self, external_id: str, *, page_size: int = 200
    ) -> AsyncIterator[m.LedgerEntry]:
        """Every ledger entry, newest first, fetching page after page (``async for``)."""
        return _all_pages(lambda cursor: self.history(external_id, limit=page_size, cursor=cursor))

    async def adjust(
        self,
        external_id: str,
        points: int,
        reason: str,
        *,
        occurred_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> m.PointsWriteResult:
        """Credit (positive) or debit (negative) by hand, with a reason; audited."""
        return await self._run(
            calls.adjust(external_id, points, reason, occurred_at, idempotency_key)
        )

    async def spend(
        self,
        external_id: str,
        points: int,
        *,
        reason: str | None = None,
        order_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> m.PointsWriteResult:
        """Pay with points; ``409 insufficient_points`` if the balance cannot cover it."""
        return await self._run(calls.spend(external_id, points, reason, order_id, idempotency_key))


class Tiers(_Resource):
    async def get(self, external_id: str) -> m.TierStatus:
        """Tier, progress, amount needed and estimated date."""
        return await self._run(calls.tier(external_id))

    async def benefits(self, external_id: str) -> m.MemberBenefits:
        return await self._run(calls.benefits(external_id))


class Rewards(_Resource):
    async def catalogue(self, external_id: str) -> m.RewardCatalogue:
        """Every reward with ``redeemable`` and, when locked, why."""
        return await self._run(calls.catalogue(external_id))

    async def redeem(
        self,
        external_id: str,
        reward_id: str,
        *,
        points: int | None = None,
        idempotency_key: str | None = None,
    ) -> m.Redemption:
        return await self._run(calls.redeem_reward(external_id, reward_id, points, idempotency_key))

    async def redemptions(self, external_id: str, *, limit: int | None = None) -> m.RedemptionPage:
        return await self._run(calls.redemptions(external_id, limit))

    async def rollback(
        self, redemption_id: int, *, idempotency_key: str | None = None
    ) -> m.Redemption:
        return await self._run(calls.rollback_redemption(redemption_id, idempotency_key))


class Coupons(_Resource):
    async def validate(
        self, code: str, cart: m.Cart, *, customer_id: str | None = None
    ) -> m.CouponValidation:
        """Whether ``code`` applies to ``cart`` (``valid``, ``reason_code``), without using it."""
        return await self._run(calls.validate_coupon(code, cart, customer_id))

    async def redeem(
        self,
        code: str,
        *,
        order_id: str,
        cart: m.Cart,
        customer_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> m.CouponRedemption:
        return await self._run(
            calls.redeem_coupon(code, order_id, cart, customer_id, idempotency_key)
        )

    async def rollback(
        self, code: str, *, order_id: str, idempotency_key: str | None = None
    ) -> m.CouponRollback:
        return await self._run(calls.rollback_coupon(code, order_id, idempotency_key))

    async def get(self, code: str) -> m.Coupon:
        return await self._run(calls.get_coupon(code))

    async def wallet(self, external_id: str) -> m.Wallet:
        return await self._run(calls.wallet(external_id))


class Programmes(_Resource):
    async def get(self) -> m.Programme:
        """The programme in force."""
        return await self._run(calls.get_programme())

    async def put(
        self, document: Mapping[str, Any], *, activate_at: datetime | None = None
    ) -> m.ApplyResult:
        """Validate and store ``document`` as the next version (with its changes)."""
        return await self._run(
            calls.put_programme(document, dry_run=False, activate_at=activate_at)
        )

    async def validate(self, document: Mapping[str, Any]) -> m.ApplyResult:
        """Validate and diff only (``dry_run``); an invalid document raises ``422``."""
        return await self._run(calls.put_programme(document, dry_run=True, activate_at=None))

    async def versions(self) -> list[m.ProgrammeVersion]:
        return await self._run(calls.programme_versions())

    async def version(self, number: int) -> m.Programme:
        return await self._run(calls.programme_version(number))

    async def schema(self) -> dict[str, Any]:
        """The JSON Schema of the programme document."""
        return await self._run(calls.programme_schema())


async def _all_pages(fetch: Callable[[str | None], Awaitable[Page[Item]]]) -> AsyncIterator[Item]:
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
