"""The shortcuts of reading an import row give exactly what the long way gives.

``lealta.imports.service._plain_event`` checks a row's cells against the schema's constraints
and builds ``EventIn`` without validating it; whenever it answers, the answer must be the very
object ``EventIn.model_validate`` gives for the same row (values, their types, the fields set),
and rows it declines go through Pydantic unchanged. Rows are generated around every bound the
fast path mirrors: lengths, amounts, moments, id characters, NUL.

``check_storable`` checks a value in the cheapest order and walks it again, in its documented
order, only to name a problem: the problem named must be the one the documented walk meets
first.
"""

from __future__ import annotations

import math
import random
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from lealta.events.schemas import ORDER_PAID, ORDER_REFUNDED
from lealta.imports import service as imports
from lealta.kit.errors import LealtaError
from lealta.kit.storable import check_storable

HEADER = [*imports.REQUIRED_COLUMNS, "type", "refund_id", "channel", "store", "email", "name"]
COLUMNS = imports._Columns.from_header(HEADER)


def _same(fast: Any, slow: Any) -> None:
    """``fast`` is ``slow``: equal values of the same types, models marked alike."""
    assert type(fast) is type(slow)
    if isinstance(slow, BaseModel):
        assert list(fast.__dict__) == list(slow.__dict__)
        assert fast.model_fields_set == slow.model_fields_set
        assert fast.__pydantic_extra__ == slow.__pydantic_extra__
        assert fast.__pydantic_private__ == slow.__pydantic_private__
        for name, value in slow.__dict__.items():
            _same(fast.__dict__[name], value)
    elif isinstance(slow, datetime):
        assert fast == slow
        assert type(fast.tzinfo) is type(slow.tzinfo)
        assert fast.utcoffset() == slow.utcoffset()
        assert fast.isoformat() == slow.isoformat()
    else:
        assert fast == slow
        assert repr(fast) == repr(slow)


def _check(cells: list[str]) -> bool:
    """The row's event (or rejection) by ``_to_event`` is Pydantic's; True if fast."""
    value = dict(zip(imports._ALL_COLUMNS, map(str.strip, COLUMNS.pick([*cells, ""])), strict=True))
    try:
        _, event = imports._to_event(COLUMNS, 2, cells)
    except LealtaError as exc:
        got: Any = (exc.code, exc.message)
    else:
        got = event
    event_type = value["type"] or ORDER_PAID
    fast = None
    if event_type in imports.SUPPORTED_TYPES and not [
        name for name in imports._REQUIRED_OF[event_type] if not value[name]
    ]:
        fast = imports._plain_event(event_type, value)
        try:
            slow: Any = imports._validated(event_type, value, None)
        except LealtaError as exc:
            assert fast is None, f"fast path accepted a row Pydantic rejects: {cells}"
            slow = (exc.code, exc.message)
        if fast is not None:
            _same(fast, slow)
            fast.model_dump(mode="json")  # serialises as a validated model does
        _same(got, slow)
    return fast is not None


def _row(
    customer_id: str = "c-1",
    order_id: str = "o-1",
    occurred_at: str = "2025-03-01T10:15:00Z",
    amount: str = "59.90",
    currency: str = "EUR",
    type_: str = "",
    channel: str = "",
    store: str = "",
    name: str = "",
) -> list[str]:
    return [
        customer_id,
        order_id,
        occurred_at,
        amount,
        currency,
        type_,
        "",
        channel,
        store,
        "",
        name,
    ]


def test_a_plain_row_takes_the_fast_path_and_equals_pydantic() -> None:
    assert _check(_row(channel="web", store="Madrid"))
    assert _check(_row(type_=ORDER_REFUNDED))
    assert _check(_row(type_=ORDER_REFUNDED, amount=""))
    assert not _check(_row(name="Ana"))  # a profile: Pydantic decides


@pytest.mark.parametrize(
    "amount",
    [
        "0", "0.0", "00", "007", "1", "59.90", "1.100000", "0.000001", "0.0000001", "1.",
        ".5", "1e3", "1E3", "-1", "+1", "-0", "1_000", "1,5", "NaN", "inf", "Infinity",
        "999999999999.999999", "999999999999.9999999", "1000000000000", "1000000000000.0",
        "99999999999999999", "\u0661\u0662", "\uff11", "1\x00", "1 000",
    ],
)  # fmt: skip
def test_amounts(amount: str) -> None:
    _check(_row(amount=amount))
    _check(_row(amount=amount, type_=ORDER_REFUNDED))


