"""Rows of a bulk operation from a CSV file (CLI, console) or an API list.

Each kind has its columns; a row that cannot be read (a bad external id, points that are not
a whole number, an unknown tier) becomes a rejected row of the operation with its line and
reason, so the per-row report lists it with the others.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from lealta.bulk.csvfile import (
    CsvRow,
    InvalidCsvHeaderError,
    check_width,
    parse,
    to_attribute,
    to_int,
    to_list,
)
from lealta.bulk.service import NewRow
from lealta.kit import ids
from lealta.kit.errors import InvalidInput, LealtaError
from lealta.programme.schema import Programme

MAX_POINTS = 10_000_000
"""The most points one row may credit or debit (a typo guard: 1e7 is far above any gift)."""
MAX_REASON = 500

COLUMNS: dict[str, tuple[str, ...]] = {
    "points": ("external_id", "points"),
    "tags": ("external_id",),
    "attributes": ("external_id",),
    "tier": ("external_id", "tier"),
}
"""Required columns per kind. Optional: ``reason`` (points, tier); ``add`` and ``remove``
(tags, several separated by ``|``); for attributes every other column is an attribute
(``attr.`` prefix optional), typed as the programme declares; an empty cell removes it."""


def external_id(value: str) -> str:
    text = unicodedata.normalize("NFC", value.strip())
    if not ids.is_valid(text):
        raise InvalidInput(f"external_id: '{value}' is not valid: {ids.RULE}.", code=ids.ERROR_CODE)
    return text


def check_points(points: int) -> int:
    if points == 0:
        raise InvalidInput("points: 0 changes nothing.", code="zero_points")
    if abs(points) > MAX_POINTS:
        raise InvalidInput(
            f"points: at most {MAX_POINTS:,} per row, credit or debit.", code="points_too_large"
        )
    return points


def reason(value: str | None) -> str | None:
    text = (value or "").strip()
    if len(text) > MAX_REASON:
        raise InvalidInput(f"reason: at most {MAX_REASON} characters.", code="reason_too_long")
    return text or None


def from_csv(data: bytes, kind: str, programme: Programme) -> list[NewRow]:
    """The rows of a bulk file of ``kind``; raises for a file that cannot be read at all."""
    header, rows = parse(data, required=COLUMNS[kind])
    build = _BUILDERS[kind]
    attribute_columns = [c for c in header if c != "external_id"] if kind == "attributes" else []
    if kind == "attributes" and not attribute_columns:
        raise InvalidCsvHeaderError(
            "An attributes file needs a column per attribute besides external_id.",
            details={"found": header},
        )
    out: list[NewRow] = []
    for row in rows:
        raw_id = row.get("external_id")
        try:
            check_width(row)
            payload = build(row, programme, attribute_columns)
            out.append(NewRow(row.line, external_id(raw_id), payload))
        except LealtaError as exc:
            out.append(NewRow(row.line, raw_id, {}, exc))
    return out


def _points(row: CsvRow, programme: Programme, columns: Sequence[str]) -> dict[str, Any]:
    payload: dict[str, Any] = {"points": check_points(to_int(row.get("points"), "points"))}
    if (text := reason(row.get("reason"))) is not None:
        payload["reason"] = text
    return payload


def _tags(row: CsvRow, programme: Programme, columns: Sequence[str]) -> dict[str, Any]:
    return tags_payload(to_list(row.get("add")), to_list(row.get("remove")))


def tags_payload(add: list[str], remove: list[str]) -> dict[str, Any]:
    if not add and not remove:
        raise InvalidInput("Name tags to add or remove.", code="no_change")
    for tag in (*add, *remove):
        if len(tag) > 64:
            raise InvalidInput(
                f"Tag '{tag[:20]}…' is longer than 64 characters.", code="invalid_tag"
            )
    clash = sorted(set(add) & set(remove))
    if clash:
        raise InvalidInput(f"Tags both added and removed: {', '.join(clash)}.", code="invalid_tag")
    return {"add": sorted(set(add)), "remove": sorted(set(remove))}


def _attributes(row: CsvRow, programme: Programme, columns: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in columns:
        name = column.removeprefix("attr.")
        values[name] = to_attribute(row.get(column), programme.attributes.get(name), column)
    return {"attributes": values}


def _tier(row: CsvRow, programme: Programme, columns: Sequence[str]) -> dict[str, Any]:
    payload: dict[str, Any] = {"tier": check_tier(programme, row.get("tier"))}
    if (text := reason(row.get("reason"))) is not None:
        payload["reason"] = text
    return payload


def check_tier(programme: Programme, tier: str) -> str:
    if programme.tier(tier) is None:
        known = [t.id for t in programme.tiers.levels] if programme.tiers else []
        raise InvalidInput(
            f"tier: '{tier}' is not a tier of the programme"
            + (f" ({', '.join(known)})." if known else " (it has no tiers)."),
            code="unknown_tier",
            details={"tier": tier, "tiers": known},
        )
    return tier


_BUILDERS: dict[str, Callable[[CsvRow, Programme, Sequence[str]], dict[str, Any]]] = {
    "points": _points,
    "tags": _tags,
    "attributes": _attributes,
    "tier": _tier,
}
