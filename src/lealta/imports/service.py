"""Import historical orders and refunds from CSV through the batch driver of the spine.

Each row becomes an :class:`~lealta.events.schemas.EventIn` and goes through the same engine
as an API event (:mod:`lealta.events.batch`), so an imported history earns, reverses and
enrols as live traffic would, at the speed of set-based writes. Rows
are idempotent (``import:{order_id}`` for orders, ``import:{order_id}:refund:{refund_id}`` for
refunds, the line number standing in when there is no ``refund_id``): importing the same file
again replays every row and changes nothing.

The file is streamed, never loaded whole. Rows are committed in chunks (one unit of work per
``chunk_size`` rows); a rejected row changes nothing and does not stop the others. If the
import stops half-way (the process is killed, the database goes away, a line is not UTF-8),
the chunks already committed stay; fixing the cause and importing the same file again is
safe, and fast: rows already imported are found in one query per chunk and replayed.

Every row is held to the API's bounds: ``occurred_at`` inside the accepted window
(``occurred_too_early``, ``occurred_in_future``), amounts at most ``LEALTA_MAX_ORDER_AMOUNT``
major units (``amount_too_large``); a refund dated before its order is ``refund_before_order``.

Rows are processed in file order, each at its ``occurred_at``, so a history file should be
sorted chronologically (oldest first); the report counts rows that go back in time
(``out_of_order``).

Columns (header row, case-insensitive, any order, unknown columns ignored):

``customer_id, order_id, occurred_at, amount, currency`` (required)
    ``occurred_at`` is ISO 8601 with an offset (``2025-03-01T10:15:00Z``); ``amount`` uses a
    dot for decimals (``59.90``), no thousands separator.
``type`` (optional)
    ``order.paid`` (the default when absent or empty) or ``order.refunded``; a refund's
    ``order_id`` names an order imported (or posted) earlier and its ``amount`` is the amount
    refunded (empty means whatever is left of the order).
``refund_id`` (optional)
    The shop's id of a refund; it keeps a refund idempotent even if rows are added to the file
    and it is imported again.
``channel, store`` (optional)
    Stored on the order.
``email, name`` (optional)
    The customer's profile, used if the row enrols the customer.
``items`` (optional)
    The order's line items as a JSON array (``[{"sku": "ZAP-1", "category": "calzado",
    "quantity": 1, "unit_price": "59.90"}]``), seen by item conditions of earning rules.
    They can come instead from a second file (``items_path``: ``order_id, sku, unit_price``
    and optional ``quantity, category``, one line per item), read whole before the orders.

``dry_run`` runs the whole file in one transaction that is rolled back at the end: the report
says what would be imported, replayed and rejected, and nothing is written.
"""

from __future__ import annotations

import csv
import gc
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar

from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from lealta.events import batch
from lealta.events.schemas import ORDER_PAID, ORDER_REFUNDED, EventIn, OrderIn, RefundIn
from lealta.events.service import IngestContext
from lealta.kit import ids
from lealta.kit.db import Database, vacuum_analyze
from lealta.kit.errors import LealtaError
from lealta.kit.money import DEFAULT_MAX_AMOUNT
from lealta.programme.schema import Programme

REQUIRED_COLUMNS = ("customer_id", "order_id", "occurred_at", "amount", "currency")
OPTIONAL_COLUMNS = ("type", "refund_id", "channel", "store", "email", "name", "items")
ITEM_COLUMNS = ("order_id", "sku", "unit_price")
"""Required columns of a line-items file (``quantity`` and ``category`` are optional)."""
MAX_ITEMS_FILE_BYTES = 512 * 1024 * 1024
_ALL_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
SUPPORTED_TYPES = (ORDER_PAID, ORDER_REFUNDED)
_REQUIRED_OF = {
    ORDER_PAID: REQUIRED_COLUMNS,
    ORDER_REFUNDED: tuple(name for name in REQUIRED_COLUMNS if name != "amount"),
}
"""The columns a row of each supported type must fill (a refund's amount may be empty)."""
DEFAULT_CHUNK_SIZE = 2000
MAX_REJECTED_KEPT = 10_000
_PROGRESS_EVERY = 100
SQLITE_CACHE_KIB = 32_768
"""SQLite page cache of the import's connection (the default is 2 MiB): a chunk's inserts
touch pages of a dozen indexes all over the file, and a cache that holds them saves reading
them back for every chunk. Memory stays flat: the cache is bounded, not the file."""
_GC_THRESHOLD = 50_000

