"""Programmes and random member histories shared by the engine's property tests and the
differential test of the two drivers.

The programmes are the demo programme as shipped and variants that make the other branches
of the engine run within a short history: no return window and a short expiry, tiers on
points over a rolling window with entry bonuses and grace, calendar-year tiers without
expiry. They are built from the demo document, so the schema's validators check them.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from lealta.programme.schema import Programme

DEMO_FILE = Path(__file__).parents[1] / "src" / "lealta" / "demo" / "programme.yaml"
DEMO_DOCUMENT: dict[str, Any] = yaml.safe_load(DEMO_FILE.read_text())

CATEGORIES: tuple[str | None, ...] = ("calzado", "ropa", "hogar", "accesorios", None)
"""Item categories: ``calzado`` triggers the demo's shoes bonus on orders of 100 € or more."""

CUSTOM_TYPES: tuple[str, ...] = (
    "review.posted",
    "referral.converted",
    "newsletter.subscribed",
    "social.tagged",
    "survey.completed",
    "event.attended",
    "page.viewed",
)
"""Custom event types: every one but the last has a demo rule listening (some capped)."""


def _merged(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in, dictionaries recursively, lists replaced."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def variant(**changes: Any) -> Programme:
    """The demo programme with ``changes`` merged into its document, validated."""
    return Programme.model_validate(_merged(DEMO_DOCUMENT, changes))


def _points_levels() -> list[dict[str, Any]]:
    """The demo's four tiers with thresholds in points and one-off entry bonuses."""
    thresholds = (0, 300, 1500, 5000)
    bonuses = (0, 50, 150, 400)
    levels: list[dict[str, Any]] = copy.deepcopy(DEMO_DOCUMENT["tiers"]["levels"])
    for level, threshold, bonus in zip(levels, thresholds, bonuses, strict=True):
        level["threshold"] = threshold
        level["entry_points"] = bonus
    return levels


DEMO = Programme.model_validate(DEMO_DOCUMENT)
FAST = variant(pending={"days": 0}, expiry={"months": 3, "round_to": "none"})
POINTS_ROLLING = variant(
    tiers={
        "basis": "points",
        "period": "rolling",
        "rolling_months": 12,
        "grace_days": 15,
        "levels": _points_levels(),
    },
    pending={"days": 7},
    expiry={"months": 6, "round_to": "month_end"},
)
CALENDAR = variant(
    tiers={"period": "calendar_year", "grace_days": 30},
    pending={"days": 3},
    expiry={"months": None},
)

PROGRAMMES: dict[str, Programme] = {
    "demo": DEMO,
    "fast": FAST,
    "points_rolling": POINTS_ROLLING,
    "calendar": CALENDAR,
}


def capped_rules(programme: Programme) -> list[str]:
    """Ids of the rules with caps: the engine needs a counter for each."""
    return [rule.id for rule in programme.rules if rule.caps is not None]


# --- random histories of API events (the differential test) ---------------------------------

HISTORY_START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
FAR_FUTURE = datetime(2199, 1, 1, tzinfo=UTC)
"""Later than any history's end: an event dated then is ``occurred_in_future``."""


def _money(cents: int) -> str:
    return str(Decimal(cents).scaleb(-2))


def _items(rng: random.Random, total_cents: int) -> list[dict[str, Any]]:
    """One to three lines whose prices roughly share the total (rules read categories)."""
    lines = []
    count = rng.randint(1, 3)
    for n in range(count):
        line: dict[str, Any] = {
            "sku": f"SKU-{rng.randint(1, 40)}",
            "quantity": rng.randint(1, 3),
            "unit_price": _money(max(0, total_cents // count)),
        }
        category = rng.choice(CATEGORIES)
        if category is not None:
            line["category"] = category
        if n == 0 and rng.random() < 0.3:
            line["category"] = "calzado"
        lines.append(line)
    return lines


def _order_total(rng: random.Random) -> int:
    """Mostly small baskets, sometimes large ones that cross tiers and spend thresholds."""
    roll = rng.random()
    if roll < 0.05:
        return 0
    if roll < 0.75:
        return rng.randint(100, 25_000)
    if roll < 0.95:
        return rng.randint(25_000, 200_000)
    return rng.randint(200_000, 1_600_000)


def _custom_properties(rng: random.Random, event_type: str) -> dict[str, Any]:
    if event_type == "review.posted":
        return {"stars": rng.randint(1, 5), "product": f"SKU-{rng.randint(1, 40)}"}
    if rng.random() < 0.3:
        return {"note": f"n{rng.randint(1, 9)}"}
    return {}


class HistoryBuilder:
    """Builds a random history of API events (``EventIn`` documents) for a few customers.

    Events follow a clock that only moves forward, with jumps of minutes to more than a year
    so that releases, expiries and tier reviews happen; a share ``late`` of them is dated
    back up to 40 days (a shop sending late). The history holds orders, partial, full and
    excessive refunds, custom events, events that must be refused (unknown orders, another
    customer's order, a second order under a recorded id, a foreign currency, a zero refund,
    a moment in the future) and exact resends of earlier events.
    """

    def __init__(
        self, rng: random.Random, customers: int, *, start: datetime, late: float = 0.0
    ) -> None:
        self.rng = rng
        self.start = start
        self.late = late
        self.customers = [f"cust-{n:03d}" for n in range(1, customers + 1)]
        self.clock = start
        self.events: list[dict[str, Any]] = []
        self.orders: dict[str, tuple[str, int]] = {}  # order id -> customer, total in cents
        self.seen: set[str] = set()
        self.serial = 0

    def _id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial:05d}"

    def _base(self, event_type: str, customer: str) -> dict[str, Any]:
        at = self.clock
        if self.late and self.rng.random() < self.late:
            at = max(self.start, at - timedelta(days=self.rng.randint(0, 40), minutes=1))
        event: dict[str, Any] = {
            "id": self._id("evt"),
            "type": event_type,
            "customer_id": customer,
            "occurred_at": at.isoformat(),
        }
        if customer not in self.seen:
            self.seen.add(customer)
            if self.rng.random() < 0.5:
                event["customer"] = {
                    "name": f"Customer {customer}",
                    "email": f"{customer}@example.com",
                    "language": self.rng.choice(["es", "en"]),
                    "timezone": self.rng.choice(["Europe/Madrid", "UTC", "America/Bogota"]),
                    "tags": self.rng.sample(["vip", "web", "store"], k=self.rng.randint(0, 2)),
                }
        return event

    def tick(self) -> None:
        roll = self.rng.random()
        if roll < 0.55:
            self.clock += timedelta(minutes=self.rng.randint(0, 600))
        elif roll < 0.9:
            self.clock += timedelta(days=self.rng.randint(1, 40), minutes=self.rng.randint(0, 59))
        else:
            self.clock += timedelta(days=self.rng.randint(60, 420))

    def order(self, customer: str) -> dict[str, Any]:
        total = _order_total(self.rng)
        event = self._base("order.paid", customer)
        order_id = self._id("ORD")
        event["order"] = {
            "id": order_id,
            "total": _money(total),
            "currency": "EUR",
            "items": _items(self.rng, total),
            "channel": self.rng.choice(["web", "store", "app"]),
        }
        self.orders[order_id] = (customer, total)
        return event

    def refund(self) -> dict[str, Any] | None:
        if not self.orders:
            return None
        order_id = self.rng.choice(sorted(self.orders))
        customer, total = self.orders[order_id]
        event = self._base("order.refunded", customer)
        refund: dict[str, Any] = {"order_id": order_id}
        roll = self.rng.random()
        if roll < 0.45 and total > 1:
            refund["amount"] = _money(self.rng.randint(1, max(1, total // 2)))
        elif roll < 0.6:
            refund["amount"] = _money(total + self.rng.randint(1, 5_000))  # over-refund
        elif roll < 0.8:
            refund["amount"] = _money(total)
        event["refund"] = refund  # no amount: whatever is left
        return event

    def custom(self, customer: str) -> dict[str, Any]:
        event_type = self.rng.choice(CUSTOM_TYPES)
        event = self._base(event_type, customer)
        event["properties"] = _custom_properties(self.rng, event_type)
        return event

    def invalid(self, customer: str) -> dict[str, Any]:
        """An event the spine must refuse (and leave no trace of)."""
        kind = self.rng.choice(
            ["unknown_order", "order_again", "currency", "zero", "future", "foreign_refund"]
        )
        if kind == "order_again" and self.orders:
            event = self._base("order.paid", customer)
            order_id = self.rng.choice(sorted(self.orders))
            event["order"] = {"id": order_id, "total": "10.00", "currency": "EUR"}
            return event
        if kind == "currency":
            event = self.order(customer)
            event["order"]["currency"] = "USD"
            del self.orders[event["order"]["id"]]
            return event
        if kind == "zero" and self.orders:
            order_id = self.rng.choice(sorted(self.orders))
            event = self._base("order.refunded", self.orders[order_id][0])
            event["refund"] = {"order_id": order_id, "amount": "0"}
            return event
        if kind == "foreign_refund" and self.orders:
            order_id = self.rng.choice(sorted(self.orders))
            others = [c for c in self.customers if c != self.orders[order_id][0]]
            event = self._base("order.refunded", self.rng.choice(others))
            event["refund"] = {"order_id": order_id}
            return event
        if kind == "future":
            event = self.custom(customer)
            event["occurred_at"] = FAR_FUTURE.isoformat()
            return event
        event = self._base("order.refunded", customer)
        event["refund"] = {"order_id": self._id("NOPE")}
        return event

    def build(self, length: int) -> list[dict[str, Any]]:
        for _ in range(length):
            self.tick()
            customer = self.rng.choice(self.customers)
            roll = self.rng.random()
            event: dict[str, Any] | None
            if roll < 0.45:
                event = self.order(customer)
            elif roll < 0.65:
                event = self.refund()
            elif roll < 0.88:
                event = self.custom(customer)
            elif roll < 0.96:
                event = self.invalid(customer)
            else:
                event = copy.deepcopy(self.rng.choice(self.events)) if self.events else None
            if event is not None:
                self.events.append(event)
        # Every history resends an earlier event at least once, at its end.
        self.events.append(copy.deepcopy(self.rng.choice(self.events)))
        return self.events


def random_history(
    seed: int, *, customers: int = 4, length: int = 80, late: float = 0.0
) -> tuple[list[dict[str, Any]], datetime]:
    """A reproducible random history (see :class:`HistoryBuilder`) and its last moment;
    ``late`` is the share of events sent late (dated up to 40 days before the clock)."""
    builder = HistoryBuilder(random.Random(seed), customers, start=HISTORY_START, late=late)
    return builder.build(length), builder.clock