@pytest.mark.parametrize(
    "moment",
    [
        "2025-03-01T10:15:00Z", "2025-03-01T10:15:00+00:00", "2025-03-01T10:15:00-00:00",
        "2025-03-01T10:15:00.5Z", "2025-03-01T10:15:00.123456+05:30",
        "2025-03-01T10:15:00.1234567Z", "2025-03-01T10:15:00+23:59", "2025-03-01T10:15:00-23:59",
        "2025-03-01T10:15:00+24:00", "2025-03-01T10:15:00+0530", "2025-03-01T10:15:00+05",
        "2025-03-01T10:15Z", "2025-03-01T10:15:00", "2025-03-01", "2025-03-01 10:15:00Z",
        "2025-03-01t10:15:00z", "2024-02-29T23:59:59Z", "2025-02-29T10:15:00Z",
        "2025-13-01T10:15:00Z", "2025-03-01T24:00:00Z", "2025-03-01T23:59:60Z",
        "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
        "2025-W09-6T10:15:00Z", "20250301T101500Z", "1740824100", "2025-03-01T10:15:00\x00Z",
        "\u0662025-03-01T10:15:00Z",
    ],
)  # fmt: skip
def test_moments(moment: str) -> None:
    _check(_row(occurred_at=moment))


@pytest.mark.parametrize(
    ("column", "length"),
    [("customer_id", 128), ("order_id", 128), ("currency", 16), ("channel", 32), ("store", 64)],
)
def test_text_at_and_past_its_bound(column: str, length: int) -> None:
    for n in (length - 1, length, length + 1):
        fields = {column: "x" * n}
        assert _check(_row(**fields)) == (n <= length)
        if column not in ("channel", "store"):
            _check(_row(type_=ORDER_REFUNDED, **fields))


@pytest.mark.parametrize(
    "text",
    ["a/b", "a b", "a%b", "josé", "客户7", "ana+1@x.com", "shop:42", "a\x00b", "a\x01b",
     "a\u0301", "a\u200bb", "\u00a0", "a\x1cb", "ß", "Ǆ"],
)  # fmt: skip
def test_characters(text: str) -> None:
    for column in ("customer_id", "order_id", "currency", "channel", "store"):
        _check(_row(**{column: text}))
        _check(_row(**{column: f"{text}z"}))


CELL = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    st.text(alphabet="0123456789.-+eEZT:_ \x00\x01", max_size=25),
    st.sampled_from(["", "EUR", "web", "c-1", "59.90", "2025-03-01T10:15:00Z", "0"]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.tuples(CELL, CELL, CELL, CELL, CELL),
    st.sampled_from(["", ORDER_PAID, ORDER_REFUNDED]),
    st.tuples(CELL, CELL),
)
def test_any_row(required: tuple[str, ...], type_: str, optional: tuple[str, str]) -> None:
    customer_id, order_id, occurred_at, amount, currency = required
    channel, store = optional
    _check(_row(customer_id, order_id, occurred_at, amount, currency, type_, channel, store))


def _first_problem(value: Any, max_depth: int = 64) -> str | None:
    """The documented walk of ``check_storable``: depth first, children last to first."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return "the JSON is nested too deeply"
        if isinstance(item, str) and "\x00" in item:
            return "text must not contain NUL (\\u0000) characters"
        if isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite (no NaN or Infinity)"
        if isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, depth + 1))
                stack.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
    return None


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_check_storable_names_the_first_problem_in_order() -> None:
    rnd = random.Random(7)
    leaves = ["a", "b\x00", 1.0, math.nan, -math.inf, 3, None, True]

    def value(depth: int) -> Any:
        roll = rnd.random()
        if depth > 70 or roll < 0.4:
            return rnd.choice(leaves)
        size = rnd.randint(0, 3)
        if roll < 0.7:
            return {rnd.choice(["k", "k\x00", 7]): value(depth + 1) for _ in range(size)}
        children = [value(depth + 1) for _ in range(size)]
        return children if roll < 0.85 else tuple(children)

    cyclic: list[Any] = []
    cyclic.append(cyclic)
    cases = [value(0) for _ in range(3000)]
    cases += [_nested(n, leaf) for n in range(62, 67) for leaf in leaves]
    cases += [[_nested(64, 1), "a\x00"], ["a\x00", _nested(66, 1)], cyclic, {}, [], "x"]
    for case in cases:
        try:
            check_storable(case)
        except ValueError as exc:
            assert str(exc) == _first_problem(case)
        else:
            assert _first_problem(case) is None
