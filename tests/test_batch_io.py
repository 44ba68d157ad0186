"""The batch driver's I/O shortcuts give the answers of the long way round.

- ``store.one_of`` (``= ANY(array)`` on PostgreSQL, ``IN`` on SQLite) finds exactly what an
  ``IN`` list finds, for lists longer than any chunk, empty lists included; on PostgreSQL the
  whole list is one statement.
- Bulk writes store JSON that reads back as written (non-ASCII text, nested values, NULL).
- The import runs without the automatic collector, collects between chunks, and puts the
  collector back as it was, also when it stops on a bad file.
"""

from __future__ import annotations

import gc
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, event, select

from lealta.events import store
from lealta.imports.service import InvalidCsvHeaderError, import_orders
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Event, Order
from lealta.programme import service as programmes

_orders = cast(Table, Order.__table__)
_events = cast(Table, Event.__table__)


def _import(db: Database, clock: FixedClock, path: Path, **kw: Any) -> Any:
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session)
    return import_orders(db, path, programme=programme, now=clock.now(), actor="test", **kw)


def _history(path: Path, clock: FixedClock, orders: int, prefix: str) -> None:
    at = clock.now() - timedelta(days=40)
    lines = ["customer_id,order_id,occurred_at,amount,currency,name"]
    for i in range(orders):
        moment = (at + timedelta(minutes=i)).isoformat()
        lines.append(f"{prefix}c{i % 7},{prefix}o{i},{moment},{10 + i % 50}.25,EUR,Núñez {i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_one_of_finds_what_in_finds(db: Database, clock: FixedClock, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    _history(path, clock, 30, "oneof-")
    assert _import(db, clock, path).imported == 30
    present = [f"oneof-o{i}" for i in range(30)]
    absent = [f"oneof-missing-{i}" for i in range(1_200)]  # more than one SQLite chunk
    with db.unit_of_work(write=False) as session:
        found = store.orders(session, [*absent, *present])
        assert {k for k, v in found.items() if v is not None} == set(present)
        assert all(found[k] is None for k in absent)
        assert store.orders(session, []) == {}
        by_in = set(
            session.scalars(select(_orders.c.external_id).where(_orders.c.external_id.in_(present)))
        )
        by_one_of = set(
            session.scalars(
                select(_orders.c.external_id).where(
                    store.one_of(session, _orders.c.external_id, [*present, *absent])
                )
            )
        )
        assert by_one_of == by_in == set(present)
        none = session.scalars(
            select(_orders.c.id).where(store.one_of(session, _orders.c.id, []))
        ).all()
        assert none == []


def test_orders_lookup_is_one_statement_on_postgresql(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    wanted = [f"many-{i}" for i in range(2_500)]
    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.unit_of_work(write=False) as session:
            statements.clear()
            found = store.orders(session, wanted)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert set(found) == set(wanted)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    expected = 1 if db.dialect == "postgresql" else 3  # SQLite: IN lists of 1,000
    assert len(selects) == expected
    if db.dialect == "postgresql":
        assert "ANY" in selects[0].upper()


def test_bulk_json_reads_back_as_written(db: Database, clock: FixedClock, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    _history(path, clock, 12, "json-")
    report = _import(db, clock, path)
    assert report.imported == 12 and report.rejected_count == 0
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(_events.c.payload, _events.c.response).where(
                _events.c.idempotency_key == "import:json-o3"
            )
        ).one()
    payload, response = rows
    assert payload["customer"] == {"name": "Núñez 3"}
    assert payload["order"]["id"] == "json-o3"
    assert response["event_id"] == "import:json-o3"
    assert response["balance"]["next_expiry"] is None
    assert response["postings"] and all(p["points"] > 0 for p in response["postings"])
    # The same file again replays every row from the stored responses.
    again = _import(db, clock, path)
    assert again.replayed == 12 and again.imported == 0


def test_import_collects_between_chunks_and_restores_the_collector(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    _history(path, clock, 25, "gc-")
    collections: list[int] = []

    def counted(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    assert gc.isenabled()
    gc.callbacks.append(counted)
    try:
        report = _import(db, clock, path, chunk_size=10)
    finally:
        gc.callbacks.remove(counted)
    assert report.imported == 25
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    # One collection of the young generations after each of the three chunks, and no
    # automatic one (of generation 0) while a chunk runs.
    assert collections == [1, 1, 1]

    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,amount\nc1,1.00\n")
    gc.disable()
    try:
        with pytest.raises(InvalidCsvHeaderError):
            _import(db, clock, bad)
        assert not gc.isenabled()  # as it was before the import
    finally:
        gc.enable()
    with pytest.raises(InvalidCsvHeaderError):
        _import(db, clock, bad)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
