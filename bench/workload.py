"""Payloads (order.paid events) and the figures measured against a running server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from bench.load import LoadResult, RawRequest, closed_loop, raw_loop
from bench.server import Server

JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Customers:
    """``count`` external ids with a common prefix, e.g. ``c-0007``."""

    prefix: str
    count: int

    def __getitem__(self, index: int) -> str:
        return f"{self.prefix}-{index % self.count:04d}"


def _amount(a: int, b: int) -> str:
    cents = 500 + (a * 104_729 + b * 7_919) % 29_500  # 5.00 .. 299.99, spread deterministically
    return f"{cents // 100}.{cents % 100:02d}"


def order_paid(
    event_id: str, customer: str, order_id: str, total: str, at: datetime
) -> dict[str, Any]:
    """The same shape as ``tests/factories.order_paid``."""
    return {
        "id": event_id,
        "type": "order.paid",
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "order": {"id": order_id, "total": total, "currency": "EUR", "channel": "web"},
    }


def auth_headers(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}", **JSON_HEADERS}


def _post_event(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/v1/events", content=body)


def _post_batch(client: httpx.Client, body: bytes) -> httpx.Response:
    response = client.post("/v1/events/batch", content=body)
    if response.status_code == 200:
        summary = orjson.loads(response.content)
        if summary["rejected"] or summary["replayed"]:
            first = next(r for r in summary["results"] if r["status"] != "processed")
            return httpx.Response(599, text=f"batch not fully processed: {first}")
    return response


def _get(client: httpx.Client, path: str) -> httpx.Response:
    return client.get(path)


def single_event_ingest(
    server: Server, customers: Customers, *, tag: str, clients: int, seconds: float
) -> LoadResult:
    """``clients`` connections POST /v1/events, each event a new order of one of
    ``customers`` (by the lean generator, :func:`bench.load.raw_loop`)."""

    def prepare(worker: int, seq: int) -> RawRequest:
        n = seq * clients + worker
        event = order_paid(
            f"{tag}-e-{worker}-{seq}",
            customers[n],
            f"{tag}-O-{worker}-{seq}",
            _amount(worker, seq),
            datetime.now(UTC),
        )
        return "POST", "/v1/events", orjson.dumps(event)

    return raw_loop(
        server.base_url, auth_headers(server), prepare,
        clients=clients, seconds=seconds, expect=frozenset({201}),
    )  # fmt: skip


def single_event_ingest_httpx(
    server: Server, customers: Customers, *, tag: str, clients: int, seconds: float
) -> LoadResult:
    """:func:`single_event_ingest` by the thread-per-client httpx generator: what the lean one
    saves (its CPU per request is reported next to the lean one's)."""

    def prepare(worker: int, seq: int) -> bytes:
        n = seq * clients + worker
        event = order_paid(
            f"{tag}-e-{worker}-{seq}",
            customers[n],
            f"{tag}-O-{worker}-{seq}",
            _amount(worker, seq),
            datetime.now(UTC),
        )
        return orjson.dumps(event)

    return closed_loop(
        server.base_url, auth_headers(server), _post_event, prepare,
        clients=clients, seconds=seconds, expect=frozenset({201}),
    )  # fmt: skip


def batch_body(tag: str, customer_ids: list[str], batch_no: int) -> bytes:
    """One order per entry of ``customer_ids`` (a customer may appear more than once)."""
    now = datetime.now(UTC)
    size = len(customer_ids)
    events = [
        order_paid(
            f"{tag}-b{batch_no}-{i}",
            customer,
            f"{tag}-BO-{batch_no}-{i}",
            _amount(batch_no, i),
            now - timedelta(milliseconds=size - i),
        )
        for i, customer in enumerate(customer_ids)
    ]
    return orjson.dumps({"events": events})


def enrol_all(server: Server, customers: Customers, *, tag: str) -> None:
    """An order for every customer, in batches: enrols them all and warms the server up."""
    headers = auth_headers(server)
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as client:
        for start in range(0, customers.count, 500):
            ids = [customers[i] for i in range(start, min(start + 500, customers.count))]
            r = _post_batch(client, batch_body(f"{tag}-enrol", ids, start))
            if r.status_code != 200:
                raise RuntimeError(f"enrolment batch failed: {r.status_code} {r.text[:300]}")


def batch_ingest(
    server: Server, customers: Customers, *, tag: str, clients: int, size: int, seconds: float
) -> LoadResult:
    """``clients`` threads POST /v1/events/batch with ``size`` events each. Client ``w`` uses
    only customers ``w, w + clients, ...``, so concurrent batches never wait on each other's
    account locks."""
    share = max(1, customers.count // clients)

    def prepare(worker: int, seq: int) -> bytes:
        ids = [customers[worker + clients * (i % share)] for i in range(size)]
        return batch_body(f"{tag}-w{worker}", ids, seq)

    return closed_loop(
        server.base_url, auth_headers(server), _post_batch, prepare,
        clients=clients, seconds=seconds, expect=frozenset({200}),
    )  # fmt: skip


def get_load(
    server: Server, path_for: Callable[[int, int], str], *, clients: int, seconds: float
) -> LoadResult:
    """``clients`` connections GET ``path_for(client, seq)`` (by the lean generator)."""
    return raw_loop(
        server.base_url, auth_headers(server), lambda w, s: ("GET", path_for(w, s), None),
        clients=clients, seconds=seconds,
    )  # fmt: skip


def get_load_httpx(
    server: Server, path_for: Callable[[int, int], str], *, clients: int, seconds: float
) -> LoadResult:
    """:func:`get_load` by the thread-per-client httpx generator (for comparison)."""
    return closed_loop(
        server.base_url, auth_headers(server), _get, path_for, clients=clients, seconds=seconds
    )