ANALYZE_AFTER_ROWS = 10_000
"""An import of this many rows or more ends with ``VACUUM (ANALYZE)`` of :data:`LOADED_TABLES`
(PostgreSQL): the planner then knows their sizes at once, with or without autovacuum."""
LOADED_TABLES = (
    "members", "accounts", "orders", "order_items", "point_lots", "lot_allocations",
    "ledger_entries", "tier_changes", "coupons", "events", "outbox",
)  # fmt: skip

# Where a field of EventIn comes from in the CSV, so validation messages name the column.
_COLUMN_OF = {
    "type": "type",
    "customer_id": "customer_id",
    "occurred_at": "occurred_at",
    "order.id": "order_id",
    "order.total": "amount",
    "order.currency": "currency",
    "order.channel": "channel",
    "order.store": "store",
    "refund.order_id": "order_id",
    "refund.amount": "amount",
    "refund.currency": "currency",
    "customer.email": "email",
    "customer.name": "name",
    "order.items": "items",
}

ProgressCallback = Callable[[int, int], None]
"""Called with ``(rows_read, bytes_read)`` as the import advances."""


class InvalidCsvHeaderError(LealtaError):
    code = "invalid_csv_header"


class InvalidCsvError(LealtaError):
    code = "invalid_csv"


class UnreadableFileError(LealtaError):
    code = "unreadable_file"


class RejectedRow(NamedTuple):
    """A row that was not imported: its line in the file (the header is line 1) and why."""

    line: int
    code: str
    message: str


@dataclass(slots=True)
class ImportReport:
    """What an import did. ``rejected`` keeps the first ``MAX_REJECTED_KEPT`` rejections;
    ``rejected_count`` counts them all."""

    rows_read: int = 0
    imported: int = 0
    replayed: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    rejected_count: int = 0
    out_of_order: int = 0
    elapsed_seconds: float = 0.0
    latest_at: datetime | None = None
    """The latest ``occurred_at`` seen so far (rows before it count as ``out_of_order``)."""
    dry_run: bool = False
    """True when nothing was written (``imported`` counts what would have been)."""

    def reject(self, line: int, code: str, message: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REJECTED_KEPT:
            self.rejected.append(RejectedRow(line, code, message))


def import_orders(
    db: Database,
    path: Path,
    *,
    programme: Programme,
    now: datetime,
    actor: str,
    on_progress: ProgressCallback | None = None,
    auto_enrol: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_amount: Decimal = DEFAULT_MAX_AMOUNT,
    items_path: Path | None = None,
    dry_run: bool = False,
    analyze_after: int = ANALYZE_AFTER_ROWS,
) -> ImportReport:
    """Import the orders and refunds in the CSV at ``path``, in file order.

    Once ``analyze_after`` rows or more were imported, the tables the import wrote are
    vacuumed and analysed on PostgreSQL (:func:`lealta.kit.db.vacuum_analyze`) before it returns.

    Raises ``invalid_csv_header`` (nothing written) when a required column is missing,
    ``unreadable_file`` when the file cannot be opened, and ``invalid_csv`` when the file
    stops being parseable CSV or UTF-8 part-way (earlier chunks stay committed). Rejected rows
    do not raise: they are listed in the report with their line number and reason.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    started = time.perf_counter()
    report = ImportReport(dry_run=dry_run)
    ctx = IngestContext(
        programme=programme,
        now=now,
        actor=actor,
        auto_enrol=auto_enrol,
        max_amount=max_amount,
        backfill=True,  # imported history: subscribers skip what must not fire for the past
    )
    lines = read_items(items_path) if items_path is not None else None
    with (
        _open(path) as raw,
        _collections_between_chunks() as collect,
        _sessions(db, dry_run) as unit_of_work,
    ):
        source = _Lines(raw)
        reader = csv.reader(source, strict=True)
        columns = _Columns.from_header(_read_header(reader))
        rows = _rows(reader)
        while True:
            chunk, stopped = _next_chunk(rows, chunk_size)
            if chunk:
                kept_before = len(report.rejected)
                items = [
                    item
                    for line, cells in chunk
                    if (item := _to_item(columns, line, cells, report, lines)) is not None
                ]
                with unit_of_work() as session:
                    _tune(session)
                    batch.run_items(session, items, ctx, by_time=False)
                for item in items:
                    if item.status == "rejected":
                        assert item.error is not None
                        report.reject(item.index, item.error.code, item.error.message)
                    elif item.status == "replayed":
                        report.replayed += 1
                    else:
                        report.imported += 1
                # Rejections in line order, whether the row or the engine refused it.
                report.rejected[kept_before:] = sorted(report.rejected[kept_before:])
                if on_progress is not None:
                    on_progress(report.rows_read, source.bytes_read)
                del items
                collect()
            if stopped is not None:
                raise stopped
            if len(chunk) < chunk_size:
                break
    if not dry_run and report.imported >= analyze_after:
        vacuum_analyze(db, LOADED_TABLES)
    report.elapsed_seconds = time.perf_counter() - started
    return report


def _tune(session: Session) -> None:
    """Settings for a chunk's connection: a bigger page cache on SQLite (see
    ``SQLITE_CACHE_KIB``). Durability is untouched (WAL, ``synchronous=NORMAL``)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}"))


