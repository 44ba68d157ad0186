"""The CEL result memo keyed by ``Activation.memo_key`` gives the results a fresh evaluation
of the whole activation gives, for many events against the same expressions (so that later
events hit results remembered from earlier ones)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lealta.rules.cel import CelRuntimeError, compile_expression
from lealta.rules.engine import Activation, EventFacts, Item, MemberSnapshot, activation

SOURCES = (
    "order.total >= 100.0 && items.exists(i, i.category == 'calzado')",
    "order.total",
    "order.id",
    "order.currency + '/' + order.channel + '/' + order.store",
    "has(order.total)",
    "size(order.items)",
    "order.items.exists(i, i.total > 20.0)",
    "order.total > 50.0 && order.unknown == 1",
    "size(items)",
    "items.exists(i, i.quantity == 2)",
    "items.exists(i, string(i.quantity) == '1' || string(i.quantity) == '2')",
    "items.all(i, i.category != '')",
    "items.map(i, i.unit_price).size() > 0 && order.total > 10.0",
    "size(order) == 0",
    "time.hour >= 12 && member.tier == 'oro'",
    "time.date",
    "event.properties.stars >= 4",
    "member.attributes.city == 'Madrid' || order.total < 30.0",
)

AT = datetime(2026, 11, 28, 11, 30, tzinfo=UTC)

MEMBERS = (
    MemberSnapshot(1, "m1"),
    MemberSnapshot(2, "m2", tier="oro", attributes={"city": "Madrid"}, timezone="Europe/Madrid"),
    MemberSnapshot(3, "m3", tier="oro", attributes={"city": 7}, timezone="America/Mexico_City"),
)

ITEM_SETS: tuple[tuple[Any, ...], ...] = (
    (),
    (Item("a", "calzado", 1, 5_000),),
    (Item("a", "calzado", 2, 5_000),),
    (Item("a", None, 2, 5_000),),
    (Item("a", "", 2, 5_000),),
    (Item("a", "calzado", 2.0, 5_000),),  # type: ignore[arg-type]  # a float quantity
    (Item("a", "calzado", True, 5_000),),  # a bool quantity
    (Item("a", "ropa", 1, 1_999), Item("b", "calzado", 3, 2_500)),
)


def _events() -> list[EventFacts]:
    events = []
    for n, (total, items, props) in enumerate(
        itertools.product(
            (None, 2_000, 10_000, 10_000.0, 12_345),
            ITEM_SETS,
            ({}, {"stars": 5}, {"stars": 5.0}),
        )
    ):
        events.append(
            EventFacts(
                "order.paid" if total is not None else "review.posted",
                AT + timedelta(hours=n % 3 * 5),
                props,
                event_id=f"e{n % 2}",
                order_id=None if n % 4 == 0 else f"o{n % 3}",
                order_total_minor=total,  # a float total too
                currency=None if n % 2 else "EUR",
                channel="web" if n % 5 else None,
                store="s1",
                items=items,
            )
        )
    return events


def _fresh(source: str, env: dict[str, Any]) -> Any:
    """The result of a newly compiled expression given the whole activation, no memo."""
    try:
        return ("ok", compile_expression(source)._program.execute(env))
    except Exception:
        return ("error", None)


def _memo(expr: Any, env: Any) -> Any:
    try:
        return ("ok", expr.evaluate(env))
    except CelRuntimeError:
        return ("error", None)


@pytest.mark.parametrize("source", SOURCES)
def test_memo_keyed_results_equal_fresh_evaluation(source: str) -> None:
    expr = compile_expression(source)
    events = _events()
    for _ in range(2):  # the second round answers from the memo
        for member, event in itertools.product(MEMBERS, events):
            expected = _fresh(source, activation(member, event, "EUR"))
            got = _memo(expr, Activation(member, event, "EUR"))
            assert got == expected and type(got[1]) is type(expected[1]), (member, event)
            # A plain mapping is keyed the other way, in the same memo.
            assert _memo(expr, activation(member, event, "EUR")) == got


def test_order_and_items_are_keyed_without_building_them() -> None:
    event = _events()[48]
    env = Activation(MEMBERS[0], event, "EUR")
    key = env.memo_key((("items", None), ("order", frozenset({"total"}))))
    assert key is not None
    assert env.memo_key((("i", None),)) == ()
    assert "items" not in env._values and "order" not in env._values


def test_other_currencies_are_other_keys() -> None:
    event = _events()[48]
    reads = (("order", frozenset({"total"})), ("items", None))
    eur = Activation(MEMBERS[0], event, "EUR").memo_key(reads)
    jpy = Activation(MEMBERS[0], event, "JPY").memo_key(reads)
    assert eur != jpy
    expr = compile_expression("order.total")
    assert expr.evaluate(Activation(MEMBERS[0], event, "EUR")) == 100.0
    assert expr.evaluate(Activation(MEMBERS[0], event, "JPY")) == 10_000.0
