"""Reading the CSV files of bulk operations and migrations: header, rows, typed cells.

Files are UTF-8 (a BOM is allowed) with a header row (names case-insensitive, any order);
blank lines are skipped and each row keeps the line it starts on, so reports can point at it.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from lealta.kit.errors import InvalidInput, LealtaError


class InvalidCsvHeaderError(LealtaError):
    code = "invalid_csv_header"


class InvalidCsvError(LealtaError):
    code = "invalid_csv"


class UnreadableFileError(LealtaError):
    code = "unreadable_file"


LIST_SEPARATOR = "|"
"""Between the values of a list cell (tags): ``vip|newsletter``."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    cells: dict[str, str]

    def get(self, name: str) -> str:
        return self.cells.get(name, "").strip()


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(
            f"Cannot read '{path}': {exc.strerror or exc}.", details={"path": str(path)}
        ) from None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse(data: bytes, *, required: Sequence[str]) -> tuple[list[str], list[CsvRow]]:
    """The header (lower-cased) and every non-blank row of ``data``; raises
    ``invalid_csv_header`` when a required column is missing and ``invalid_csv`` when the
    file is not UTF-8 CSV (nothing is applied then)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidCsvError(
            f"Line {line} is not valid UTF-8; save the file as UTF-8.",
            code="invalid_encoding",
            details={"line": line},
        ) from None
    return parse_text(text, required=required)


def parse_text(text: str, *, required: Sequence[str]) -> tuple[list[str], list[CsvRow]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = list(_rows(reader, required))
    header = rows.pop(0).cells if rows else {}
    return list(header), rows


def _rows(reader: Any, required: Sequence[str]) -> Iterator[CsvRow]:
    header: list[str] | None = None
    previous_end = 0
    while True:
        try:
            cells: list[str] = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InvalidCsvError(
                f"Line {previous_end + 1}: not valid CSV ({exc}).",
                details={"line": previous_end + 1},
            ) from None
        line = previous_end + 1
        previous_end = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            _check_header(header, required)
            yield CsvRow(line, {name: name for name in header})
            continue
        if len(cells) != len(header):
            yield CsvRow(line, {"__error__": f"{len(header)}:{len(cells)}"})
            continue
        yield CsvRow(line, dict(zip(header, cells, strict=True)))
    if header is None:
        raise InvalidCsvHeaderError(
            f"The file is empty; it needs a header row with {', '.join(required)}.",
            details={"required": list(required)},
        )


def _check_header(header: list[str], required: Sequence[str]) -> None:
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise InvalidCsvHeaderError(
            f"Columns appear more than once: {', '.join(duplicates)}.",
            details={"duplicates": duplicates},
        )
    missing = [name for name in required if name not in header]
    if missing:
        raise InvalidCsvHeaderError(
            f"Missing required columns: {', '.join(missing)}.",
            details={"missing": missing, "found": header},
        )


def check_width(row: CsvRow) -> None:
    """Raise ``invalid_row`` for a row whose number of fields differs from the header's."""
    bad = row.cells.get("__error__")
    if bad is not None:
        expected, found = bad.split(":")
        raise InvalidInput(
            f"Expected {expected} fields as in the header, found {found} (an unquoted comma"
            " in a value?).",
            code="invalid_row",
        )


def to_int(value: str, column: str) -> int:
    text = value.strip()
    if text.lstrip("+-").isdigit() and text.isascii():  # int() would take "1_000" and " 1"
        return int(text)
    raise InvalidInput(f"{column}: '{value}' is not a whole number.", code="invalid_number")


def to_datetime(value: str, column: str) -> datetime:
    """ISO 8601 with an offset, or a date (midnight UTC)."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{column}: '{value}' is not an ISO 8601 date or time.", code="invalid_datetime"
        ) from None
    if at.tzinfo is None:
        raise InvalidInput(
            f"{column}: '{value}' needs a UTC offset (e.g. 2025-03-01T10:15:00Z).",
            code="invalid_datetime",
        )
    return at.astimezone(UTC)


def to_list(value: str) -> list[str]:
    return sorted({part.strip() for part in value.split(LIST_SEPARATOR) if part.strip()})


def to_bool(value: str, column: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "granted", "y", "si", "sí"):
        return True
    if lowered in ("false", "no", "0", "denied", "n"):
        return False
    raise InvalidInput(f"{column}: '{value}' is not true or false.", code="invalid_boolean")


def to_attribute(value: str, kind: str | None, column: str) -> Any:
    """A cell as the attribute type the programme declares (a string when undeclared); an
    empty cell removes the attribute (None)."""
    if value == "":
        return None
    if kind == "int":
        return to_int(value, column)
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            raise InvalidInput(
                f"{column}: '{value}' is not a number.", code="invalid_attribute"
            ) from None
    if kind == "bool":
        return to_bool(value, column)
    return value