class _DryRun(Exception):
    """Ends a dry run's transaction with a rollback."""


@contextmanager
def _sessions(db: Database, dry_run: bool) -> Iterator[Callable[[], Any]]:
    """A unit of work per chunk, or, for a dry run, one for the whole file (so that later
    chunks see what earlier ones would have written), rolled back at the end."""
    if not dry_run:
        yield db.unit_of_work
        return
    try:
        with db.unit_of_work() as session:

            @contextmanager
            def same() -> Iterator[Any]:
                yield session

            yield same
            raise _DryRun
    except _DryRun:
        pass


def read_items(path: Path) -> dict[str, list[dict[str, str]]]:
    """Line items by order id from a CSV with ``order_id, sku, unit_price[, quantity,
    category]``; raises ``invalid_csv_header`` / ``invalid_csv`` / ``unreadable_file``."""
    by_order: dict[str, list[dict[str, str]]] = {}
    with _open(path) as raw:
        if path.stat().st_size > MAX_ITEMS_FILE_BYTES:
            raise InvalidCsvError(
                f"The items file is larger than {MAX_ITEMS_FILE_BYTES // 2**20} MiB; put the"
                " items in the orders file's 'items' column instead.",
                code="file_too_large",
            )
        reader = csv.reader(_Lines(raw), strict=True)
        header = _read_header(reader)
        missing = [c for c in ITEM_COLUMNS if c not in header]
        if missing:
            raise InvalidCsvHeaderError(
                f"The items file lacks columns: {', '.join(missing)}.",
                details={"missing": missing, "found": header},
            )
        for _, cells in _rows(reader):
            value = {name: cell.strip() for name, cell in zip(header, cells, strict=False)}
            item = {
                "sku": value.get("sku", ""),
                "unit_price": value.get("unit_price", ""),
                "quantity": value.get("quantity") or "1",
            }
            if value.get("category"):
                item["category"] = value["category"]
            by_order.setdefault(value.get("order_id", ""), []).append(item)
    return by_order


def _to_item(
    columns: _Columns,
    line: int,
    cells: list[str],
    report: ImportReport,
    items: dict[str, list[dict[str, str]]] | None = None,
) -> batch.Item | None:
    """The batch item a row stands for, or None (and a rejection) when it is not valid."""
    report.rows_read += 1
    try:
        key, event = _to_event(columns, line, cells, items)
    except LealtaError as exc:
        report.reject(line, exc.code, exc.message)
        return None
    if report.latest_at is not None and event.occurred_at < report.latest_at:
        report.out_of_order += 1
    else:
        report.latest_at = event.occurred_at
    return batch.Item(index=line, event=event, key=key)


