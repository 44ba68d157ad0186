"""The shortcuts that make the import fast give the same answers as the long way round.

- CEL expressions get only the variables (and fields) they read: the result must be what the
  interpreter gives with the whole activation, errors included.
- The engine's cheap copies (figures, lots, qualifying history, the outcome's state) must keep
  every field, and the expiry date computed once per month must equal the full calculation.
- The import runs with the garbage collector tuned, and puts its settings back.
"""

from __future__ import annotations

import gc
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cel
import msgspec
import pytest

from lealta.engine import core
from lealta.engine.state import Contribution, Figures, Lot, MemberState, Qualifying
from lealta.imports.service import import_orders
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.kit.periods import add_months, end_of
from lealta.programme import service as programmes
from lealta.rules.cel import compile_expression, field_reads
from lealta.rules.engine import Activation, EventFacts, Item, MemberSnapshot, activation
from tests.test_rules_engine import DEMO

AT = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)

MEMBER = MemberSnapshot(
    member_id=7,
    external_id="maria",
    tier="plata",
    attributes={"city": "Madrid", "vip": True, "visits": 3},
    tags=("newsletter", "vip"),
    qualifying_spend_minor=123_456,
    orders_count=4,
    timezone="Europe/Madrid",
)
ORDER = EventFacts(
    event_type="order.paid",
    occurred_at=AT,
    properties={"coupon": "BF", "stars": 4},
    event_id="evt-1",
    order_id="O-1",
    order_total_minor=15_990,
    currency="EUR",
    channel="web",
    store="MAD-1",
    items=(Item("ZAP-1", "calzado", 1, 9_990), Item("CAM-2", None, 2, 3_000)),
)
CUSTOM = EventFacts(event_type="review.posted", occurred_at=AT, properties={"stars": 5})

EXPRESSIONS = [
    "order.total >= 100.0 && items.exists(i, i.category == 'calzado')",
    "order.total >= 100.0 && order.channel == 'web'",
    "has(order.store) && order.store == 'MAD-1'",
    "has(order.nothing)",
    "order.totl > 1.0",  # a typo: an error either way
    "size(order) == 6",
    "'total' in order",
    "order['total'] > 100.0",
    "order.items.exists(i, i.sku == 'ZAP-1')",
    "order.id.startsWith('O-')",
    "items.map(i, i.total).exists(x, x > 50.0)",
    "items.exists(order, order.sku == 'CAM-2') && order.total > 1.0",  # shadowed name
    "member.tier == 'plata' && 'vip' in member.tags",
    "member.attributes.city == 'Madrid' && member.attributes.visits > 2",
    "member.qualifying_spend > 1000.0 || member.orders_count > 10",
    "has(event.properties.stars) && event.properties.stars >= 4",
    "event.type == 'order.paid' && event.id == 'evt-1'",
    "time.weekday == 5 && time.hour >= 13",  # local time in Madrid
    "time.timestamp > timestamp('2026-11-27T00:00:00Z')",
    "time.date == '2026-11-28'",
    "\"order.total\" == 'order.total' && order.currency == 'EUR'",  # names inside strings
    "order.total > 1.0 // order.channel in a comment\n && order.currency == 'EUR'",
    "order.total > 1.0 ? order.store : order.channel",
    "member.tier == 'oro' || member == member",
    "r'order.x' == 'order.x' && order.total > 0.0",  # a raw string: nothing pruned
    "unknown.field == 1",
    "1 + 1 == 2",
]


def _plain(activation_: dict[str, Any], source: str) -> Any:
    """What the interpreter answers given the whole activation (the reference)."""
    try:
        return ("value", cel.compile(source).execute(dict(activation_)))
    except Exception:
        return ("error", None)


def _pruned(activation_: Any, source: str) -> Any:
    expr = compile_expression(source)
    try:
        return ("value", expr.evaluate(activation_))
    except ValueError:
        return ("error", None)


@pytest.mark.parametrize("source", EXPRESSIONS)
@pytest.mark.parametrize("facts", [ORDER, CUSTOM], ids=["order", "custom"])
def test_an_expression_given_only_what_it_reads_answers_the_same(
    source: str, facts: EventFacts
) -> None:
    full = activation(MEMBER, facts, "EUR")
    assert _pruned(Activation(MEMBER, facts, "EUR"), source) == _plain(full, source)
    assert _pruned(full, source) == _plain(full, source)


