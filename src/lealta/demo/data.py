"""Made-up customers and a year of their orders: pure and deterministic for a given seed.

Nothing here touches the database. :func:`generate` returns member profiles and the events
in event-time order; the demo service enrols the members and feeds the events through the
same ``ingest`` as the API. Spend is spread so that every tier band of the demo programme
has members, and ``cust-0001`` (María) has exactly 3.000 € of qualifying spend, the example
used throughout the docs.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from lealta.events.schemas import EventIn
from lealta.members.schemas import ConsentIn, MemberCreate

DEFAULT_SEED = 20_260_105
DEFAULT_MEMBERS = 300
HISTORY_DAYS = 365
CENT = Decimal("0.01")

_ES_FIRST = (
    "María",
    "Lucía",
    "Carmen",
    "Sofía",
    "Elena",
    "Marta",
    "Laura",
    "Ana",
    "Isabel",
    "Paula",
    "Nuria",
    "Irene",
    "Cristina",
    "Beatriz",
    "Alba",
    "Claudia",
    "Rocío",
    "Pilar",
    "Inés",
    "Javier",
    "Pablo",
    "Alejandro",
    "Daniel",
    "Sergio",
    "Carlos",
    "Jorge",
    "Raúl",
    "Andrés",
    "Álvaro",
    "Miguel",
    "David",
    "Adrián",
    "Hugo",
    "Diego",
    "Iván",
    "Rubén",
    "Óscar",
    "Marcos",
)
_ES_LAST = (
    "García",
    "Martínez",
    "López",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Fernández",
    "Rodríguez",
    "Ruiz",
    "Díaz",
    "Moreno",
    "Muñoz",
    "Álvarez",
    "Romero",
    "Navarro",
    "Torres",
    "Domínguez",
    "Vázquez",
    "Ramos",
    "Gil",
    "Serrano",
    "Molina",
    "Castillo",
    "Ortega",
    "Rubio",
    "Marín",
    "Iglesias",
    "Núñez",
    "Medina",
    "Garrido",
    "Cortés",
    "Lozano",
    "Castro",
    "Ibáñez",
)
_EN_FIRST = (
    "Emma",
    "Olivia",
    "Charlotte",
    "Amelia",
    "Sophie",
    "Grace",
    "Chloe",
    "Hannah",
    "Lily",
    "Oliver",
    "James",
    "Harry",
    "George",
    "Jack",
    "Thomas",
    "William",
    "Noah",
    "Samuel",
    "Ethan",
)
_EN_LAST = (
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Evans",
    "Thomas",
    "Roberts",
    "Walker",
    "Wright",
    "Robinson",
    "Thompson",
    "Hughes",
    "Clarke",
    "Hall",
)
_ES_ZONES = ("Europe/Madrid",) * 9 + ("Atlantic/Canary",)
_EN_ZONES = ("Europe/London", "Europe/London", "Europe/Dublin", "Europe/Madrid")
_DOMAINS = ("example.com", "example.org", "example.net")
_CITIES = ("Valencia", "Madrid", "Barcelona", "Sevilla", "Málaga", "Alicante", "Palma")
_STORES = (
    "Valencia Colón",
    "Madrid Serrano",
    "Barcelona Gràcia",
    "Sevilla Nervión",
    "Málaga Larios",
)
_CATEGORIES = {
    "mujer": ("VES", "BLU", "FAL", "PAN"),
    "hombre": ("CAM", "PAN", "CHA", "POL"),
    "calzado": ("SAN", "ZAP", "ALP"),
    "accesorios": ("BOL", "CIN", "PAÑ", "GAF"),
    "hogar": ("TOA", "COJ", "MAN"),
}
_TAGS = ("newsletter", "instagram", "outlet", "personal-shopper", "staff", "wholesale")
_SIZES = ("XS", "S", "M", "L", "XL")

# (share of members, orders range, average order value range in euros)
_PROFILES = (
    (0.52, (1, 4), (35, 90)),
    (0.31, (4, 12), (60, 140)),
    (0.13, (10, 22), (120, 320)),
    (0.04, (20, 36), (350, 650)),
)

# María's year: six orders and one partial refund, 3.000,00 € net, mostly in the last months
# (a rate that reaches Oro, 5.000 €, in about three more months).
_MARIA_ORDERS = (
    (130, Decimal("389.90")),
    (104, Decimal("512.40")),
    (77, Decimal("645.00")),
    (51, Decimal("298.75")),
    (33, Decimal("734.20")),
    (12, Decimal("539.75")),
)
_MARIA_REFUND = (70, 2, Decimal("120.00"))  # days ago, index of the order, amount


@dataclass(frozen=True, slots=True)
class DemoEvent:
    """An event and its idempotency key."""

    key: str
    event: EventIn


@dataclass(frozen=True, slots=True)
class DemoData:
    members: list[tuple[MemberCreate, datetime]]
    """Profiles with their enrolment time."""
    events: list[DemoEvent]
    """Every event, oldest first."""


def generate(
    now: datetime, *, seed: int = DEFAULT_SEED, members: int = DEFAULT_MEMBERS
) -> DemoData:
    """The demo population as of ``now``: every event lies in the year before it."""
    rng = random.Random(seed)
    anchor = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    builder = _Builder(rng, anchor)
    builder.maria()
    for n in range(2, members + 1):
        builder.member(n)
    events = sorted(builder.events, key=lambda e: (e[0], e[1]))
    return DemoData(
        members=builder.members,
        events=[DemoEvent(key, EventIn.model_validate(raw)) for _, _, key, raw in events],
    )


class _Builder:
    def __init__(self, rng: random.Random, anchor: datetime) -> None:
        self.rng = rng
        self.anchor = anchor
        self.members: list[tuple[MemberCreate, datetime]] = []
        self.events: list[tuple[datetime, int, str, dict[str, Any]]] = []
        self._orders = 0
        self._seq = 0
        self._emails: set[str] = set()

    # --- members ---

    def maria(self) -> None:
        enrolled = self.anchor - timedelta(days=140, hours=3)
        self.members.append(
            (
                MemberCreate(
                    external_id="cust-0001",
                    name="María Fernández Ruiz",
                    email="maria.fernandez@example.com",
                    phone="+34 612 345 678",
                    birthday=date(1988, 4, 17),
                    language="es",
                    timezone="Europe/Madrid",
                    attributes={"city": "Valencia", "favourite_category": "mujer", "size": "M"},
                    tags=["newsletter", "instagram"],
                    enrolment_channel="store",
                    consents=[
                        ConsentIn(purpose="data_processing", granted=True, source="store"),
                        ConsentIn(purpose="marketing_email", granted=True, source="store"),
                    ],
                ),
                enrolled,
            )
        )
        order_ids = []
        for days_ago, total in _MARIA_ORDERS:
            at = self.anchor - timedelta(days=days_ago, hours=self.rng.randint(0, 9))
            order_ids.append(self._order("cust-0001", at, total, "mujer", "store", _STORES[0]))
        days_ago, index, amount = _MARIA_REFUND
        self._refund("cust-0001", order_ids[index], self.anchor - timedelta(days=days_ago), amount)
        self._review("cust-0001", self.anchor - timedelta(days=30), stars=5)

    def member(self, n: int) -> None:
        rng = self.rng
        spanish = rng.random() < 0.75
        first = rng.choice(_ES_FIRST if spanish else _EN_FIRST)
        last = rng.choice(_ES_LAST if spanish else _EN_LAST)
        name = f"{first} {last} {rng.choice(_ES_LAST)}" if spanish else f"{first} {last}"
        external_id = f"cust-{n:04d}"
        favourite = rng.choice(tuple(_CATEGORIES))
        channel = rng.choice(("web", "web", "store", "app"))
        enrolled = self.anchor - timedelta(
            days=HISTORY_DAYS * (1 - rng.random() ** 1.6), minutes=rng.randint(0, 600)
        )
        consents = [ConsentIn(purpose="data_processing", granted=True, source=channel)]
        if rng.random() < 0.7:
            consents.append(ConsentIn(purpose="marketing_email", granted=True, source=channel))
        if rng.random() < 0.25:
            consents.append(ConsentIn(purpose="marketing_sms", granted=True, source=channel))
        attributes: dict[str, str | int | float | bool | None] = {
            "city": rng.choice(_CITIES) if spanish else rng.choice(("London", "Dublin", "Madrid")),
            "favourite_category": favourite,
        }
        if rng.random() < 0.5:
            attributes["size"] = rng.choice(_SIZES)
        tags = sorted(set(rng.sample(_TAGS, k=rng.choice((0, 0, 1, 1, 2)))))
        birthday = None
        if rng.random() < 0.6:
            birthday = date(rng.randint(1955, 2005), rng.randint(1, 12), rng.randint(1, 28))
        self.members.append(
            (
                MemberCreate(
                    external_id=external_id,
                    name=name,
                    email=self._email(first, last),
                    birthday=birthday,
                    language="es" if spanish else "en",
                    timezone=rng.choice(_ES_ZONES if spanish else _EN_ZONES),
                    attributes=attributes,
                    tags=tags,
                    enrolment_channel=channel,
                    consents=consents,
                ),
                enrolled,
            )
        )
        self._history(external_id, enrolled, favourite, channel)

    def _email(self, first: str, last: str) -> str:
        base = f"{_ascii(first)}.{_ascii(last)}"
        email = f"{base}@{self.rng.choice(_DOMAINS)}"
        n = 1
        while email in self._emails:
            n += 1
            email = f"{base}{n}@{self.rng.choice(_DOMAINS)}"
        self._emails.add(email)
        return email

    # --- history ---

    def _history(self, customer: str, enrolled: datetime, favourite: str, channel: str) -> None:
        rng = self.rng
        roll, cumulative = rng.random(), 0.0
        profile = _PROFILES[-1]
        for candidate in _PROFILES:
            cumulative += candidate[0]
            if roll < cumulative:
                profile = candidate
                break
        _, (low, high), (aov_low, aov_high) = profile
        span = (self.anchor - enrolled).total_seconds()
        count = max(1, round(rng.randint(low, high) * max(0.35, span / (HISTORY_DAYS * 86_400))))
        aov = rng.uniform(aov_low, aov_high)
        store = rng.choice(_STORES)
        for _ in range(count):
            at = enrolled + timedelta(seconds=rng.uniform(600, span))
            target = max(9.95, rng.gauss(aov, aov * 0.35))
            category = favourite if rng.random() < 0.6 else rng.choice(tuple(_CATEGORIES))
            where = channel if rng.random() < 0.7 else rng.choice(("web", "store", "app"))
            order_total = Decimal(str(round(target, 2))).quantize(CENT)
            order_id = self._order(
                customer, at, order_total, category, where, store if where == "store" else None
            )
            returned = rng.random()
            if returned < 0.07:
                refund_at = at + timedelta(days=rng.uniform(2, 20))
                if refund_at < self.anchor:
                    share = Decimal(str(rng.choice((0.2, 0.25, 0.3, 0.4, 0.5, 0.6))))
                    self._refund(
                        customer, order_id, refund_at, (order_total * share).quantize(CENT)
                    )
            elif returned < 0.085:
                refund_at = at + timedelta(days=rng.uniform(1, 10))
                if refund_at < self.anchor:
                    self._refund(customer, order_id, refund_at, None)
        if rng.random() < 0.15:
            for _ in range(rng.randint(1, 3)):
                self._review(
                    customer,
                    enrolled + timedelta(seconds=rng.uniform(86_400, span)),
                    stars=rng.choice((3, 4, 4, 5, 5, 5)),
                )
        if rng.random() < 0.05:
            self._add(
                enrolled + timedelta(seconds=rng.uniform(3_600, span)),
                f"demo:referral:{customer}",
                {
                    "type": "referral.sent",
                    "customer_id": customer,
                    "properties": {"channel": rng.choice(("whatsapp", "email", "link"))},
                },
            )

    def _order(
        self,
        customer: str,
        at: datetime,
        total: Decimal,
        category: str,
        channel: str,
        store: str | None,
    ) -> str:
        self._orders += 1
        order_id = f"DEMO-{100_000 + self._orders}"
        order: dict[str, Any] = {
            "id": order_id,
            "total": str(total),
            "currency": "EUR",
            "channel": channel,
            "items": self._items(total, category),
        }
        if store:
            order["store"] = store
        self._add(
            at, f"demo:{order_id}", {"type": "order.paid", "customer_id": customer, "order": order}
        )
        return order_id

    def _items(self, total: Decimal, category: str) -> list[dict[str, Any]]:
        """One to three lines whose prices add up to ``total`` exactly."""
        rng = self.rng
        lines = 1 if total < 40 else rng.randint(1, 3)
        remaining = total
        items = []
        for i in range(lines):
            if i == lines - 1:
                price = remaining
            else:
                price = (remaining * Decimal(str(rng.uniform(0.25, 0.6)))).quantize(CENT)
                remaining -= price
            code = rng.choice(_CATEGORIES[category])
            items.append(
                {
                    "sku": f"MM-{_ascii(code).upper()}-{rng.randint(100, 999)}",
                    "category": category,
                    "quantity": 1,
                    "unit_price": str(price),
                }
            )
        return items

    def _refund(self, customer: str, order_id: str, at: datetime, amount: Decimal | None) -> None:
        refund: dict[str, Any] = {"order_id": order_id}
        if amount is not None:
            refund["amount"] = str(amount)
        self._add(
            at,
            f"demo:{order_id}:refund",
            {"type": "order.refunded", "customer_id": customer, "refund": refund},
        )

    def _review(self, customer: str, at: datetime, *, stars: int) -> None:
        self._seq += 1
        self._add(
            at,
            f"demo:review:{self._seq}",
            {
                "type": "review.posted",
                "customer_id": customer,
                "properties": {"stars": stars, "sku": f"MM-VES-{self.rng.randint(100, 999)}"},
            },
        )

    def _add(self, at: datetime, key: str, raw: dict[str, Any]) -> None:
        at = min(at, self.anchor)
        raw["occurred_at"] = at
        self._seq += 1
        self.events.append((at, self._seq, key, raw))


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return folded.lower().replace(" ", "")