@contextmanager
def _few_collections() -> Iterator[None]:
    """Run the import with the cyclic garbage collector mostly out of the way.

    A chunk allocates hundreds of thousands of short-lived objects (freed by reference
    counting: the import makes next to no cycles), and with the default thresholds each
    full collection walks every object the process holds, modules and all: a fifth of an
    import's time went to collecting. Objects alive when the import starts are frozen (not
    scanned again until it ends) and young collections run every 50,000 allocations instead
    of 700; the previous settings come back afterwards."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextmanager
def _collections_between_chunks(*, survivors_stay: bool = False) -> Iterator[Callable[[], None]]:
    """Run the import without the cyclic garbage collector, collecting between chunks.

    A chunk allocates hundreds of thousands of objects, nearly all freed by reference
    counting when the chunk is done; collections during the chunk only walk what is still
    alive (a tenth of an import's time went to them). So automatic collection is off while
    the import runs, and the yielded function, called after each chunk, collects the young
    generations: by then the chunk's objects are gone, what is left to walk is little, and
    the cycles a chunk made (ORM objects, sessions) never outlive the next chunk, so memory
    stays flat. Objects alive when the import starts are frozen (never walked again) and
    everything comes back as it was afterwards.

    With ``survivors_stay`` (a caller that keeps what each chunk built until the end, as the
    simulator keeps every member's state), what survives a chunk's collection is frozen too,
    so that no object is walked twice: collections would otherwise walk an ever larger heap
    (a tenth of a replay's time)."""
    enabled = gc.isenabled()
    gc.freeze()
    gc.disable()

    def collect() -> None:
        gc.collect(1)
        if survivors_stay:
            gc.freeze()

    try:
        yield collect
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


# --- reading ---------------------------------------------------------------------------------


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise UnreadableFileError(
            f"Cannot read '{path}': {exc.strerror or exc}.", details={"path": str(path)}
        ) from None


class _Lines:
    """Decode a binary file line by line (UTF-8, optional BOM), counting bytes for progress.

    Splitting on ``\\n`` before decoding is safe in UTF-8: the byte never occurs inside a
    multi-byte character.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bytes_read = 0
        self.lines_read = 0

    def __iter__(self) -> Iterator[str]:
        for chunk in self._raw:
            self.bytes_read += len(chunk)
            self.lines_read += 1
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidCsvError(
                    f"Line {self.lines_read} is not valid UTF-8; save the file as UTF-8.",
                    code="invalid_encoding",
                    details={"line": self.lines_read},
                ) from None
            if self.lines_read == 1:
                text = text.removeprefix("\ufeff")
            yield text


def _read_header(reader: Any) -> list[str]:
    try:
        for header in reader:
            if any(cell.strip() for cell in header):
                return [cell.strip().lower() for cell in header]
    except csv.Error as exc:
        raise InvalidCsvHeaderError(f"The header row is not valid CSV: {exc}.") from None
    raise InvalidCsvHeaderError(
        f"The file is empty; it needs a header row with {', '.join(REQUIRED_COLUMNS)}.",
        details={"required": list(REQUIRED_COLUMNS)},
    )


def _next_chunk(
    rows: Iterator[tuple[int, list[str]]], size: int
) -> tuple[list[tuple[int, list[str]]], LealtaError | None]:
    """Up to ``size`` rows; a file error is returned, not raised, so the rows before it that
    were already read still get imported."""
    chunk: list[tuple[int, list[str]]] = []
    try:
        for item in rows:
            chunk.append(item)
            if len(chunk) == size:
                break
    except LealtaError as exc:
        return chunk, exc
    return chunk, None


def _rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the line each one starts on."""
    previous_end = reader.line_num
    while True:
        try:
            cells: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidCsvError(
                f"Line {previous_end + 1}: not valid CSV ({exc}); rows before it were imported.",
                details={"line": previous_end + 1},
            ) from None
        line = previous_end + 1
        previous_end = reader.line_num
        if any(cell.strip() for cell in cells):
            yield line, cells


@dataclass(frozen=True, slots=True)
class _Columns:
    width: int
    index: dict[str, int]
    pick: Callable[[list[str]], tuple[str, ...]]
    """The cells of ``REQUIRED_COLUMNS`` then ``OPTIONAL_COLUMNS`` from a row padded with one
    empty cell, which stands (at ``width``) for a column the file does not have."""

    @classmethod
    def from_header(cls, header: list[str]) -> _Columns:
        duplicates = sorted({name for name in header if name and header.count(name) > 1})
        if duplicates:
            raise InvalidCsvHeaderError(
                f"Columns appear more than once: {', '.join(duplicates)}.",
                details={"duplicates": duplicates},
            )
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise InvalidCsvHeaderError(
                f"Missing required columns: {', '.join(missing)} (the header row must name "
                f"{', '.join(REQUIRED_COLUMNS)}).",
                details={"missing": missing, "found": header},
            )
        index = {name: i for i, name in enumerate(header) if name in _ALL_COLUMNS}
        width = len(header)
        return cls(width, index, itemgetter(*(index.get(name, width) for name in _ALL_COLUMNS)))


# --- rows to events --------------------------------------------------------------------------


def _to_event(
    columns: _Columns,
    line: int,
    cells: list[str],
    items: dict[str, list[dict[str, str]]] | None = None,
) -> tuple[str, EventIn]:
    """The event a row stands for and its idempotency key, or a ``LealtaError``."""
    if len(cells) != columns.width:
        raise LealtaError(
            f"Expected {columns.width} fields as in the header, found {len(cells)} (an unquoted"
            " comma in a value?).",
            code="invalid_row",
        )
    # A column the file does not have reads as the empty cell padded on; ``pick`` gives one
    # cell per column (``strict`` would cost more than the rest of this line).
    value = dict(zip(_ALL_COLUMNS, map(str.strip, columns.pick([*cells, ""])), strict=False))
    event_type = value["type"] or ORDER_PAID
    required = _REQUIRED_OF.get(event_type)
    if required is None:
        raise LealtaError(
            f"type: '{event_type}' cannot be imported; use {' or '.join(SUPPORTED_TYPES)}.",
            code="unsupported_event_type",
        )
    empty = [name for name in required if not value[name]]
    if empty:
        raise LealtaError(f"{', '.join(empty)}: required value is empty.", code="validation_error")
    order_id = value["order_id"]
    if event_type == ORDER_PAID:
        key = f"import:{order_id}"
        plain = not value["items"] and not (items and items.get(order_id))
    else:
        # The shop's refund id makes the key stable even if lines move; without one, the
        # line number stands in (re-import the same file, unedited).
        key = f"import:{order_id}:refund:{value['refund_id'] or f'line-{line}'}"
        plain = True
    event = _plain_event(event_type, value) if plain else None
    return key, event if event is not None else _validated(event_type, value, items)


def _validated(
    event_type: str, value: dict[str, str], items: dict[str, list[dict[str, str]]] | None
) -> EventIn:
    """The row's event as Pydantic validates it, or a ``LealtaError`` naming the columns."""
    raw: dict[str, Any] = {
        "type": event_type,
        "customer_id": value["customer_id"],
        "occurred_at": value["occurred_at"],
    }
    if event_type == ORDER_PAID:
        order: dict[str, Any] = _present(
            value,
            id="order_id",
            total="amount",
            currency="currency",
            channel="channel",
            store="store",
        )
        lines = _items(value["items"], value["order_id"], items)
        if lines:
            order["items"] = lines
        raw["order"] = order
    else:
        raw["refund"] = _present(value, order_id="order_id", amount="amount", currency="currency")
    profile = _present(value, email="email", name="name")
    if profile:
        raw["customer"] = profile
    try:
        return EventIn.model_validate(raw)
    except ValidationError as exc:
        bad_id = any(e["type"] == ids.ERROR_CODE for e in exc.errors())
        code = ids.ERROR_CODE if bad_id else "validation_error"
        raise LealtaError(_describe(exc), code=code) from None


def _items(
    cell: str, order_id: str, from_file: dict[str, list[dict[str, str]]] | None
) -> list[Any]:
    """An order's line items: the row's JSON ``items`` cell, else the items file's lines."""
    if cell:
        try:
            parsed = json.loads(cell)
        except ValueError:
            raise LealtaError(
                "items: not a JSON array of line items.", code="validation_error"
            ) from None
        if not isinstance(parsed, list):
            raise LealtaError("items: not a JSON array of line items.", code="validation_error")
        return parsed
    if from_file is not None:
        return from_file.get(order_id, [])
    return []


def _present(value: dict[str, str], **columns: str) -> dict[str, str]:
    """The fields (named as the schema names them) whose column is not empty."""
    return {name: value[column] for name, column in columns.items() if value[column]}


# --- the fast path ---------------------------------------------------------------------------
#
# Validating an EventIn with Pydantic costs more than all the rest an import does to a row
# before the engine. Most rows of a history file are plain: ids, a dot-decimal amount, no
# items, no profile. For those, the checks below decide what EventIn would decide, at a
# fraction of the cost: the moment goes through Pydantic's own parser for the field, and one
# pattern holds every other cell to the schema's constraints (narrowed, for amounts, to the
# form that both Pydantic and ``Decimal`` read the same way). The models are then built from the
# checked values as validation builds them. Any other row, valid or not, goes through Pydantic,
# so every rejection keeps its code and message. tests/test_import_fast_path.py holds the
# mirror against Pydantic.

_SEP = "\x01"
"""Joins a row's cells for the pattern; no cell the pattern accepts contains it (nor NUL,
which ``check_storable`` refuses)."""
_AMOUNT = r"(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,6})?"
"""Amounts ``Amount`` holds as ``Decimal(text)``: 0 to under 10^12, at most 18 digits."""


def _text(most: int, least: int = 1) -> str:
    """Text of ``least`` to ``most`` characters. Cells come stripped, and what the schema strips
    (Unicode white space) is a subset of what ``str.strip`` strips, so stripping again changes
    nothing and the lengths are the schema's."""
    return f"[^\\x00{_SEP}]{{{least},{most}}}"


_ID = ids.PATTERN.removeprefix("^").removesuffix("$")
# customer_id, order_id, amount, currency[, channel, store]: ExternalId, Ref, Amount, Currency
# and the bounds of OrderIn's channel and store (empty means absent).
_PLAIN_ORDER = re.compile(
    _SEP.join((_ID, _text(128), _AMOUNT, _text(16), _text(32, 0), _text(64, 0)))
)
_PLAIN_REFUND = re.compile(_SEP.join((_ID, _text(128), f"(?:{_AMOUNT})?", _text(16))))
_MOMENT = TypeAdapter(AwareDatetime).validator
"""Pydantic's validator of ``EventIn.occurred_at``'s type, on its own."""
_set = object.__setattr__


def _plain_event(event_type: str, value: dict[str, str]) -> EventIn | None:
    """``EventIn.model_validate`` of a plain row (no items), or None when Pydantic must
    decide. The type is one of ``SUPPORTED_TYPES`` and the required cells are not empty."""
    if value["email"] or value["name"]:
        return None
    customer_id, order_id = value["customer_id"], value["order_id"]
    amount, currency = value["amount"], value["currency"]
    if event_type == ORDER_PAID:
        channel, store = value["channel"], value["store"]
        cells = (customer_id, order_id, amount, currency, channel, store)
        if _PLAIN_ORDER.fullmatch(_SEP.join(cells)) is None:
            return None
    elif _PLAIN_REFUND.fullmatch(_SEP.join((customer_id, order_id, amount, currency))) is None:
        return None
    try:
        at = _MOMENT.validate_python(value["occurred_at"])
    except ValidationError:
        return None
    order = refund = None
    if event_type == ORDER_PAID:
        given = {"id", "total", "currency"}
        if channel:
            given.add("channel")
        if store:
            given.add("store")
        order = _built(
            OrderIn,
            given,
            id=order_id,
            total=Decimal(amount),
            currency=currency,
            items=[],
            channel=channel or None,
            store=store or None,
        )
        given = {"type", "customer_id", "occurred_at", "order"}
    else:
        given = {"order_id", "currency"}
        if amount:
            given.add("amount")
        refund = _built(
            RefundIn,
            given,
            order_id=order_id,
            amount=Decimal(amount) if amount else None,
            currency=currency,
        )
        given = {"type", "customer_id", "occurred_at", "refund"}
    return _built(
        EventIn,
        given,
        id=None,
        type=event_type,
        customer_id=customer_id,
        occurred_at=at,
        properties={},
        order=order,
        refund=refund,
        customer=None,
    )


_Model = TypeVar("_Model", bound=BaseModel)


def _built(model: type[_Model], given: set[str], **values: Any) -> _Model:
    """``model`` holding ``values`` (every field, valid, in the schema's order) with ``given``
    the fields the row set, as validation leaves it: ``model_construct`` without its
    per-field bookkeeping, which costs several times as much (it inspects each default
    factory's signature on every call)."""
    built = model.__new__(model)
    _set(built, "__dict__", values)
    _set(built, "__pydantic_fields_set__", given)
    _set(built, "__pydantic_extra__", None)
    _set(built, "__pydantic_private__", None)
    return built


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(p) for p in error["loc"])
        column = _COLUMN_OF.get(loc) or next(
            (c for f, c in _COLUMN_OF.items() if loc.startswith(f + ".")), loc or "row"
        )
        parts.append(f"{column}: {error['msg']}")
    return "; ".join(parts) or "invalid row"