def test_the_lazy_activation_holds_what_activation_returns() -> None:
    full = activation(MEMBER, ORDER, "EUR")
    lazy = Activation(MEMBER, ORDER, "EUR")
    assert {name: lazy[name] for name in lazy} == full
    assert set(full) == {"event", "order", "items", "member", "time"}
    assert full["order"]["items"] is full["items"]
    assert full["time"]["hour"] == 13  # 12:30 UTC is 13:30 in Madrid


def test_only_named_fields_of_a_variable_read_by_field_are_bound() -> None:
    expr = compile_expression("order.total >= 100.0 && items.exists(i, i.category == 'x')")
    bound = expr.bindings(Activation(MEMBER, ORDER, "EUR"))
    assert set(bound) == {"order", "items"}
    assert bound["order"] == {"total": 159.9}
    assert len(bound["items"]) == 2  # items is ranged over: whole


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("order.total > 1.0 && order.store == 'x'", {"order": {"total", "store"}}),
        ("order.total > 1.0 && size(order) > 1", {}),
        ("order.id.size() > 1", {"order": {"id"}}),
        ("order.size() > 1", {}),
        ("x.order > 1 && order.total > 1.0", {"x": {"order"}, "order": {"total"}}),
        ("'order.total' == order.currency", {"order": {"currency"}}),
        ("order.total > 1.0 // order in a comment", {"order": {"total"}}),
        ("order.total > 1.0 && 'a\\'b' == 'c'", {}),  # an escape: nothing pruned
        ("order . total > 1.0", {"order": {"total"}}),
        ("(order).total > 1.0", {}),
    ],
)
def test_field_reads(source: str, expected: dict[str, set[str]]) -> None:
    names = sorted({"order", "x"} & set(cel.compile(source).variables()))
    assert field_reads(source, names) == {k: frozenset(v) for k, v in expected.items()}


def _distinct(cls: type[Any]) -> Any:
    """An instance whose every field holds a value of its own."""
    values: dict[str, Any] = {}
    for n, f in enumerate(msgspec.structs.fields(cls)):
        kind = str(f.type)
        if "datetime" in kind:
            values[f.name] = AT + timedelta(minutes=n)
        elif "bool" in kind:
            values[f.name] = bool(n % 2)
        elif "str" in kind:
            values[f.name] = f"v{n}"
        elif "tuple" in kind:
            values[f.name] = (Contribution(AT, n),)
        else:
            values[f.name] = 100 + n
    return cls(**values)


def test_cheap_copies_keep_every_field() -> None:
    fig = _distinct(Figures)
    assert msgspec.structs.asdict(fig.copy()) == msgspec.structs.asdict(fig)
    assert fig.copy() is not fig
    lot = _distinct(Lot)
    assert lot.with_remaining(3) == msgspec.structs.replace(lot, remaining=3)
    assert lot.released() == msgspec.structs.replace(lot, pending=False)
    q = _distinct(Qualifying)
    recent = (Contribution(AT, 5, 9),)
    assert q.with_recent(recent) == msgspec.structs.replace(q, recent=recent)


def test_the_outcome_names_every_field_of_the_member_state() -> None:
    # _Work.outcome builds the new MemberState field by field: a new field needs adding there.
    assert [f.name for f in msgspec.structs.fields(MemberState)] == [
        "member_id",
        "profile",
        "figures",
        "lots",
        "lots_complete",
        "orders",
        "counters",
        "qualifying",
        "tier_entries_paid",
        "next_ref",
    ]


@pytest.mark.parametrize("round_to", ["none", "month_end", "quarter_end", "year_end"])
@pytest.mark.parametrize("months", [1, 6, 12, 25])
def test_expiry_once_per_month_equals_the_full_calculation(round_to: str, months: int) -> None:
    programme = DEMO.model_copy(
        update={"expiry": DEMO.expiry.model_copy(update={"months": months, "round_to": round_to})}
    )
    rng = random.Random(months)
    zones = [
        UTC,
        timezone(timedelta(0)),
        timezone(timedelta(hours=5, minutes=30)),
        timezone(timedelta(hours=-3)),
        ZoneInfo("Europe/Madrid"),
        ZoneInfo("Europe/London"),
    ]
    for _ in range(400):
        at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(3 * 365 * 86_400))
        at = at.astimezone(rng.choice(zones))
        expected = end_of(add_months(at, months), round_to)  # type: ignore[arg-type]
        assert core.expiry_for(programme, at) == expected


def test_the_import_puts_the_collector_back(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "customer_id,order_id,occurred_at,amount,currency\n"
        f"c1,o1,{(clock.now() - timedelta(days=3)).isoformat()},12.50,EUR\n"
    )
    before = gc.get_threshold()
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session)
    report = import_orders(db, path, programme=programme, now=clock.now(), actor="test")
    assert report.imported == 1
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
