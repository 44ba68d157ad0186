"""(vii) Redemption: the demo programme in force, members with spendable points, and clients
redeeming a coupon reward for distinct members; afterwards every success is checked against
the member's coupon wallet and balance."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import yaml

from bench.load import LoadResult, closed_loop
from bench.server import Server
from bench.workload import Customers, auth_headers, order_paid
from lealta.demo.programme import DEMO_PROGRAMME_TEXT

REWARD_ID = "coupon-5"
EARN_CHUNK = 100  # events per POST /v1/events/batch while members earn


def demo_document(*, pending_days: int = 0) -> dict[str, Any]:
    """The demo programme as a JSON document, with order points spendable after
    ``pending_days`` (the demo waits 14 days out the return window)."""
    document: dict[str, Any] = yaml.safe_load(DEMO_PROGRAMME_TEXT)
    document["pending"] = {**document.get("pending", {}), "days": pending_days}
    return document


def reward_cost(document: dict[str, Any], reward_id: str = REWARD_ID) -> int:
    reward = next(r for r in document["rewards"] if r["id"] == reward_id)
    if reward.get("stock") is not None or reward.get("per_member_limit") is not None:
        raise RuntimeError(f"reward {reward_id} is limited; the benchmark needs unlimited stock")
    return int(reward["cost"])


def apply_programme(server: Server, document: dict[str, Any]) -> int:
    """PUT /v1/programme; returns the version now in force."""
    with httpx.Client(base_url=server.base_url, headers=auth_headers(server), timeout=60) as c:
        r = c.put("/v1/programme", content=orjson.dumps(document))
        if r.status_code != 200:
            raise RuntimeError(f"PUT /v1/programme: {r.status_code} {r.text[:300]}")
        version = int(r.json()["version"])
        current = c.get("/v1/programme").json()
    days = document["pending"]["days"]
    if current.get("version") != version or current["document"]["pending"]["days"] != days:
        raise RuntimeError(f"programme version {version} is not the one in force: {current}")
    return version


def earn(server: Server, customers: Customers, *, total: str) -> dict[str, int]:
    """One order of ``total`` EUR per customer (enrolling them), in batches; returns each
    customer's available points afterwards."""
    available: dict[str, int] = {}
    now = datetime.now(UTC)
    with httpx.Client(base_url=server.base_url, headers=auth_headers(server), timeout=300) as c:
        for start in range(0, customers.count, EARN_CHUNK):
            ids = [customers[i] for i in range(start, min(start + EARN_CHUNK, customers.count))]
            events = [
                order_paid(f"rdm-earn-{cid}", cid, f"RDM-O-{cid}", total,
                           now - timedelta(milliseconds=len(ids) - i))
                for i, cid in enumerate(ids)
            ]  # fmt: skip
            r = c.post("/v1/events/batch", content=orjson.dumps({"events": events}))
            if r.status_code != 200:
                raise RuntimeError(f"earning batch failed: {r.status_code} {r.text[:300]}")
            summary = r.json()
            if summary["processed"] != len(ids):
                bad = next(x for x in summary["results"] if x["status"] != "processed")
                raise RuntimeError(f"earning batch not fully processed: {bad}")
            for item in summary["results"]:
                result = item["result"]
                available[result["customer_id"]] = int(result["balance"]["available"])
    return available


@dataclass
class Tally:
    """What the clients saw: coupon codes per member from 201s, and every status code."""

    codes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def created(self) -> int:
        return self.statuses[201]


def redeem_load(
    server: Server, customers: Customers, tally: Tally, *, tag: str, clients: int,
    seconds: float,
) -> LoadResult:  # fmt: skip
    """``clients`` threads POST redemptions of ``REWARD_ID``. Client ``w`` takes members
    ``w, w + clients, ...`` in turn, so no two requests in flight share a member; every
    request has its own Idempotency-Key."""
    share = max(1, customers.count // clients)
    body = orjson.dumps({"reward_id": REWARD_ID})

    def prepare(worker: int, seq: int) -> tuple[str, str]:
        return customers[worker + clients * (seq % share)], f"bench-{tag}-{worker}-{seq}"

    def send(client: httpx.Client, payload: tuple[str, str]) -> httpx.Response:
        member, key = payload
        response = client.post(
            f"/v1/members/{member}/redemptions", content=body, headers={"Idempotency-Key": key}
        )
        code = (
            orjson.loads(response.content)["coupon"]["code"] if response.status_code == 201 else ""
        )
        with tally.lock:
            tally.statuses[response.status_code] += 1
            if code:
                tally.codes[member].append(code)
        return response

    return closed_loop(
        server.base_url, auth_headers(server), send, prepare,
        clients=clients, seconds=seconds, expect=frozenset({201}),
    )  # fmt: skip


def verify(
    server: Server, customers: Customers, tally: Tally, earned: dict[str, int], cost: int
) -> list[str]:
    """Every 201 gave exactly one coupon (the wallet holds exactly the codes returned) and
    took ``cost`` points once (available = earned - cost x redemptions)."""

    def one(client: httpx.Client, member: str) -> str | None:
        wallet = client.get(f"/v1/members/{member}/coupons")
        balance = client.get(f"/v1/members/{member}/balance")
        if wallet.status_code != 200 or balance.status_code != 200:
            return f"{member}: coupons {wallet.status_code}, balance {balance.status_code}"
        mine = sorted(
            c["code"] for c in wallet.json()["items"]
            if c["reward_id"] == REWARD_ID and c["source"] == "redemption"
        )  # fmt: skip
        seen = sorted(tally.codes.get(member, []))
        if mine != seen:
            return f"{member}: {len(seen)} redemptions answered 201 but {len(mine)} coupons"
        expected = earned[member] - cost * len(seen)
        got = int(balance.json()["available"])
        if got != expected:
            return f"{member}: {got} points available, expected {expected}"
        return None

    members = [customers[i] for i in range(customers.count)]
    with (
        httpx.Client(base_url=server.base_url, headers=auth_headers(server), timeout=60) as c,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        problems = [p for p in pool.map(lambda m: one(c, m), members) if p]
    return problems
