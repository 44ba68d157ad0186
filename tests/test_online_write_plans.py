"""The plans PostgreSQL picks for an online event's write (one statement, see
``events.store._send_as_one``) and for the balance reads of many members at once.

An event updates one account row and its own event row. Read from a JSON recordset, that
one row is estimated at a hundred, and the planner joined them to the accounts and events
tables by reading each table whole, once per event: on a programme of a few thousand members
this was most of the database's work per event. Read as one record, the row is known to be
one, and both updates go through the primary key. The test captures the statement an ingest
sends and asks PostgreSQL for its plan over tables of a few thousand rows.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy import text

from lealta.events import store
from lealta.events.schemas import EventIn
from lealta.events.service import IngestContext, ingest
from lealta.kit.db import Database, PgStatement, psycopg_conninfo
from lealta.members.service import BALANCE_READ_MANY
from lealta.programme.schema import DEFAULT_PROGRAMME
from tests.conftest import T0
from tests.factories import order_paid

pytestmark = pytest.mark.postgres_only

MEMBERS = 3_000


def _enrol_many(client: TestClient) -> None:
    for start in range(0, MEMBERS, 1_000):
        events = [
            order_paid(f"e-{n}", f"c-{n}", f"O-{n}", "20.00", T0 - timedelta(minutes=n))
            for n in range(start, start + 1_000)
        ]
        r = client.post("/v1/events/batch", json={"events": events})
        assert r.status_code == 200, r.text


def _write_statement(db: Database, client: TestClient) -> tuple[str, Any]:
    """The write statement (and its parameters) of one more order by a known member."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("WITH w0 AS"):
            seen.append((statement, params))

    sa_event.listen(db.engine, "before_cursor_execute", record)
    try:
        r = client.post("/v1/events", json=order_paid("one", "c-7", "O-one", "35.10", T0))
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", record)
    assert r.status_code == 201, r.text
    assert len(seen) == 1
    return seen[0]


def test_an_online_event_updates_its_account_and_event_rows_by_key(
    db: Database, client: TestClient
) -> None:
    _enrol_many(client)
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE accounts"))
        conn.execute(text("ANALYZE events"))
        counts = conn.execute(
            text("SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM events)")
        ).one()
    assert counts == (MEMBERS, MEMBERS)

    sql, params = _write_statement(db, client)
    assert "UPDATE accounts" in sql and "UPDATE events" in sql

    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    finally:
        raw.rollback()
        raw.close()
    assert "Seq Scan on accounts" not in plan, plan
    assert "Seq Scan on events" not in plan, plan
    assert "Index Scan using accounts_pkey on accounts" in plan, plan
    assert "Index Scan using events_pkey on events" in plan, plan


def test_the_balance_reads_of_many_members_go_through_the_keys(
    db: Database, client: TestClient
) -> None:
    """The balance reads that arrive together run as one statement on the keys
    (``BALANCE_READ_MANY``), on connections that plan it once (``force_generic_plan``): the
    one plan must reach members and accounts by their keys, whatever the number of keys."""
    _enrol_many(client)
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    compiled = PgStatement(BALANCE_READ_MANY)
    names: list[str] = []

    def numbered(found: re.Match[str]) -> str:
        if found.group(1) not in names:
            names.append(found.group(1))
        return f"${names.index(found.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", numbered, compiled.sql)
    now = T0 + timedelta(days=1)
    values = {**compiled.defaults, "keys": ["c-7", "c-8"], "now": now, "programme_at": now,
              "horizon": now + timedelta(days=30)}  # fmt: skip
    raw = psycopg.connect(psycopg_conninfo(db.url), autocommit=True)
    try:
        raw.execute("SET plan_cache_mode = force_generic_plan")
        raw.execute(f"PREPARE balances AS {sql}")
        args = ", ".join(["%s"] * len(names))
        cursor = psycopg.ClientCursor(raw)
        cursor.execute(f"EXPLAIN EXECUTE balances({args})", [values[n] for n in names])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(f"EXECUTE balances({args})", [values[n] for n in names])
        found = sorted(row[-1] for row in cursor.fetchall())
    finally:
        raw.close()
    assert found == ["c-7", "c-8"]
    assert "Seq Scan on members" not in plan, plan
    assert "Seq Scan on accounts" not in plan, plan
    assert "Index Cond: ((external_id)::text = (wanted.external_id)::text)" in plan, plan
    assert "Index Scan using accounts_pkey on accounts" in plan, plan


