"""The pure scrubbing of one person's values out of stored JSON and text."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lealta.privacy.scrub import ERASED, MIN_NEEDLE, contains, needles_for, scrub, scrub_text

NEEDLES = needles_for(
    pseudonym="erased-00ff",
    external_id="cust-42",
    erased=["Ana.Lopez@Example.com", "Ana López", "+34 600 000 000", "", None, "Al"],
)


def test_values_are_replaced_in_any_case_and_the_id_becomes_the_pseudonym() -> None:
    text = "Order for ANA LÓPEZ (ana.lopez@example.com), customer CUST-42, tel +34 600 000 000"
    assert scrub_text(text, NEEDLES) == (
        f"Order for {ERASED} ({ERASED}), customer erased-00ff, tel {ERASED}"
    )


def test_short_and_empty_values_are_not_searched() -> None:
    assert "al" not in NEEDLES.replacements and "" not in NEEDLES.replacements
    assert scrub_text("Almería", NEEDLES) == "Almería"
    assert not needles_for(pseudonym="p", erased=["ab", None])
    assert scrub_text("anything", needles_for(pseudonym="p")) == "anything"


def test_personal_keys_are_dropped_whatever_they_hold_and_structure_is_kept() -> None:
    payload = {
        "customer_id": "cust-42",
        "shipping-address": {"street": "Calle Mayor 1"},
        "Phone": "612345678",
        "opted_in": True,
        "email": None,
        "items": [{"sku": "ZAP-1", "note": "gift for Ana López"}],
        "total": 12.5,
    }
    assert scrub(payload, NEEDLES) == {
        "customer_id": "erased-00ff",
        "shipping-address": ERASED,
        "Phone": ERASED,
        "opted_in": True,
        "email": None,
        "items": [{"sku": "ZAP-1", "note": f"gift for {ERASED}"}],
        "total": 12.5,
    }
    assert scrub({"cust-42": 1}, NEEDLES) == {"erased-00ff": 1}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _plant(value: Any, needle: str) -> Any:
    if isinstance(value, str):
        return f"{value}{needle}{value}"
    if isinstance(value, list):
        return [*value, needle]
    if isinstance(value, dict):
        return {**value, "planted": needle}
    return [value, needle]


@given(json_values, st.sampled_from(["ana.lopez@EXAMPLE.com", "ANA LÓPEZ", "+34 600 000 000"]))
def test_after_scrubbing_no_value_remains_and_scrubbing_again_changes_nothing(
    value: Any, needle: str
) -> None:
    planted = _plant(value, needle)
    assert contains(planted, NEEDLES)
    once = scrub(planted, NEEDLES)
    assert not contains(once, NEEDLES)
    assert scrub(once, NEEDLES) == once


@given(st.text(alphabet="xyz0123456789 .,-", max_size=60))
def test_text_without_the_values_is_untouched(text: str) -> None:
    assert len("xyz") >= MIN_NEEDLE
    assert scrub_text(text, NEEDLES) == text
