"""A generated order history for ``lealta import orders``: N orders, N/5 customers, ~5% refunds.

The rows follow the CSV format of :mod:`lealta.imports.service` (``customer_id, order_id,
occurred_at, amount, currency, type, refund_id, channel``), oldest first, as a shop's export
would be. Each refunded order gets one refund, full or partial, 1 to 30 days after it.

The generator streams: it keeps only the refunds not yet due (a heap about 30 days of refunds
deep), never the orders, so a million-order file costs the same memory as a thousand-order
one. Everything is drawn from one seeded ``random.Random``, so a seed gives the same file.

``python -m bench.orders --orders 1000000 --out orders.csv`` writes a file on its own.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

COLUMNS = ("customer_id", "order_id", "occurred_at", "amount", "currency", "type", "refund_id",
           "channel")  # fmt: skip
CHANNELS = ("web", "web", "web", "store", "app")
REFUND_SHARE = 0.05
FULL_REFUND_SHARE = 0.5
HISTORY_DAYS = 3 * 365
MAX_REFUND_DELAY_DAYS = 30


@dataclass
class HistoryStats:
    """What a generated file holds, to check the import against."""

    orders: int = 0
    customers: int = 0
    full_refunds: int = 0
    partial_refunds: int = 0

    @property
    def refunds(self) -> int:
        return self.full_refunds + self.partial_refunds

    @property
    def rows(self) -> int:
        return self.orders + self.refunds


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def history(
    orders: int,
    *,
    customers: int | None = None,
    prefix: str = "H",
    seed: int = 8,
    end: datetime | None = None,
    stats: HistoryStats | None = None,
) -> Iterator[tuple[str, ...]]:
    """Yield the CSV rows (without header) of ``orders`` orders and their refunds, oldest first.

    Orders are spread evenly over the ``HISTORY_DAYS`` that end ``MAX_REFUND_DELAY_DAYS + 1``
    days before ``end`` (default now), so the last refund still lies in the past and every
    moment is inside the API's accepted window. ``stats`` (if given) is filled in as rows go.
    """
    rng = random.Random(seed)
    stats = stats if stats is not None else HistoryStats()
    stats.customers = customers if customers is not None else max(1, orders // 5)
    end = (end or datetime.now(UTC)).replace(microsecond=0)
    last = end - timedelta(days=MAX_REFUND_DELAY_DAYS + 1)
    span = int(timedelta(days=HISTORY_DAYS).total_seconds())
    start = last - timedelta(seconds=span)
    due: list[tuple[datetime, int, tuple[str, ...]]] = []  # refunds waiting for their moment
    for i in range(orders):
        at = start + timedelta(seconds=span * i // max(1, orders))
        while due and due[0][0] <= at:
            yield heapq.heappop(due)[2]
        customer = f"{prefix}C{rng.randrange(stats.customers):07d}"
        order_id = f"{prefix}O{i:08d}"
        cents = rng.randint(500, 30_000)
        stats.orders += 1
        yield (customer, order_id, _iso(at), _money(cents), "EUR", "order.paid", "",
               rng.choice(CHANNELS))  # fmt: skip
        if rng.random() < REFUND_SHARE:
            when = at + timedelta(seconds=rng.randint(86_400, MAX_REFUND_DELAY_DAYS * 86_400))
            if rng.random() < FULL_REFUND_SHARE:
                refunded, stats.full_refunds = cents, stats.full_refunds + 1
            else:
                refunded = rng.randint(cents // 10, cents * 9 // 10)
                stats.partial_refunds += 1
            row = (customer, order_id, _iso(when), _money(refunded), "EUR", "order.refunded",
                   f"{prefix}R{i:08d}", "")  # fmt: skip
            heapq.heappush(due, (when, i, row))
    while due:
        yield heapq.heappop(due)[2]


def write_history(
    path: Path,
    orders: int,
    *,
    customers: int | None = None,
    prefix: str = "H",
    seed: int = 8,
    end: datetime | None = None,
) -> HistoryStats:
    """Write the header and :func:`history` rows to ``path``; return what it holds."""
    stats = HistoryStats()
    rows = history(orders, customers=customers, prefix=prefix, seed=seed, end=end, stats=stats)
    with path.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(COLUMNS)
        out.writerows(rows)
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.orders", description=__doc__.split("\n")[0])
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--customers", type=int, default=None, help="default: orders / 5")
    p.add_argument("--prefix", default="H", help="starts every customer, order and refund id")
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    stats = write_history(
        args.out, args.orders, customers=args.customers, prefix=args.prefix, seed=args.seed
    )
    print(
        f"{args.out}: {stats.orders:,} orders, {stats.customers:,} customers,"
        f" {stats.full_refunds:,} full and {stats.partial_refunds:,} partial refunds"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