def test_the_statement_that_locks_the_member_is_planned_once(database_url: str) -> None:
    """The first statement of an online event (``store.lock_and_load``: the member locked,
    the event claimed, ids reserved) is prepared, and PostgreSQL keeps one plan for it after
    its first five runs. It counted a thousand rows for the ids it reserves (a
    ``generate_series`` of unknown length), which made its one plan look dearer than a
    fresh one, so it was planned again at every event."""
    one = Database(database_url, pool_size=1, max_overflow=0)  # one connection: one session
    try:
        for n in range(12):
            event = EventIn.model_validate(
                order_paid(f"plan-{n}", f"c-{n % 3}", f"O-plan-{n}", "12.00", T0)
            )
            with one.unit_of_work() as session:
                ctx = IngestContext(
                    programme=DEFAULT_PROGRAMME, now=T0, actor="test", programme_in_force=True
                )
                assert ingest(session, event, ctx, key=None).status_code == 201
        with one.unit_of_work(write=False) as session:
            plans = session.execute(
                text(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE 'WITH claim AS%'"
                )
            ).all()
    finally:
        one.dispose()
    assert len(plans) == 1, plans
    generic, custom = plans[0]
    assert custom == 5 and generic == 12 - 5, plans


def test_one_members_lots_and_one_order_are_read_by_statements_planned_once(
    database_url: str, db: Database, client: TestClient
) -> None:
    """A refund or a redemption loads one member's lots (``store.open_lots``) and a refund
    its order (``store.orders``). As "any" of an array, the statement's one plan counted ten
    values and PostgreSQL planned it afresh at every run; one value goes alone. Many (the
    batch driver) still go as one array."""
    _enrol_many(client)
    with db.unit_of_work(write=False) as session:
        member_ids = list(
            session.scalars(
                text(
                    "SELECT id FROM members WHERE external_id IN ('c-0', 'c-1', 'c-2')"
                    " ORDER BY external_id"
                )
            )
        )
    one = Database(database_url, pool_size=1, max_overflow=0)
    try:
        for n in range(12):
            with one.unit_of_work(write=False) as session:
                assert list(store.open_lots(session, [member_ids[n % 3]])) == [member_ids[n % 3]]
                found = store.orders(session, [f"O-{n % 3}"])[f"O-{n % 3}"]
                assert found is not None and found.member_id == member_ids[n % 3]
        with one.unit_of_work(write=False) as session:
            many = store.open_lots(session, member_ids)
            plans = session.execute(
                text(
                    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE '%FROM point_lots%' OR statement LIKE '%FROM orders%'"
                )
            ).all()
    finally:
        one.dispose()
    assert sorted(many) == sorted(member_ids) and all(len(lots) == 1 for lots in many.values())
    alone = [p for p in plans if "point_lots.member_id = $1" in p.statement]
    array = [p for p in plans if "point_lots.member_id = ANY ($1" in p.statement]
    order = [p for p in plans if "orders.external_id = $1" in p.statement]
    assert len(alone) == 1 and len(array) == 1 and len(order) == 1, plans
    assert (alone[0].custom_plans, alone[0].generic_plans) == (5, 12 - 5), plans
    # psycopg prepares this one from its sixth run (SQLAlchemy's statement, not ``fetch``).
    assert (order[0].custom_plans, order[0].generic_plans) == (5, 12 - 5 - 5), plans
